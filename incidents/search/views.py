"""The /search page (the top bar's search box leads here) and `incidents search reindex`."""

from __future__ import annotations

import click
from flask import Blueprint, current_app, render_template, request
from flask.cli import AppGroup

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.bounds import int_arg
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.search import services
from incidents.search.models import DocKind

bp = Blueprint("search", __name__)

KINDS = (("", "Everything"), (DocKind.INCIDENT.value, "Incidents"), (DocKind.POSTMORTEM.value, "Post-mortems"))


@bp.get("/search")
@require(Role.VIEWER)
def results():
    q = (request.args.get("q") or "").strip()[:200]
    kind = request.args.get("kind") or ""
    if kind not in {k for k, _ in KINDS}:
        kind = ""
    page, problem = None, None
    if q:
        try:
            page = services.search(db.session, q, kind or None, page=int_arg("page", 1),
                                   per_page=current_app.config["PER_PAGE"])
        except Invalid:
            problem = "Type at least one word (letters or digits) to search for."
    return render_template("search/results.html", q=q, kind=kind, kinds=KINDS, page=page, problem=problem,
                           keep={k: v for k, v in (("q", q), ("kind", kind)) if v})


search_cli = AppGroup("search", help="The full-text search index.")


@search_cli.command("reindex")
@click.option("--batch", default=5000, show_default=True, type=click.IntRange(1),
              help="Incidents or post-mortems per transaction.")
def reindex_command(batch: int):
    """Rebuild every search document from its incident or post-mortem (repair; after bulk loads)."""
    def progress(table: str, done: int, top: int) -> None:
        if done == top or done % (batch * 20) == 0:
            click.echo(f"{table}: up to id {done} of {top}")

    written = services.reindex(db.session, batch=batch, progress=progress)
    click.echo(f"Indexed {written} documents.")
