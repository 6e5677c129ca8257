"""Background jobs: queued only after the commit, retried with backoff, consumed by real workers.

The jobs declared here are also imported by worker subprocesses (JOB_IMPORTS=["tests.test_jobs"])."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import current_app
from huey import MemoryHuey, RedisHuey, SqliteHuey, crontab

from incidents import create_app
from incidents.extensions import db
from incidents.jobs import (
    JobQueue,
    declared_jobs,
    enqueue_after_commit,
    get_queue,
    job,
    pending_jobs,
    periodic,
    run_burst,
    utcnow_naive,
)
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent
RAN: list[tuple[str, object]] = []
FAILURES: dict[str, int] = {}


@job(retries=0)
def record(label: str) -> None:
    """Append to jobs.log in the instance folder: proves which app (and process) ran it."""
    RAN.append((label, current_app._get_current_object()))
    with open(Path(current_app.instance_path) / "jobs.log", "a") as log:
        log.write(f"{label} {os.getpid()} {os.nice(0)}\n")  # os.nice(0): this process's niceness


@job(retries=3, retry_delay=10, backoff=2)
def flaky(label: str) -> None:
    """Fails until FAILURES[label] is used up."""
    RAN.append((label, None))
    if FAILURES.get(label, 0) > 0:
        FAILURES[label] -= 1
        raise RuntimeError("flaky")


@periodic(crontab())  # every minute
def every_minute() -> None:
    RAN.append(("every_minute", None))


@pytest.fixture(autouse=True)
def _clean():
    RAN.clear()
    FAILURES.clear()
    yield
    RAN.clear()


@pytest.fixture
def queue(app):
    """The test app's queue swapped for a real (non-immediate) in-memory one, to drive runs by hand."""
    original = app.extensions["incidents.jobs"]
    swapped = JobQueue(app, MemoryHuey("test", immediate=False))
    app.extensions["incidents.jobs"] = swapped
    yield swapped
    app.extensions["incidents.jobs"] = original


def labels() -> list[str]:
    return [label for label, _ in RAN]


# --- after commit, not before, never on rollback -------------------------------------------------------------


def test_job_runs_only_after_commit(app, session):
    enqueue_after_commit(record, "committed")
    make_user()  # commits
    assert labels() == ["committed"]
    assert RAN[0][1] is app  # ran inside an app context of the app that queued it


def test_job_is_not_run_before_the_commit(app, session, queue):
    user = make_user()
    user.name = "Renamed"
    enqueue_after_commit(record, "later")
    session.flush()
    assert len(queue.huey) == 0 and pending_jobs(session) == [(record.name, ("later",))]
    session.commit()
    assert len(queue.huey) == 1 and pending_jobs(session) == []


def test_rolled_back_job_never_runs(app, session):
    user = make_user()
    user.name = "Renamed"
    enqueue_after_commit(record, "rolled-back")
    session.rollback()
    assert pending_jobs(session) == []
    make_user()  # a later commit must not resurrect it
    assert labels() == []


def test_closed_session_drops_its_jobs(app, session):
    session.get(type(make_user()), 1)
    enqueue_after_commit(record, "closed")
    session.close()
    make_user()
    assert labels() == []


def test_commit_without_any_write_still_runs_the_job(app, session):
    enqueue_after_commit(record, "no-write")
    session.commit()
    assert labels() == ["no-write"]


def test_savepoint_rollback_drops_the_jobs_queued_inside_it(app, session):
    # What a rolled-back savepoint wrote never commits, so nothing queued for it may run (a replayed delivery
    # that failed inside its savepoint must not announce the incident it would have opened).
    make_user()
    enqueue_after_commit(record, "outer")
    with session.begin_nested() as savepoint:
        enqueue_after_commit(record, "inner")
        with session.begin_nested():
            enqueue_after_commit(record, "innermost")
        savepoint.rollback()
    with session.begin_nested():
        enqueue_after_commit(record, "released")
    session.commit()
    assert labels() == ["outer", "released"]


def test_released_savepoint_does_not_run_jobs_before_the_outer_commit(app, session, queue):
    make_user()
    enqueue_after_commit(record, "outer")
    with session.begin_nested():
        session.flush()
    assert len(queue.huey) == 0 and pending_jobs(session) == [(record.name, ("outer",))]
    session.commit()
    assert len(queue.huey) == 1


def test_jobs_take_ids_not_rows(app, session):
    user = make_user()
    with pytest.raises(TypeError, match="ids"):
        enqueue_after_commit(record, user)
    with pytest.raises(TypeError):
        enqueue_after_commit(record, True)


def test_each_session_commits_its_own_jobs(app, session):
    other = db.sessionmaker()
    try:
        enqueue_after_commit(record, "other", session=other)
        session.commit()
        assert labels() == []
        other.commit()
        assert labels() == ["other"]
    finally:
        other.close()


# --- retries, burst, periodic ------------------------------------------------------------------------------


def test_failing_job_is_retried_with_exponential_backoff(app, session, queue):
    FAILURES["x"] = 2
    enqueue_after_commit(flaky, "x")
    session.commit()

    assert run_burst(queue) == 1  # failed; the retry waits 10 s, so this burst is over
    [retry] = queue.huey.scheduled()
    assert retry.retries == 2 and retry.retry_delay == 20  # the next one will wait twice as long

    later = utcnow_naive() + timedelta(seconds=11)
    assert run_burst(queue, now=lambda: later) == 1  # second failure; the next retry is 20 s away
    assert run_burst(queue, now=lambda: later + timedelta(seconds=21)) == 1  # succeeds
    assert labels() == ["x", "x", "x"]
    assert queue.huey.scheduled() == [] and len(queue.huey) == 0


def test_retries_are_bounded(app, session, queue):
    FAILURES["y"] = 99
    enqueue_after_commit(flaky, "y")
    session.commit()
    far = utcnow_naive() + timedelta(days=1)
    for _ in range(6):
        run_burst(queue, now=lambda: far)
    assert labels() == ["y"] * 4  # the first run and three retries


def test_burst_leaves_future_tasks_alone(app, queue):
    queue.bind(record).schedule(("future",), delay=3600)
    assert run_burst(queue) == 0
    assert len(queue.huey.scheduled()) == 1
    assert run_burst(queue, now=lambda: utcnow_naive() + timedelta(hours=2)) == 1
    assert labels() == ["future"]


def test_periodic_jobs_run_in_burst_only_when_asked(app, queue):
    at = datetime(2030, 1, 1, 12, 7)  # a fixed minute: which periodic jobs are due never depends on the clock
    due = [j.name for j in declared_jobs().values() if j.schedule is not None and j.schedule(at)]
    assert "tests.test_jobs.every_minute" in due
    assert run_burst(queue, now=lambda: at) == 0
    assert run_burst(queue, now=lambda: at, periodic=True) == len(due)
    assert labels() == ["every_minute"]


def test_immediate_mode_is_the_test_default(app):
    assert get_queue(app).huey.immediate is True


def test_immediate_mode_keeps_job_failures_for_the_test(app, session):
    queue = get_queue(app)
    FAILURES["boom"] = 1
    enqueue_after_commit(flaky, "boom")
    make_user()  # the commit itself succeeds, and the session stays usable
    [(name, ids, error)] = queue.failures
    assert (name, ids) == (flaky.name, ("boom",)) and "flaky" in str(error)
    assert labels() == ["boom"]
    queue.failures.clear()
    make_user()


def test_enqueue_failure_after_commit_is_logged_not_raised(app, session, queue, caplog, monkeypatch):
    def broken(*_args):
        raise ConnectionError("queue storage is down")

    monkeypatch.setattr(queue, "enqueue", broken)
    enqueue_after_commit(record, "lost")
    make_user()  # the data is committed all the same
    assert "could not enqueue tests.test_jobs.record('lost',)" in caplog.text


# --- real storages and real worker processes ------------------------------------------------------------


def _worker_env(tmp_path: Path, queue_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update(
        INCIDENTS_INSTANCE_PATH=str(tmp_path),
        INCIDENTS_DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        INCIDENTS_SECRET_KEY="test",
        INCIDENTS_QUEUE_URL=queue_url,
        INCIDENTS_JOB_IMPORTS=json.dumps(["tests.test_jobs"]),
        PYTHONPATH=str(ROOT),
    )
    return env


def _producer(tmp_path: Path, queue_url: str, monkeypatch):
    monkeypatch.setenv("INCIDENTS_INSTANCE_PATH", str(tmp_path))
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}", "SECRET_KEY": "test",
                       "QUEUE_URL": queue_url})


def _log(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "jobs.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_sqlite_queue_is_the_default_and_burst_worker_drains_it(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTS_QUEUE_URL", raising=False)
    producer = _producer(tmp_path, "", monkeypatch)
    huey = get_queue(producer).huey
    assert isinstance(huey, SqliteHuey) and huey.storage.filename == str(tmp_path / "queue.sqlite3")
    get_queue(producer).enqueue(record, "one")
    get_queue(producer).enqueue(record, "two")
    assert _log(tmp_path) == []  # nothing runs in the producer

    result = subprocess.run([sys.executable, "-m", "incidents", "worker", "--burst"], cwd=ROOT,
                            env=_worker_env(tmp_path, ""), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # The two queued, every_minute and whichever of the app's periodic jobs are due this minute.
    assert int(re.search(r"Ran (\d+) job\(s\)\.", result.stdout).group(1)) >= 3
    runs = _log(tmp_path)
    assert sorted(label for label, _, _ in runs) == ["one", "two"]
    assert all(int(pid) != os.getpid() for _, pid, _ in runs)
    assert len(huey) == 0


def test_consumer_process_runs_jobs_and_stops_gracefully(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'q.sqlite3'}"
    producer = _producer(tmp_path, url, monkeypatch)
    worker = subprocess.Popen([sys.executable, "-m", "incidents", "worker", "--workers", "2"], cwd=ROOT,
                              env=_worker_env(tmp_path, url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for n in range(3):
            get_queue(producer).enqueue(record, f"job{n}")
        _wait_for(lambda: len(_log(tmp_path)) == 3)
    finally:
        worker.send_signal(signal.SIGINT)
        output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 0, output
    assert {label for label, _, _ in _log(tmp_path)} == {"job0", "job1", "job2"}
    assert {pid for _, pid, _ in _log(tmp_path)} == {str(worker.pid)}


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379")
def test_redis_queue(app, session, tmp_path, monkeypatch):
    url = "redis://127.0.0.1:6379/15"
    producer = _producer(tmp_path, url, monkeypatch)
    queue = get_queue(producer)
    queue.huey.name = f"test-{uuid.uuid4().hex}"  # never share keys with another run
    queue.huey.storage = type(queue.huey.storage)(queue.huey.name, url=url)
    try:
        assert isinstance(queue.huey, RedisHuey)
        queue.enqueue(record, "redis")
        assert len(queue.huey) == 1
        assert run_burst(queue) == 1
        assert _log(tmp_path)[0][0] == "redis"
    finally:
        queue.huey.storage.flush_all()


def test_serve_starts_a_worker_and_stops_it(tmp_path, monkeypatch):
    producer = _producer(tmp_path, "", monkeypatch)
    get_queue(producer).enqueue(record, "served")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "incidents", "serve", "--port", str(port), "--workers", "1"],
                              cwd=ROOT, env=_worker_env(tmp_path, ""), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _log(tmp_path))
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0].decode()
    assert "Starting a background-job worker" in output
    [[label, pid, niceness]] = _log(tmp_path)
    assert label == "served"
    assert int(niceness) == os.nice(0) + 5  # the job worker gives way to web requests (WORKER_NICE)
    assert int(pid) not in (os.getpid(), server.pid)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # the worker ended with the server


def test_serve_worker_command_follows_the_queue(tmp_path, monkeypatch):
    from incidents.cli import _job_worker_command

    app = _producer(tmp_path, "", monkeypatch)
    assert _job_worker_command(app)[1:] == ["-m", "incidents", "worker", "--workers", "2", "--nice", "5"]
    memory = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "QUEUE_URL": "memory://"})
    assert _job_worker_command(memory) is None  # no other process could read it
    immediate = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "QUEUE_IMMEDIATE": True})
    assert _job_worker_command(immediate) is None
