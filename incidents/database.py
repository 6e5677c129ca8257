"""Declarative base, portable column types, transaction intent and pagination shared by every domain.

Backend-neutral: SQLite's engine machinery lives in incidents/sqlite.py, loaded by `tune_engine` for SQLite only."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import math
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
POSTGRESQL_ONLY_INDEXES = frozenset({"ix_incident_title_trgm", "ix_search_document_tsv"})


# The full-text structures of migration 0015 that differ by database: SQLite's FTS5 table (and the shadow tables
# FTS5 makes for it), PostgreSQL's tsvector column of search_document.
FULL_TEXT_TABLES = ("search_fts",)
FULL_TEXT_COLUMNS = frozenset({("search_document", "tsv")})


def include_in_migrations(obj, name, type_, reflected, compare_to) -> bool:
    """Leave database-specific indexes and full-text structures out of autogenerate comparisons."""
    if not reflected:
        return True
    if type_ == "index" and name in POSTGRESQL_ONLY_INDEXES:
        return False
    if type_ == "table" and name and name.startswith(FULL_TEXT_TABLES):
        return False
    return not (type_ == "column" and (getattr(obj.table, "name", None), name) in FULL_TEXT_COLUMNS)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def str_enum(enum_cls, length: int = 20) -> sa.Enum:
    """A StrEnum stored as its value in a VARCHAR: portable, and readable in SQL."""
    return sa.Enum(enum_cls, native_enum=False, length=length, validate_strings=True,
                   values_callable=lambda e: [m.value for m in e])


def utcnow() -> datetime:
    return datetime.now(UTC)


# Whether the next transaction may write. SQLite (incidents/sqlite.py) begins with it: "IMMEDIATE" takes the
# write lock at BEGIN so two writers queue instead of failing with a lock-upgrade deadlock; read-only requests set
# "DEFERRED" so readers never wait. Other backends ignore it.
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


# session.info key: this session's serialised appends (the audit chain's) wait for its COMMIT instead of taking
# their lock mid-transaction. Set by the webhook writer, whose transactions lock alert rows in one global order:
# a lock taken between two alert rows would let two writers wait for each other crosswise (a deadlock that
# PostgreSQL breaks only after deadlock_timeout, 1 s), and would serialise the rest of the batch behind it.
DEFER_SERIALISED = "incidents.defer_serialised"


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
    """Apply the backend's engine tuning; only SQLite has any (incidents/sqlite.py, imported for it alone)."""
    if engine.dialect.name != "sqlite":
        return
    from incidents import sqlite

    sqlite.tune_engine(engine, busy_timeout)


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
    at_least: bool = False  # `total` is a floor: counting stopped there (full-text matches past COUNT_LIMIT)

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(session: Session, stmt: sa.Select, page: int, per_page: int, total: int | None = None,
             at_least: bool = False) -> Page:
    """Run one page of `stmt` plus a count of all its rows (unless the caller knows it from a cheaper index)."""
    page = max(1, page)
    if total is None:
        total = session.scalar(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items=items, page=page, per_page=per_page, total=total, at_least=at_least)
