"""Declarative base, portable column types, engine tuning and pagination shared by every domain."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import DeclarativeBase, Session

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def render_migration_item(type_: str, obj, autogen_context):
    """Write UTCDateTime into migrations as its plain impl, so revisions never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Indexes that migrations create on PostgreSQL only (e.g. trigram search); not part of the models.
POSTGRESQL_ONLY_INDEXES = frozenset({"ix_incident_title_trgm"})


def include_in_migrations(obj, name, type_, reflected, compare_to) -> bool:
    """Leave PostgreSQL-only indexes out of autogenerate comparisons."""
    return not (type_ == "index" and reflected and name in POSTGRESQL_ONLY_INDEXES)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(enum_cls, length: int = 20) -> sa.Enum:
    """A StrEnum stored as its value in a VARCHAR: portable, and readable in SQL."""
    return sa.Enum(enum_cls, native_enum=False, length=length, validate_strings=True,
                   values_callable=lambda e: [m.value for m in e])


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLite: "IMMEDIATE" takes the write lock at BEGIN so two writers queue on busy_timeout instead of
# failing with a lock-upgrade deadlock; read-only requests set "DEFERRED" so readers never wait.
sqlite_begin_mode: contextvars.ContextVar[str] = contextvars.ContextVar("sqlite_begin_mode", default="IMMEDIATE")


@contextlib.contextmanager
def read_only():
    """Transactions begun inside take no write lock on SQLite (BEGIN DEFERRED), as GET requests do: for jobs
    and commands that read for a while (rendering, recipients) and write, if at all, in a later transaction."""
    token = sqlite_begin_mode.set("DEFERRED")
    try:
        yield
    finally:
        sqlite_begin_mode.reset(token)


def serialize(session: Session, *names: str) -> None:
    """Hold a lock on each name until this transaction ends, so check-then-write steps on it run one at a time.

    PostgreSQL: transaction-level advisory locks, taken in the order given (callers keep one order, so no
    deadlock). SQLite: nothing to take, the write transaction (BEGIN IMMEDIATE, as every request that may
    write begins it) already runs alone."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for name in names:
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@contextlib.contextmanager
def writing():
    """Transactions begun inside take SQLite's write lock at BEGIN (IMMEDIATE), even in a read-only request:
    for a short write on the side, committed at once (a DEFERRED transaction that writes later can fail with
    SQLITE_BUSY when it upgrades)."""
    token = sqlite_begin_mode.set("IMMEDIATE")
    try:
        yield
    finally:
        sqlite_begin_mode.reset(token)


def reads_only(view):
    """Marks a POST view that writes nothing (web.py then begins its transactions DEFERRED, as for GET): a slow
    read must not hold SQLite's one write lock, which every webhook delivery waits for."""
    view.reads_only = True
    return view


def tune_engine(engine: sa.Engine, busy_timeout: float) -> None:
    """Apply WAL, busy timeout, foreign keys and explicit BEGIN to SQLite engines."""
    if engine.dialect.name != "sqlite":
        return

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
    gunicorn worker, the job worker) often sleeps long after the lock was freed: that made the p99 of webhook
    ingestion 5-10x the median. Polling here picks the lock up within milliseconds; the busy timeout still
    bounds the wait, and every other statement keeps SQLite's handler."""
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
    `wal_autocheckpoint` pages: that commit then copies and fsyncs ~1,000 pages while its thread still holds the
    writer turn, and every other writer of the process waits (the webhook benchmark's commits: p50 0.2 ms, p99
    9 ms). Here a daemon thread runs `PRAGMA wal_checkpoint(PASSIVE)` every INTERVAL seconds on a connection of
    its own; a passive checkpoint takes no write lock, so writers go on meanwhile. The thread starts on the first
    commit of a process (after any fork) and ends after IDLE seconds without one; the next commit starts it again.
    Connections keep an automatic checkpoint at FALLBACK_PAGES as a safety net should the thread fall behind.
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

    Without it, every thread but one gets SQLITE_BUSY and sleeps in SQLite's busy handler (1, 2, 5 ... up to
    100 ms steps), so the lock sits idle while waiters sleep and a few unlucky writers wait hundreds of ms.
    A lock wakes the next writer as soon as the commit is done; SQLite's busy timeout still arbitrates between
    processes. Waiting is bounded by the busy timeout, after which BEGIN proceeds and SQLite decides, as before.
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


def refuse_nul_characters(session: Session, _flush_context, _instances) -> None:
    """The NUL rule (incidents/singleline.py) on every column of every table, whatever wrote it."""
    from incidents.singleline import has_nul, reject_nul

    new = session.new
    for obj in (*new, *session.dirty):
        state = sa.inspect(obj)
        for attr in state.mapper.column_attrs:
            values = [state.dict.get(attr.key)] if obj in new else (state.attrs[attr.key].history.added or ())
            for value in filter(has_nul, values):
                reject_nul(**{attr.key: value})


def listen_once() -> None:
    if not event.contains(Session, "before_flush", refuse_nul_characters):
        event.listen(Session, "before_flush", refuse_nul_characters)


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(session: Session, stmt: sa.Select, page: int, per_page: int) -> Page:
    """Run one page of `stmt` plus a count of all its rows."""
    page = max(1, page)
    total = session.scalar(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total)
