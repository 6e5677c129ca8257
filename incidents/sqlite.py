"""SQLite engine machinery, imported by `database.tune_engine` for SQLite URLs only.

SQLite has one writer at a time. Each write transaction takes the lock at BEGIN (IMMEDIATE, unless the
`database.sqlite_begin_mode` of the request or job says DEFERRED), the threads of a process take turns in a
queue instead of sleeping in SQLite's busy handler, BEGIN polls briefly for the lock held by another process,
and a thread of its own checkpoints the WAL so that no writer does it inside its COMMIT.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import sqlalchemy as sa
from sqlalchemy import event

from incidents.database import sqlite_begin_mode


def tune_engine(engine: sa.Engine, busy_timeout: float) -> None:
    """WAL, busy timeout, foreign keys, explicit BEGIN, the writer queue and the checkpoint thread."""
    checkpointer = _Checkpointer.for_database(engine.url.database)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        if checkpointer is not None:  # the checkpoint thread keeps the WAL short; this is only the safety net
            cursor.execute(f"PRAGMA wal_autocheckpoint = {_Checkpointer.FALLBACK_PAGES}")
        cursor.close()

    writers = _WriterQueue(busy_timeout)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = sqlite_begin_mode.get()
        dbapi_connection = conn.connection.dbapi_connection
        if mode != "IMMEDIATE":
            conn.exec_driver_sql(f"BEGIN {mode}")
            return
        writers.enter(dbapi_connection)
        try:
            _begin_immediate(conn, dbapi_connection, busy_timeout)
        except BaseException:
            writers.leave(dbapi_connection)
            raise

    dialect = engine.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def _commit(dbapi_connection):
        try:
            do_commit(dbapi_connection)
        finally:
            writers.leave(dbapi_connection)
            if checkpointer is not None:
                checkpointer.nudge()

    def _rollback(dbapi_connection):
        try:
            do_rollback(dbapi_connection)
        finally:
            writers.leave(dbapi_connection)

    dialect.do_commit, dialect.do_rollback = _commit, _rollback

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, _record):
        writers.leave(dbapi_connection)  # however its transaction ended, a returned connection holds no turn


def _begin_immediate(conn: sa.Connection, dbapi_connection, timeout: float) -> None:
    """BEGIN IMMEDIATE, polling every 0.5-5 ms while another process holds the write lock.

    SQLite's own busy handler sleeps in steps of up to 100 ms, so a writer of another process (the other
    gunicorn worker, the job worker) would often sleep long after the lock was freed. Polling picks the lock up
    within milliseconds; the busy timeout still bounds the wait, and every other statement keeps SQLite's handler."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    try:
        while time.monotonic() < deadline:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # last try, through SQLAlchemy: its OperationalError if busy
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


class _Checkpointer:
    """Copies a SQLite WAL back into the database from a thread of its own, so no writer does it in its COMMIT.

    SQLite checkpoints automatically inside the COMMIT of whichever writer pushes the WAL past
    `wal_autocheckpoint` pages, while that writer still holds the turn every other writer waits for. Here a
    daemon thread runs `PRAGMA wal_checkpoint(PASSIVE)` (no write lock taken) every INTERVAL seconds on a
    connection of its own. It starts on the first commit of a process (after any fork) and ends after IDLE
    seconds without one. Connections keep an automatic checkpoint at FALLBACK_PAGES as a safety net.
    One per database file and process."""

    INTERVAL = 0.2
    IDLE = 30.0
    FALLBACK_PAGES = 10_000  # ~40 MB of WAL at SQLite's 4 KiB pages

    _instances: dict[tuple[int, str], _CheckpointThread] = {}
    _guard = threading.Lock()

    @classmethod
    def for_database(cls, database: str | None) -> _Checkpointer | None:
        """The checkpointer of a database file in this process; None for in-memory and URI databases."""
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(database)  # instances are per process: looked up again in nudge()

    def __init__(self, path: str):
        self.path = path

    def _running(self) -> _CheckpointThread:
        key = (os.getpid(), self.path)
        found = self._instances.get(key)
        if found is None or not found.thread.is_alive():
            with self._guard:
                found = self._instances.get(key)
                if found is None or not found.thread.is_alive():
                    found = _CheckpointThread(self.path)
                    self._instances[key] = found
                    found.thread.start()
        return found

    def nudge(self) -> None:
        """Called after each commit: start the thread if this process has none running, and keep it awake."""
        self._running().last_commit = time.monotonic()


class _CheckpointThread:
    def __init__(self, path: str):
        self.path = path
        self.last_commit = time.monotonic()
        self.checkpoints = 0  # how many checkpoints this thread ran (tests read it)
        self.thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint {path}", daemon=True)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return  # the file is gone (a test's temporary database): the fallback checkpoint remains
        try:
            while time.monotonic() - self.last_commit < _Checkpointer.IDLE:
                time.sleep(_Checkpointer.INTERVAL)
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:  # another process is checkpointing, or the file went away
                    if not os.path.exists(self.path):
                        return
        finally:
            connection.close()


class _WriterQueue:
    """SQLite allows one writer; the threads of one process take turns here before BEGIN IMMEDIATE.

    Otherwise every thread but one gets SQLITE_BUSY and sleeps in SQLite's busy handler (steps of up to 100 ms)
    while the lock sits idle. A lock wakes the next writer as soon as the commit is done; SQLite's busy timeout
    still arbitrates between processes, and bounds the wait here, after which BEGIN proceeds and SQLite decides.
    """

    def __init__(self, timeout: float):
        self.lock = threading.Lock()
        self.timeout = timeout
        self.holder: int | None = None  # id() of the DBAPI connection whose transaction holds the turn
        self.owner: int | None = None  # the thread that took it

    @staticmethod
    def _key(connection) -> int:
        # The dialect hooks get the pool's proxy, the begin event the raw connection: key on the raw one.
        return id(getattr(connection, "dbapi_connection", connection))

    def enter(self, dbapi_connection) -> None:
        if self.owner == threading.get_ident():
            return  # this thread already writes on another connection: waiting for itself would only time out
        if self.lock.acquire(timeout=self.timeout):
            self.holder, self.owner = self._key(dbapi_connection), threading.get_ident()

    def leave(self, dbapi_connection) -> None:
        if self.holder is not None and self.holder == self._key(dbapi_connection):
            self.holder = self.owner = None
            self.lock.release()


