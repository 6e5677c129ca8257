"""SQLite tuning: writers wait for another process's write lock by polling, bounded by the busy timeout; a
thread of each process checkpoints the WAL; read-only transactions take no write lock."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from incidents.database import read_only, tune_engine
from incidents.sqlite import _Checkpointer


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'lock.sqlite3'}")
    tune_engine(engine, busy_timeout=2.0)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    yield engine
    engine.dispose()


def _hold_write_lock(path: str, seconds: float, started: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)  # another "process": its own connection, no shared lock
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    started.set()
    threading.Event().wait(seconds)
    other.execute("COMMIT")
    other.close()


def test_a_writer_waits_for_the_lock_and_then_commits(engine):
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(engine.url.database, 0.3, started))
    holder.start()
    started.wait(5)
    with engine.begin() as conn:  # BEGIN IMMEDIATE while the other connection writes
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    holder.join()
    with engine.connect() as conn:
        assert sorted(v for (v,) in conn.exec_driver_sql("SELECT v FROM t")) == [1, 2]
        # The connection's busy timeout is back for every other statement.
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000


def test_the_wait_is_bounded_by_the_busy_timeout(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'lock.sqlite3'}")
    tune_engine(engine, busy_timeout=0.2)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(engine.url.database, 1.0, started))
    holder.start()
    started.wait(5)
    with pytest.raises(sa.exc.OperationalError, match="locked"), engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    holder.join()
    engine.dispose()


# --- checkpoints -----------------------------------------------------------------------------------------

def _wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _checkpoint_thread(engine):
    return _Checkpointer._instances.get((os.getpid(), engine.url.database))


def test_a_thread_checkpoints_the_wal_so_commits_do_not(engine, monkeypatch, tmp_path):
    monkeypatch.setattr(_Checkpointer, "INTERVAL", 0.02)
    with engine.connect() as conn:  # writers only checkpoint themselves if the thread falls far behind
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == _Checkpointer.FALLBACK_PAGES
    for i in range(20):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (i,))
    thread = _checkpoint_thread(engine)
    assert thread is not None and thread.thread.is_alive()
    after_last_commit = thread.checkpoints
    assert _wait_for(lambda: thread.checkpoints >= after_last_commit + 2)  # a whole one after the last commit
    # The database file itself (without its WAL) now holds every committed row: the thread copied them back.
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(engine.url.database, copy)
    alone = sqlite3.connect(copy)
    assert alone.execute("SELECT count(*) FROM t").fetchone()[0] == 20
    alone.close()


def test_the_checkpoint_thread_stops_when_idle_and_the_next_commit_restarts_it(engine, monkeypatch):
    monkeypatch.setattr(_Checkpointer, "INTERVAL", 0.02)
    monkeypatch.setattr(_Checkpointer, "IDLE", 0.1)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    first = _checkpoint_thread(engine)
    assert _wait_for(lambda: not first.thread.is_alive())
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    second = _checkpoint_thread(engine)
    assert second is not first and second.thread.is_alive()


def test_in_memory_databases_have_no_checkpoint_thread():
    assert _Checkpointer.for_database(":memory:") is None
    assert _Checkpointer.for_database(None) is None
    assert _Checkpointer.for_database("file:x.db?mode=memory") is None


def test_read_only_transactions_take_no_write_lock(engine):
    writer = sqlite3.connect(engine.url.database, isolation_level=None)  # another process, mid-transaction
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    try:
        with read_only(), engine.begin() as conn:  # BEGIN DEFERRED: it neither waits for nor sees the write
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        # A writer would have waited (and timed out here).
        with pytest.raises(sa.exc.OperationalError, match="locked"), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    finally:
        writer.execute("COMMIT")
        writer.close()


def test_the_sqlite_machinery_loads_for_sqlite_engines_only(tmp_path):
    import subprocess
    import sys

    code = ("import sys, sqlalchemy as sa\n"
            "from incidents.database import tune_engine\n"
            "tune_engine(sa.create_engine('postgresql+psycopg://nobody@127.0.0.1/none'), 1.0)\n"
            "assert 'incidents.sqlite' not in sys.modules\n"
            f"tune_engine(sa.create_engine('sqlite:///{tmp_path / 'x.db'}'), 1.0)\n"
            "assert 'incidents.sqlite' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
