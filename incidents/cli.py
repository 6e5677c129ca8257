"""The `incidents` command: the Flask CLI of this app plus serve and demo."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from incidents import create_app


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False, set_debug_flag=False)
def main():
    """Incident and blameless post-mortem management."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, type=int, help="Threads per worker.")
@with_appcontext
def serve(host: str, port: int, workers: int, threads: int):
    """Apply pending migrations, then serve the app with gunicorn."""
    from incidents.auth.services import count_users
    from incidents.extensions import alembic, db

    with current_app.app_context():  # its teardown releases the migration connection (and SQLite's lock)
        alembic.upgrade()
    click.echo(f"Database ready at {current_app.config['DATABASE_URL'].split('@')[-1]}")
    url = f"http://{host}:{port}/"
    if not count_users(db.session):
        click.echo(f"No users yet: open {url} and create the first admin.")
    else:
        click.echo(f"Serving on {url}")
    db.session.close()
    for engine in db.engines.values():
        engine.dispose()  # workers open their own connections after fork
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("accesslog", "-")
            self.cfg.set("timeout", 60)

        def load(self):
            return create_app()

    Gunicorn().run()


@main.command()
@with_appcontext
def demo():
    """Load realistic demo data: teams, services, users and incidents with timelines."""
    from incidents.demo import load_demo
    from incidents.extensions import db

    summary = load_demo(db.session)
    db.session.commit()
    click.echo(summary)
