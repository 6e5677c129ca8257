"""The ingestion *floor*: the least a webhook endpoint can do (store the raw body, commit, answer 202).

Served by gunicorn with the real app's settings (bench/ingest.py) and configured by the real app's own config
derivation and engine tuning (SQLite WAL, busy timeout, synchronous=NORMAL, BEGIN IMMEDIATE; the PostgreSQL
pool), so the gap between this and the real `/webhooks/<source>` is the cost of the app's own work.

    FLOOR_DATABASE_URL=sqlite:////tmp/x.sqlite3 gunicorn 'bench.floor_app:create_floor_app()'
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, request

metadata = sa.MetaData()
floor_delivery = sa.Table(
    "floor_delivery", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.current_timestamp()),
    sa.Column("body", sa.Text, nullable=False),
)


def floor_engine(url: str) -> sa.Engine:
    """An engine built exactly as the real app builds its own (same URL rewriting, pool options and pragmas)."""
    from incidents import _finish_config, resource_path
    from incidents.database import tune_engine

    app = Flask(__name__, instance_path=os.environ.get("INCIDENTS_INSTANCE_PATH", "/tmp/incidents-bench"))
    app.config.from_pyfile(str(resource_path("config") / "default.py"))
    app.config.update(DATABASE_URL=url, SECRET_KEY="floor")
    _finish_config(app)
    options = dict(app.config["SQLALCHEMY_ENGINES"]["default"])
    engine = sa.create_engine(options.pop("url"), **options)
    tune_engine(engine, app.config["SQLITE_BUSY_TIMEOUT"])
    return engine


def create_floor_app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # as config/default.py
    engine = floor_engine(os.environ["FLOOR_DATABASE_URL"])

    @app.post("/floor")
    def floor():
        with engine.begin() as conn:
            conn.execute(floor_delivery.insert().values(source=request.args.get("source", ""),
                                                        body=request.get_data(as_text=True)))
        return "", 202

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app
