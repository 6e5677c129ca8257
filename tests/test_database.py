"""SQLite write transactions wait for another process's write lock by polling, bounded by the busy timeout."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from incidents.database import tune_engine


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
