"""Liveness (`/healthz`, cheap: the database answers) and readiness (`/readyz`: database, migrations, queue)."""

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from incidents.extensions import alembic, db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as e:
        return jsonify({"status": "error", "database": type(e).__name__}), 503
    return jsonify({"status": "ok", "database": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready to take traffic: each check is "ok" or "fail: <why>"; 503 when one fails. Reads only (a GET: no
    SQLite write lock), on the request's own connection."""
    checks = {"database": _check(_database), "migrations": _check(_migrations), "queue": _check(_queue)}
    ok = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if ok else "fail", "checks": checks}), 200 if ok else 503


def _check(probe) -> str:
    try:
        problem = probe()
    except Exception as e:  # noqa: BLE001 - any failure of a dependency is the answer itself
        db.session.rollback()
        problem = type(e).__name__
    return f"fail: {problem}" if problem else "ok"


def _database() -> str | None:
    db.session.execute(sa.text("SELECT 1"))
    return None


def _migrations() -> str | None:
    heads = current_app.extensions.get("incidents.readyz.heads")
    if heads is None:  # the scripts do not change while the process runs
        heads = current_app.extensions["incidents.readyz.heads"] = set(alembic.script_directory.get_heads())
    # What alembic's MigrationContext reads, without its log line on every probe.
    table = current_app.config["ALEMBIC_CONTEXT"].get("version_table", "alembic_version")
    current = set(db.session.execute(sa.select(sa.column("version_num")).select_from(sa.table(table))).scalars())
    if current != heads:
        return f"database at {', '.join(sorted(current)) or 'nothing'}, code at {', '.join(sorted(heads))}"
    return None


def _queue() -> str | None:
    from incidents.jobs import get_queue

    get_queue().huey.pending_count()  # Redis answers, or the SQLite queue file is readable
    return None
