"""Shared pieces of the benchmarks: a migrated app, gunicorn with the real settings, latency statistics, tables."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa

from incidents import serving

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = Path(os.environ.get("BENCH_INSTANCE_PATH", "/tmp/incidents-bench"))


OVERRIDES: dict[str, int] = {}  # --workers/--threads/--keep-alive of a bench: the same for floor and app


def serve_settings() -> dict:
    """Workers and threads exactly as `incidents serve` defaults them, read from the command itself (unless a
    benchmark's --workers/--threads override both the floor's and the app's)."""
    from incidents.cli import serve

    defaults = {p.name: p.default for p in serve.params}
    s = {name: OVERRIDES.get(name, defaults[name]) for name in ("workers", "threads", "keep_alive")}
    return s | {"worker_class": serving.gunicorn_settings("127.0.0.1", 0, **s)["worker_class"]}


def normalise_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def backend(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def bench_app(url: str):
    """The real app on `url`, migrated to head; its instance folder lives under /tmp, never in the repo."""
    os.environ.setdefault("INCIDENTS_INSTANCE_PATH", str(INSTANCE))
    from incidents import create_app
    from incidents.extensions import alembic

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench-secret"})
    with app.app_context():
        alembic.upgrade()
    return app


def ensure_postgres_database(url: str) -> None:
    """Create the PostgreSQL database named in `url` if it does not exist yet (benchmarks own their databases)."""
    if backend(url) != "postgresql":
        return
    u = sa.engine.make_url(normalise_url(url))
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}):
            conn.exec_driver_sql(f'CREATE DATABASE "{u.database}"')
    admin.dispose()


def reset_database(url: str) -> None:
    """Start empty: delete the SQLite file (and WAL) or recreate the PostgreSQL public schema."""
    if backend(url) == "sqlite":
        path = Path(sa.engine.make_url(url).database)
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    ensure_postgres_database(url)
    engine = sa.create_engine(normalise_url(url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(app_spec: str, env: dict, log: Path, port: int | None = None, server: dict | None = None):
    """Run `gunicorn app_spec` on 127.0.0.1 with the server settings `incidents serve` uses (workers, threads,
    worker class, timeout, access log to stdout with its format, incidents/serving.py's hooks, no control
    socket); yield its base URL, then stop it. `server` ({"workers", "threads", "keep_alive", and optionally
    "worker_class": "sync"}) replaces serve's workers and threads (the ingestion floor tries several)."""
    port = port or free_port()
    s = server or serve_settings()
    g = serving.gunicorn_settings("127.0.0.1", port, s["workers"], s["threads"], s["keep_alive"])
    if s.get("worker_class") == "sync":  # one request at a time per process: no threads, no keep-alive
        g.update(worker_class="sync", threads=1, keepalive=0)
    cmd = [sys.executable, "-m", "gunicorn", "--bind", g["bind"], "--workers", str(g["workers"]),
           "--threads", str(g["threads"]), "--keep-alive", str(g["keepalive"]),
           "--worker-connections", str(g["worker_connections"]), "--worker-class", g["worker_class"],
           "--timeout", str(g["timeout"]), "--access-logfile", g["accesslog"],
           # the module gives the settings a command line cannot: the access-log format and the worker hook
           "--config", "python:incidents.serving", "--no-control-socket", app_spec]
    with _server(cmd, env, log, port) as base:
        yield base


@contextmanager
def incidents_serve(env: dict, log: Path, port: int | None = None, job_worker: bool = True,
                    module: str = "incidents"):
    """Run the real `incidents serve` (migrations, gunicorn with its settings, and its job worker unless
    `job_worker` is False) on 127.0.0.1; yield its base URL, then stop it (the master stops the job worker).
    `module` runs serve through another entry point (bench/serve_without_audit.py, for an A/B)."""
    port = port or free_port()
    s = serve_settings()
    cmd = [sys.executable, "-m", module, "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(s["workers"]), "--threads", str(s["threads"]), "--keep-alive", str(s["keep_alive"])]
    if not job_worker:
        cmd.append("--no-worker")
    with _server(cmd, env, log, port) as base:
        yield base


@contextmanager
def _server(cmd: list[str], env: dict, log: Path, port: int):
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc, log, timeout=60)
        settle()
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=45)  # gunicorn's graceful stop, then serve's job worker (30 s grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_up(base: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            requests.get(base + "/healthz", timeout=10)  # the socket is bound before workers finish booting
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer within {timeout}s; see {log}")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (user, nice, system, irq, softirq; not idle, iowait or steal),
    from /proc/stat: the client, the server, its job worker and the database together. Per delivery, it is the
    steadiest figure of a run on a noisy shared machine (it does not count time spent waiting for a CPU)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def settle(quiet_cores: float = 0.25, interval: float = 0.25, timeout: float = 20) -> float:
    """Wait until the machine is quiet (under `quiet_cores` busy over `interval`), at most `timeout` seconds;
    returns the seconds waited. A server answers /healthz as soon as its first worker is up, while its other
    workers (and serve's job worker) are still importing the app: measured from then, a run would count their
    start-up CPU against the server's rate, more for the app, whose start-up is heavier than the floor's."""
    started = time.monotonic()
    before = busy_cpu_seconds()
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        now = busy_cpu_seconds()
        if now - before < quiet_cores * interval:
            break
        before = now
    return time.monotonic() - started


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that really happened)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def stats_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "max": max(ms) if ms else float("nan"), "mean": statistics.fmean(ms) if ms else float("nan")}


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table, so the output pastes straight into bench/README.md."""
    def fmt(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)
