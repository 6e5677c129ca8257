"""Declarative base, portable column types, transaction intent and pagination shared by every domain.

Backend-neutral: SQLite's engine machinery lives in incidents/sqlite.py, loaded by `tune_engine` for SQLite only."""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
        event.listen(Session, "before_commit", _run_at_commit)
        event.listen(Session, "after_rollback", _drop_at_commit)


# Writes a transaction defers to its COMMIT, run in this order whatever registered first: the audit chain's
# lock before the insights roll-up's version rows, the order every other transaction takes them in (the audit
# log appends mid-transaction), so no two transactions wait for each other crosswise.
AT_COMMIT_ORDER = ("audit", "insights")
_AT_COMMIT: dict[str, tuple[Callable[[Session], None], Callable[[Session], None]]] = {}


def at_commit(name: str, run: Callable[[Session], None], drop: Callable[[Session], None]) -> None:
    """Have `run(session)` called before every COMMIT and `drop(session)` after every rollback (it forgets what
    `run` would have written), in `AT_COMMIT_ORDER`; `name` must be listed there."""
    if name not in AT_COMMIT_ORDER:
        raise ValueError(f"{name!r} has no place in AT_COMMIT_ORDER")
    _AT_COMMIT[name] = (run, drop)


def _run_at_commit(session: Session) -> None:
    for name in AT_COMMIT_ORDER:
        if name in _AT_COMMIT:
            _AT_COMMIT[name][0](session)


def _drop_at_commit(session: Session, *_args) -> None:
    for name in AT_COMMIT_ORDER:
        if name in _AT_COMMIT:
            _AT_COMMIT[name][1](session)


# Lists that grow without bound (incidents, search) count their rows up to here; past it they say "more than",
# number their pages only this far and go on with a cursor (`Cursor`), so a million rows cost what 10,000 do.
COUNT_LIMIT = 10_000


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int
    at_least: bool = False  # `total` (and so `pages`) is a floor: counting stopped at the count limit
    keyset: bool = False  # a newest-first list that goes on with cursors: `next` leads past this page
    next: str | None = None  # the cursor of the page after this one (keyset lists), None on the last page
    count_limit: int | None = None  # page numbers reach this many rows; further pages by cursor only

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    @property
    def max_page(self) -> int | None:
        """The last page reachable by number (None: every page is)."""
        return max(1, math.ceil(self.count_limit / self.per_page)) if self.count_limit and self.per_page else None

    def numbered(self, page: int) -> bool:
        """Whether page `page` can be asked for by its number."""
        return self.max_page is None or page <= self.max_page

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.next is not None if self.keyset else self.page < self.pages


@dataclass(frozen=True)
class Cursor:
    """A place in a list ordered newest first by (created_at, id): the page it leads to holds the rows after it.
    Opaque to clients (urlsafe base64); `page` is the number that page has, for display only."""

    created_at: datetime
    id: int
    page: int

    def encode(self) -> str:
        raw = f"{self.created_at.astimezone(UTC).isoformat()}|{self.id}|{self.page}"
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str, name: str = "before") -> Cursor:
        """The cursor `value` encodes; anything else is a 422 naming the parameter `name`."""
        from incidents.bounds import as_id
        from incidents.errors import Invalid

        try:
            if not _CURSOR.fullmatch(value or ""):
                raise ValueError
            created, ident, page = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split("|")
            at = datetime.fromisoformat(created)
            if at.utcoffset() != timedelta(0) or not (ident.isdigit() and page.isdigit()):
                raise ValueError
            ident_, page_ = as_id(ident), as_id(page)
            if ident_ is None or page_ is None:
                raise ValueError
        except ValueError:  # bad base64 (binascii.Error), not UTF-8, wrong parts, not a UTC time
            raise Invalid(f"{name} is not a cursor this list gave: follow the list's Older link or its `next`.",
                          {name: ["Not a cursor from this list."]}) from None
        return cls(at.astimezone(UTC), ident_, page_)


_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")


def capped_count(session: Session, stmt: sa.Select, limit: int | None) -> tuple[int, bool]:
    """(rows of `stmt`, whether it has more than that): every row without `limit`, else up to `limit` (reading
    `limit` + 1 of them, from an index alone where one covers the filters)."""
    stmt = stmt.order_by(None).with_only_columns(sa.literal_column("1"), maintain_column_froms=True)
    if limit is not None:
        stmt = stmt.limit(limit + 1)
    counted = session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0
    return (limit, True) if limit is not None and counted > limit else (counted, False)


def paginate(session: Session, stmt: sa.Select, page: int, per_page: int, total: int | None = None,
             at_least: bool = False, *, count_limit: int | None = None,
             keyset: tuple[Any, Any] | None = None, before: Cursor | None = None) -> Page:
    """Run one page of `stmt` plus a count of its rows (unless the caller knows it from a cheaper index).

    `count_limit`: count only that far (the Page says "at least"), and refuse page numbers past it (a 422 naming
    `page`), whose OFFSET would read every row before them. `keyset`: the (created_at, id) columns `stmt` is
    ordered by, newest first; each page then carries the cursor of the next, and `before` starts after one."""
    if total is None:
        total, at_least = capped_count(session, stmt, count_limit)
    elif count_limit is not None and total > count_limit:
        total, at_least = count_limit, True
    result = Page(items=[], page=max(1, page), per_page=per_page, total=total, at_least=at_least,
                  keyset=keyset is not None, count_limit=count_limit)
    offset = (result.page - 1) * per_page
    if before is not None and keyset is not None:
        created, ident = keyset
        # created <= the cursor's: a range any (filter, created_at) index serves; the rest settles ties by id.
        stmt = stmt.where(created <= before.created_at,
                          sa.or_(created < before.created_at, ident < before.id))
        result.page, offset = before.page, 0
    elif not result.numbered(result.page) and (at_least or total > offset):
        raise _past_numbered_pages(result)
    rows = list(session.scalars(stmt.limit(per_page + (keyset is not None)).offset(offset)))
    result.items = rows[:per_page]
    if keyset is not None and len(rows) > per_page:
        last = result.items[-1]
        next_page = min(result.page + 1, 2**31 - 1)  # a page number stays one the bounds accept (MAX_INT)
        result.next = Cursor(getattr(last, keyset[0].key), getattr(last, keyset[1].key), next_page).encode()
    return result


def _past_numbered_pages(page: Page):
    from incidents.errors import Invalid

    return Invalid(f"Pages are numbered up to {page.max_page} at {page.per_page} a page (the newest "
                   f"{page.count_limit:,}); further on, follow the Older link of page {page.max_page} "
                   "(in the API, pass the `next` cursor as `before`).",
                   {"page": [f"At most {page.max_page}; continue with before=<the next cursor>."]})
