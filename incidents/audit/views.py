"""The audit page (admins), its CSV export, and `incidents audit verify`."""

from __future__ import annotations

import csv
import io

import click
from flask import Blueprint, Response, render_template, request
from flask.cli import AppGroup
from marshmallow import ValidationError

from incidents.audit import services
from incidents.audit.api import audit_filter
from incidents.audit.schemas import ACTOR_KINDS, AuditArgsSchema
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.database import read_only
from incidents.extensions import db

bp = Blueprint("audit", __name__)

_FILTERS = ("actor_kind", "actor_id", "actor", "object_type", "object_id", "kind", "since", "until")
CSV_COLUMNS = ("id", "at", "actor_kind", "actor_id", "actor_label", "kind", "object_type", "object_id",
               "object_label", "changes", "address", "request_id", "prev_hash", "hash")


def _args() -> tuple[dict, dict, dict]:
    """(loaded filters, the raw values to show again, errors): a bad filter is a message, not a 500."""
    raw = {k: request.args[k].strip() for k in (*_FILTERS, "page") if request.args.get(k, "").strip()}
    try:
        return AuditArgsSchema().load(raw), raw, {}
    except ValidationError as e:
        return {}, raw, e.messages


@bp.get("/admin/audit")
@require(Role.ADMIN)
def page():
    args, raw, errors = _args()
    rows = services.list_entries(db.session, audit_filter(args), args.get("page") or 1, 50)
    shown = {k: v for k, v in raw.items() if k != "page"}
    return render_template("audit/index.html", page=rows, args=shown, errors=errors, actor_kinds=ACTOR_KINDS,
                           kinds=services.kinds(db.session)), (422 if errors else 200)


def csv_cell(value) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula (=, +, -, @, tab, CR) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/admin/audit.csv")
@require(Role.ADMIN)
def export():
    """The filtered log as CSV, newest first. Built whole before it is sent (read in batches): a streamed body
    would hold the request's context and database session open for as long as the client takes to read it."""
    args, _raw, errors = _args()
    if errors:
        return page()
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_COLUMNS)
    for e in services.iter_entries(db.session, audit_filter(args)):
        out.writerow([csv_cell(x) for x in (
            e.id, e.at.isoformat(), e.actor_kind, e.actor_id, e.actor_label, e.kind, e.object_type, e.object_id,
            e.object_label, services.canonical_text(e.changes), e.address, e.request_id, e.prev_hash, e.hash)])
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=audit.csv"})


# --- command line --------------------------------------------------------------------------------

audit_cli = AppGroup("audit", help="The audit log.")


@audit_cli.command("verify")
@click.option("--batch", default=5000, show_default=True, help="Rows read per query.")
def verify_command(batch: int):
    """Recompute the audit log's hash chain: exit 0 when it holds, 1 naming the first row where it breaks."""
    with read_only():
        verdict = services.verify(db.session, batch=batch)
    db.session.rollback()
    if verdict.ok:
        click.echo(f"The audit log holds: {verdict.checked} rows checked.")
        return
    click.echo(f"The audit log is broken at {verdict.message}; {verdict.checked} rows before it hold.", err=True)
    raise SystemExit(1)
