"""`incidents backup` / `incidents restore`: a backup taken while webhooks pour in restores to one consistent
moment (on SQLite and PostgreSQL, through the commands an operator runs), and restore guards what it replaces."""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from incidents import backup as backup_module
from incidents.backup import BackupError, backup, restore
from tests.alert.conftest import fixture
from tests.test_serve import ROOT, Server

TEST_URL = os.environ.get("INCIDENTS_TEST_DATABASE_URL", "")
ON_POSTGRESQL = TEST_URL.startswith("postgresql")
SENDERS = 4


# --- the typed functions ----------------------------------------------------------------------------------------

def test_sqlite_backup_is_one_snapshot_while_another_connection_writes(tmp_path, monkeypatch):
    """Many small steps, a writer committing pairs of rows between them: the copy holds whole pairs only, and
    it is one pass (the read transaction pins the snapshot, so no write restarts the copy)."""
    source = tmp_path / "source.sqlite3"
    setup = sqlite3.connect(source, isolation_level=None)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.execute("CREATE TABLE pair (n INTEGER, pad TEXT)")
    setup.execute("BEGIN")
    setup.executemany("INSERT INTO pair VALUES (-1, ?)", [("x" * 500,)] * 4000)  # ~500 pages
    setup.execute("COMMIT")
    setup.close()

    stop, written = threading.Event(), []

    def writer():
        conn = sqlite3.connect(source, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        n = 0
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO pair VALUES (?, ?)", [(n, "a"), (n, "b")])
            conn.execute("COMMIT")
            written.append(n)
            n += 1
            time.sleep(0.0005)
        conn.close()

    steps = []
    real_backup = sqlite3.Connection.backup
    monkeypatch.setattr(backup_module, "STEP_PAGES", 8)

    class Counting(sqlite3.Connection):
        def backup(self, target, **kw):
            return real_backup(self, target, progress=lambda *_: steps.append(1), **kw)

    real_connect = sqlite3.connect
    monkeypatch.setattr(backup_module.sqlite3, "connect", lambda *a, **kw: real_connect(*a, factory=Counting, **kw))
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        result = backup(f"sqlite:///{source}", tmp_path / "copy.sqlite3")
        during = len(written)
        while len(written) < during + 20:  # the writer went on after the copy
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()

    assert result.size > 0 and not (tmp_path / "copy.sqlite3-wal").exists()
    assert len(steps) <= 500 * 2 // 8  # one pass over the pages, never restarted
    copied = sqlite3.connect(tmp_path / "copy.sqlite3")
    assert copied.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    assert copied.execute("SELECT count(*) FROM pair WHERE n = -1").fetchone()[0] == 4000
    counts = copied.execute("SELECT n, count(*) FROM pair WHERE n >= 0 GROUP BY n ORDER BY n").fetchall()
    assert counts and all(c == 2 for _, c in counts)  # whole transactions only
    assert [n for n, _ in counts] == list(range(len(counts)))  # a prefix of the commits: one moment
    assert 20 <= len(counts) < len(written)


def test_backup_never_overwrites_unless_forced(tmp_path):
    source = tmp_path / "db.sqlite3"
    sqlite3.connect(source).execute("CREATE TABLE alembic_version (version_num TEXT)").connection.commit()
    target = tmp_path / "backup.sqlite3"
    target.write_text("an earlier backup")
    with pytest.raises(BackupError, match="exists; choose a new name or pass --force"):
        backup(f"sqlite:///{source}", target)
    assert target.read_text() == "an earlier backup"
    backup(f"sqlite:///{source}", target, overwrite=True)
    assert target.read_bytes().startswith(backup_module.SQLITE_MAGIC)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left behind
    with pytest.raises(BackupError, match="is the database itself"):
        backup(f"sqlite:///{source}", source, overwrite=True)
    with pytest.raises(BackupError, match="is the database itself"):
        restore(f"sqlite:///{source}", source, force=True)
    with pytest.raises(BackupError, match="No database at"):
        backup(f"sqlite:///{tmp_path / 'missing.sqlite3'}", tmp_path / "other.sqlite3")


def test_restore_refuses_files_that_are_no_backup(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a backup at all")
    with pytest.raises(BackupError, match="is not a backup made by `incidents backup` .a SQLite database file"):
        restore(f"sqlite:///{tmp_path / 'db.sqlite3'}", text)
    with pytest.raises(BackupError, match="pg_dump custom-format archive was expected"):
        restore("postgresql+psycopg://nobody@127.0.0.1:1/none", text)

    foreign = tmp_path / "foreign.sqlite3"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(BackupError, match="not one of this app"):
        restore(f"sqlite:///{tmp_path / 'db.sqlite3'}", foreign)
    with pytest.raises(BackupError, match="is a SQLite backup, but this app uses PostgreSQL"):
        restore("postgresql+psycopg://nobody@127.0.0.1:1/none", foreign)

    dump = tmp_path / "pg.dump"
    dump.write_bytes(backup_module.PGDUMP_MAGIC + b"\x01\x0e\x00" + b"\x00" * 64)  # the magic, then garbage
    with pytest.raises(BackupError, match="is a PostgreSQL backup, but this app uses SQLite"):
        restore(f"sqlite:///{tmp_path / 'db.sqlite3'}", dump)
    with pytest.raises(BackupError, match="is not a readable pg_dump archive"):
        restore("postgresql+psycopg://nobody@127.0.0.1:1/none", dump)
    assert not (tmp_path / "db.sqlite3").exists()  # refused before anything was touched


@pytest.mark.skipif(not ON_POSTGRESQL, reason="needs a PostgreSQL server to dump")
def test_restore_refuses_a_dump_of_another_database(db_url, tmp_path):
    foreign = tmp_path / "foreign.dump"
    libpq = sa.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    subprocess.run(["pg_dump", "--format=custom", "--exclude-table=alembic_version", "--file", str(foreign),
                    "--dbname", libpq], check=True)
    with pytest.raises(BackupError, match="is a pg_dump archive but not one of this app"):
        restore(db_url, foreign)


def test_an_unreachable_database_is_named_without_its_password():
    with pytest.raises(BackupError, match=r"Cannot use the database postgresql\+psycopg://someone:\*\*\*@") as refused:
        backup_module.holdings("postgresql+psycopg://someone:s3cret@127.0.0.1:1/incidents")
    assert "s3cret" not in str(refused.value)


def test_missing_pg_client_is_a_clear_error(tmp_path, monkeypatch, app):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without pg_dump or pg_restore
    with pytest.raises(BackupError, match=r"pg_dump is not installed .*apt install postgresql-client"):
        backup("postgresql+psycopg://someone:s3cret@127.0.0.1/incidents", tmp_path / "x.dump")
    assert not list(tmp_path.iterdir())
    dump = tmp_path / "x.dump"
    dump.write_bytes(backup_module.PGDUMP_MAGIC + b"\x01\x0e\x00")
    with pytest.raises(BackupError, match=r"pg_restore is not installed .*apt install postgresql-client"):
        restore("postgresql+psycopg://someone:s3cret@127.0.0.1/incidents", dump)
    dump.unlink()

    monkeypatch.setitem(app.config, "DATABASE_URL", "postgresql+psycopg://someone:s3cret@127.0.0.1/incidents")
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "x.dump")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "pg_dump is not installed" in result.output and "postgresql-client" in result.output


def test_pg_password_travels_in_the_environment_only(tmp_path, monkeypatch):
    calls = []

    def fake_run(argv, env, **kw):
        calls.append((argv, env))
        return subprocess.CompletedProcess(argv, 1, "", f"pg_dump: error: connection to {argv[2]} failed")

    monkeypatch.setattr(backup_module.shutil, "which", lambda program: f"/usr/bin/{program}")
    monkeypatch.setattr(backup_module.subprocess, "run", fake_run)
    with pytest.raises(BackupError) as refused:
        backup("postgresql+psycopg://someone:s3cret@db.internal:6543/incidents?sslmode=require",
               tmp_path / "x.dump")
    (argv, env), = calls
    assert argv[:3] == ["/usr/bin/pg_dump", "--dbname",
                        "postgresql://someone@db.internal:6543/incidents?sslmode=require"]
    assert "--format=custom" in argv and env["PGPASSWORD"] == "s3cret"
    assert "s3cret" not in " ".join(argv) and "s3cret" not in str(refused.value)
    assert "connection to <database> failed" in str(refused.value)


def test_restore_command_refuses_a_database_holding_users_or_incidents(app, admin, tmp_path):
    from tests.factories import make_incident

    make_incident()
    runner = app.test_cli_runner()
    file = tmp_path / "now.backup"
    made = runner.invoke(args=["backup", str(file)])
    assert made.exit_code == 0, made.output
    again = runner.invoke(args=["backup", str(file)])
    assert again.exit_code == 1 and "--force" in again.output

    refused = runner.invoke(args=["restore", str(file)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "holds 1 user and 1 incident" in refused.output and "--force" in refused.output


# --- the real thing: serve, ingest, back up, restore --------------------------------------------------------------

@dataclass
class Target:
    """A database the commands run against, as an operator's environment names it."""

    instance: Path
    url: str
    env: dict[str, str]


@pytest.fixture
def databases(tmp_path):
    """Two empty databases of the backend under test: the live one and the one to restore into."""
    if not ON_POSTGRESQL:
        yield [Target(tmp_path / name, f"sqlite:///{tmp_path / name / 'incidents.sqlite3'}",
                      {"INCIDENTS_INSTANCE_PATH": str(tmp_path / name)}) for name in ("live", "restored")]
        return
    server = sa.make_url(TEST_URL).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    names = [f"backup_{name}_{uuid.uuid4().hex[:8]}" for name in ("live", "restored")]
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        targets = []
        for name in names:
            url = server.set(database=name).render_as_string(hide_password=False)
            targets.append(Target(tmp_path / name, url, {"INCIDENTS_INSTANCE_PATH": str(tmp_path / name),
                                                         "INCIDENTS_DATABASE_URL": url}))
        yield targets
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def incidents(target: Target, *args: str) -> subprocess.CompletedProcess:
    """One `incidents ...` command, in its own process, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env |= target.env | {"INCIDENTS_SECRET_KEY": "backup-test"}
    return subprocess.run([sys.executable, "-m", "incidents", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _create(sender: int, n: int) -> dict:
    """OpsGenie Create, P1: every third delivery of a sender is a new alert (and a new SEV1 incident)."""
    payload = copy.deepcopy(fixture("opsgenie_create_p1"))
    payload["alert"]["alias"] = f"backup-{sender}-{n // 3}"
    payload["alert"]["alertId"] = f"{sender}-{n}"
    payload["alert"]["message"] = f"Backup drill {sender}-{n // 3}"
    payload["alertFlowContext"]["requestId"] = f"req-{sender}-{n}"
    return payload


def _rows(url: str) -> dict:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {
                "deliveries": conn.execute(sa.text("SELECT id, outcome, alert_id FROM delivery")).all(),
                "alerts": conn.execute(sa.text("SELECT id, event_count, occurrence_count, incident_id FROM alert")
                                       ).all(),
                "incidents": set(conn.scalars(sa.text("SELECT id FROM incident"))),
                "opened": conn.scalar(sa.text("SELECT count(*) FROM timeline_entry WHERE text LIKE 'Opened from%'")),
            }
    finally:
        engine.dispose()


def test_backup_while_webhooks_are_ingested_restores_the_moment_of_the_backup(tmp_path, databases):
    live, restored = databases
    server = Server(live.instance, env=live.env | {"INCIDENTS_SECRET_KEY": "backup-test"},
                    args=("--workers", "2", "--no-worker"))
    server.start()
    log: list[str] = []
    drain = threading.Thread(target=lambda: log.extend(server.proc.stdout), daemon=True)  # a full pipe stalls it
    drain.start()
    sent: list[tuple[float, int]] = []  # (when the request was sent, the delivery id it was acknowledged with)
    errors: list[str] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    file = tmp_path / "drill.backup"
    try:
        added = incidents(live, "integrations", "add", "opsgenie", "backup drill")
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().rsplit("token=", 1)[1]

        def sender(k: int) -> None:
            with requests.Session() as http:
                n = 0
                while not stop.is_set():
                    at = time.monotonic()
                    r = http.post(f"{server.url}/webhooks/opsgenie", json=_create(k, n),
                                  headers={"X-Incidents-Token": token}, timeout=30)
                    if r.status_code != 200 or r.json().get("outcome") != "processed":
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        return
                    sent.append((at, r.json()["delivery"]))
                    n += 1

        threads += [threading.Thread(target=sender, args=(k,)) for k in range(SENDERS)]
        for t in threads:
            t.start()

        def wait_for(count: int) -> None:
            deadline = time.monotonic() + 30
            while len(sent) < count and not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not errors and len(sent) >= count, errors[:3]

        wait_for(120)
        acknowledged_before = {d for _, d in list(sent)}
        made = incidents(live, "backup", str(file))  # while the senders go on
        finished = time.monotonic()
        assert made.returncode == 0, made.stderr
        wait_for(len(sent) + 60)
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a slow graceful stop is not what this test checks; every
            server.proc.kill()             # acknowledged delivery is committed already
            server.proc.wait(timeout=30)
        drain.join(timeout=5)
    assert not errors, errors[:3]
    assert "Backed up" in made.stdout and file.exists()

    # Restore as an operator would: into an empty database, then the guard, then --force.
    first = incidents(restored, "restore", str(file))
    assert first.returncode == 0 and "schema revision" in first.stdout, first.stderr
    refused = incidents(restored, "restore", str(file))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "holds" in refused.stderr and "incidents" in refused.stderr and "--force" in refused.stderr
    forced = incidents(restored, "restore", "--force", str(file))
    assert forced.returncode == 0, forced.stderr

    got, now = _rows(restored.url), _rows(live.url)
    ids = {d for d, _, _ in got["deliveries"]}
    # The moment lies inside the command: everything acknowledged before it started is there, and nothing
    # sent after it finished; ingestion went on both before and after.
    later = {d for at, d in sent if at > finished}
    assert acknowledged_before <= ids and later and not (later & ids)
    assert len(ids) < len(now["deliveries"])

    # One consistent moment: the rows agree with each other in full.
    assert {outcome for _, outcome, _ in got["deliveries"]} == {"processed"}
    alerts = {a: (events, occurrences, incident) for a, events, occurrences, incident in got["alerts"]}
    per_alert: dict[int, int] = {}
    for _, _, alert in got["deliveries"]:
        per_alert[alert] = per_alert.get(alert, 0) + 1
    assert per_alert == {a: events for a, (events, _, _) in alerts.items()}  # every delivery counted exactly once
    assert all(events == occurrences for events, occurrences, _ in alerts.values())
    incidents_of_alerts = [incident for _, _, incident in alerts.values()]
    assert None not in incidents_of_alerts and set(incidents_of_alerts) == got["incidents"]
    assert len(incidents_of_alerts) == len(got["incidents"]) == got["opened"]

    if not ON_POSTGRESQL:  # ids follow commit order under SQLite's one writer: the copy is a prefix of the live rows
        last = max(ids)
        assert ids == {d for d, _, _ in now["deliveries"] if d <= last}
        live_alerts = {a for a, _, _, _ in now["alerts"] if a <= max(alerts)}
        assert set(alerts) == live_alerts
