"""SQLite engine tuning: the threads of one process take turns for the write lock instead of busy-polling."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from incidents.database import sqlite_begin_mode, tune_engine


def make_engine(tmp_path, busy_timeout: float = 30):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.sqlite3'}")
    tune_engine(engine, busy_timeout)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    return engine


def test_concurrent_writers_all_commit_and_none_waits_on_sqlite_busy_polling(tmp_path):
    engine = make_engine(tmp_path)
    errors = []

    def writer():
        try:
            for _ in range(25):
                with engine.begin() as conn:
                    n = conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar()
                    time.sleep(0.001)  # hold the lock a little, as a real delivery does
                    conn.exec_driver_sql("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar() == 200  # no lost update
    engine.dispose()


def test_rollback_and_failed_begin_release_the_turn(tmp_path):
    engine = make_engine(tmp_path, busy_timeout=5)
    conn = engine.connect()
    trans = conn.begin()
    conn.exec_driver_sql("UPDATE counter SET n = 1")
    trans.rollback()
    conn.close()
    done = []

    def other():
        with engine.begin() as c:
            c.exec_driver_sql("UPDATE counter SET n = 2")
        done.append(True)

    t = threading.Thread(target=other)
    t0 = time.perf_counter()
    t.start()
    t.join(10)
    assert done == [True] and time.perf_counter() - t0 < 2  # not the 5 s wait of a leaked turn
    engine.dispose()


def test_readers_do_not_wait_for_a_writer(tmp_path):
    engine = make_engine(tmp_path)
    writer = engine.connect()
    trans = writer.begin()  # holds the write turn (BEGIN IMMEDIATE)
    writer.exec_driver_sql("UPDATE counter SET n = 5")
    seen = []

    def reader():
        token = sqlite_begin_mode.set("DEFERRED")
        try:
            with engine.connect() as conn:
                seen.append(conn.exec_driver_sql("SELECT n FROM counter").scalar())
                conn.rollback()
        finally:
            sqlite_begin_mode.reset(token)

    t = threading.Thread(target=reader)
    t0 = time.perf_counter()
    t.start()
    t.join(10)
    assert seen == [0] and time.perf_counter() - t0 < 2  # the committed value, without waiting
    trans.commit()
    writer.close()
    engine.dispose()


def test_a_thread_writing_on_two_connections_is_not_made_to_wait_for_itself(tmp_path):
    """Waiting for our own turn could only time out; SQLite answers as it always did (busy after its timeout)."""
    engine = make_engine(tmp_path, busy_timeout=1)
    first = engine.connect()
    trans = first.begin()
    first.exec_driver_sql("UPDATE counter SET n = 1")
    second = engine.connect()
    t0 = time.perf_counter()
    try:
        second.begin()
    except sa.exc.OperationalError as e:
        assert "locked" in str(e)
    assert time.perf_counter() - t0 < 1.8  # SQLite's 1 s, not 1 s in the queue and 1 s more in SQLite
    second.close()
    trans.commit()
    first.close()
    with engine.begin() as conn:  # and the turn was released: the next writer goes straight in
        conn.exec_driver_sql("UPDATE counter SET n = 2")
    engine.dispose()


def test_a_connection_returned_mid_transaction_gives_its_turn_back(tmp_path):
    engine = make_engine(tmp_path, busy_timeout=3)
    conn = engine.connect()
    conn.begin()
    conn.exec_driver_sql("UPDATE counter SET n = 1")
    conn.invalidate()  # dropped without COMMIT or ROLLBACK going through the dialect
    conn.close()
    t0 = time.perf_counter()
    with engine.begin() as other:
        other.exec_driver_sql("UPDATE counter SET n = 2")
    assert time.perf_counter() - t0 < 2
    engine.dispose()
