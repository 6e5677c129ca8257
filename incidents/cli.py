"""The `incidents` command: the Flask CLI of this app plus serve and demo."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from incidents import create_app, logs, metrics, serving, urls


class IncidentsGroup(FlaskGroup):
    """The app's CLI; a command run against a database that was never migrated says what to do, not a traceback."""

    def invoke(self, ctx):
        import sqlalchemy as sa

        try:
            return super().invoke(ctx)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as e:
            if "no such table" not in str(e) and "does not exist" not in str(e):
                raise
            raise click.ClickException(
                f"The database has no such table ({str(e.orig).splitlines()[0]}): it is not set up yet. "
                "Run `incidents db upgrade` (or `incidents serve`, which migrates first).") from None


@click.group(cls=IncidentsGroup, create_app=create_app, add_version_option=False, set_debug_flag=False)
def main():
    """Incident and blameless post-mortem management."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int,
              help="Threads per worker; webhook deliveries waiting together share one transaction, so more "
                   "threads make larger batches.")
@click.option("--keep-alive", "keep_alive", type=click.IntRange(0), default=0, show_default=True,
              help="Seconds a connection may stay open for another request. 0: each worker takes only as many "
                   "connections as it has threads and closes each after its response (see README).")
@click.option("--no-worker", is_flag=True, help="Do not start a background-job worker beside the web server.")
@with_appcontext
def serve(host: str, port: int, workers: int, threads: int, keep_alive: int, no_worker: bool):
    """Apply pending migrations, then serve the app with gunicorn and a background-job worker."""
    from incidents.auth.services import count_users
    from incidents.extensions import alembic, db

    with current_app.app_context():  # its teardown releases the migration connection (and SQLite's lock)
        alembic.upgrade()
    click.echo(f"Database ready at {current_app.config['DATABASE_URL'].split('@')[-1]}")
    url = urls.serve_url(host, port)
    # Links made outside requests (jobs, e-mails) in the web and job workers point here unless BASE_URL is set.
    os.environ["INCIDENTS_SERVE_URL"] = current_app.config["SERVE_URL"] = url
    if not count_users(db.session):
        click.echo(f"No users yet: open {url}/ and create the first admin.")
    else:
        click.echo(f"Serving on {url}/")
    if not current_app.config.get("BASE_URL"):
        named = f" ({host or '*'} is every address: this host's name stands in)" if host in urls.ANY_ADDRESS else ""
        click.echo(f"Warning: INCIDENTS_BASE_URL is not set, so links in e-mails and Shortcut cards use {url}"
                   f"{named} and pages the address each request came to. Production should set it to the public "
                   "URL.", err=True)
    db.session.close()
    for engine in db.engines.values():
        engine.dispose()  # workers open their own connections after fork
    # Every process (web workers, the job worker) writes its counters here; a scrape merges them.
    metrics.use_multiprocess_dir(Path(current_app.instance_path) / "metrics")
    log_format = current_app.config["LOG_FORMAT"]
    job_worker = None if no_worker else _job_worker_command(current_app)
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self):
            for name, value in serving.gunicorn_settings(host, port, workers, threads, keep_alive,
                                                         log_format).items():
                self.cfg.set(name, value)
            if job_worker:
                # The job consumer runs as a child of gunicorn's master: started before the web workers,
                # stopped (gracefully, then killed) when the master exits. It is a separate process, not a
                # thread, because the master forks web workers and threads do not survive a fork.
                children: list[subprocess.Popen] = []

                def start_worker(_server):
                    # Started as a shell's background job (`nohup incidents serve &`, CI scripts), this process
                    # has SIGINT ignored, and an ignored signal stays ignored across exec: the worker would drop
                    # the SIGINT `_stop` sends before huey sets its handlers (a stop soon after a start), and
                    # serve would wait out the grace period. Restored for the child; gunicorn sets its own next.
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    children.append(subprocess.Popen(job_worker))  # noqa: S603  (our interpreter, our argv)

                def stop_worker(_server):
                    for child in children:
                        _stop(child)
                        metrics.process_exited(child.pid)

                self.cfg.set("on_starting", start_worker)
                self.cfg.set("on_exit", stop_worker)

        def load(self):
            return create_app()

    Gunicorn().run()


def _job_worker_command(app) -> list[str] | None:
    """The `incidents worker` command line for serve, or None when jobs cannot or need not run apart."""
    from incidents.jobs import get_queue

    huey = get_queue(app).huey
    if huey.immediate:
        click.echo("Background jobs run inline (QUEUE_IMMEDIATE): no worker started.")
        return None
    if type(huey.storage).__name__ == "MemoryStorage":
        click.echo("QUEUE_URL is memory://, which no other process can read: no worker started.")
        return None
    click.echo("Starting a background-job worker (--no-worker to run `incidents worker` elsewhere).")
    return [sys.executable, "-m", "incidents", "worker", "--workers", str(app.config["WORKER_THREADS"]),
            "--nice", str(app.config["WORKER_NICE"])]


def _stop(child: subprocess.Popen, grace: float = 30) -> None:
    """SIGINT lets huey finish running jobs; after `grace` seconds the worker is killed."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@main.command()
@click.option("--workers", type=int, default=None, help="Worker threads (default: WORKER_THREADS).")
@click.option("--burst", is_flag=True, help="Run every job that is due, including due retries and periodic "
              "jobs of this minute, then exit (for cron and tests).")
@click.option("--nice", "niceness", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Lower this process's CPU priority by N (serve starts its worker with WORKER_NICE).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve this worker's metrics on http://HOST:N/metrics (a worker that `serve` did not start; "
                   "loopback clients, or a bearer METRICS_TOKEN).")
@click.option("--metrics-host", default="0.0.0.0", show_default=True,  # noqa: S104 - guarded like GET /metrics
              help="Address the metrics port listens on.")
@with_appcontext
def worker(workers: int | None, burst: bool, niceness: int, metrics_port: int | None, metrics_host: str):
    """Run the background-job consumer with its periodic jobs."""
    if niceness:
        os.nice(niceness)  # jobs yield the CPU to web requests when both want it; idle CPU is still theirs
    from incidents.jobs import get_queue, run_burst, run_consumer

    queue = get_queue(current_app)
    if queue.huey.immediate:
        raise click.UsageError("QUEUE_IMMEDIATE is on: jobs run inline, there is no queue to consume.")
    if burst:
        ran = run_burst(queue, periodic=True)
        click.echo(f"Ran {ran} job(s).")
        return
    logs.configure(current_app.config["LOG_FORMAT"], logging.INFO)
    if metrics_port:
        metrics.serve_standalone(current_app._get_current_object(), metrics_host, metrics_port)
    metrics.warm()
    serving.freeze_heap()  # long-lived start-up objects out of the collector's way (see serving.py)
    run_consumer(queue, workers or current_app.config["WORKER_THREADS"])


@main.command()
@with_appcontext
def demo():
    """Load realistic demo data: teams, services, users and incidents with timelines."""
    from incidents.demo import load_demo
    from incidents.extensions import db

    summary = load_demo(db.session)
    db.session.commit()
    click.echo(summary)
