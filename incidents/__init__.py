"""Incident and blameless post-mortem management."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask

PACKAGE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """A top-level folder of the layout (templates, migrations, config): the wheel carries it inside the package
    (setup.py maps it there at build time); a source checkout, editable install included, has it beside."""
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, then INCIDENTS_* environment, then `test_config`."""
    app = Flask(
        __name__,
        # Under the working directory, as the README says, never inside site-packages.
        instance_path=str(Path(os.environ.get("INCIDENTS_INSTANCE_PATH") or "instance").resolve()),
        template_folder=str(resource_path("templates")),
    )
    app.config.from_pyfile(str(resource_path("config") / "default.py"))
    app.config.from_prefixed_env("INCIDENTS")
    if test_config:
        app.config.update(test_config)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    _finish_config(app)

    import incidents.models  # noqa: F401  (every table registered before migrations or queries)
    from incidents import extensions as ext
    from incidents.database import listen_once, tune_engine

    ext.db.init_app(app)
    listen_once()
    with app.app_context():
        for engine in ext.db.engines.values():
            tune_engine(engine, app.config["SQLITE_BUSY_TIMEOUT"])
    ext.alembic.init_app(app)
    ext.csrf.init_app(app)
    ext.login_manager.init_app(app)
    from incidents.auth import sso

    sso.init_app(app)  # checks the single sign-on settings: a bad role map stops the start here

    from incidents import jobs

    jobs.init_app(app)
    from incidents.notify import jobs as notify_jobs

    notify_jobs.init_app(app)
    from incidents.tracker import jobs as tracker_jobs

    tracker_jobs.init_app(app)
    from incidents.slack import jobs as slack_jobs

    slack_jobs.init_app(app)
    from incidents.search import subscribers as search_subscribers

    search_subscribers.init_app(app)  # after the others: its handlers run last, in the table's order
    from incidents.insights import rollup as insights_rollup

    insights_rollup.init_app(app)

    from incidents.audit import recording as audit_recording

    audit_recording.init_app(app)  # after the others: an audit row records what the change's own rows did
    from incidents.action_item import schemas as item_schemas
    from incidents.tracker import schemas as tracker_schemas

    item_schemas.init_app(app)
    tracker_schemas.init_app(app)
    from incidents.alert import batching

    batching.init_app(app)

    from incidents import logs, metrics, web
    from incidents.errors import register_error_handlers

    logs.init_app(app)  # first: every later hook and log line of a request knows its id
    metrics.init_app(app)

    register_error_handlers(app)
    web.register(app)
    return app


def _finish_config(app: Flask) -> None:
    """Derive settings that depend on others: database engine, secret key, cookie flags."""
    cfg = app.config
    url = cfg.get("DATABASE_URL") or f"sqlite:///{Path(app.instance_path) / 'incidents.sqlite3'}"
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://"):]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    cfg["DATABASE_URL"] = url
    engine = {"url": url, "pool_pre_ping": True}
    if not url.startswith("sqlite"):
        engine.update(pool_size=cfg["DATABASE_POOL_SIZE"], max_overflow=10)
    cfg.setdefault("SQLALCHEMY_ENGINES", {"default": engine})
    cfg.setdefault("ALEMBIC", {"script_location": str(resource_path("migrations"))})
    from incidents.database import include_in_migrations, render_migration_item

    cfg.setdefault("ALEMBIC_CONTEXT", {"render_item": render_migration_item, "compare_type": True,
                                       "include_object": include_in_migrations})

    if not cfg.get("SECRET_KEY"):
        key_file = Path(app.instance_path) / "secret_key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_hex(32))
        cfg["SECRET_KEY"] = key_file.read_text().strip()

    secure = str(cfg["BASE_URL"]).startswith("https://")
    lifetime = cfg["PERMANENT_SESSION_LIFETIME"]
    cfg.update(
        # "Keep me signed in" lasts the session lifetime (Flask-Login's own default is a year).
        REMEMBER_COOKIE_DURATION=lifetime if isinstance(lifetime, timedelta) else timedelta(seconds=int(lifetime)),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        WTF_CSRF_TIME_LIMIT=None,
    )
