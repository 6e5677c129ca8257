"""Writing the audit log from domain events, checking its hash chain, and reading it back.

Each row's `hash` is sha256 over a canonical JSON of its content and `prev_hash`, the hash of the row before it
(by id). Appending reads the last hash and inserts, so appends must run one at a time: PostgreSQL takes a
transaction-level advisory lock first (once per transaction: the transaction's last hash is remembered after
that); SQLite's write transaction already runs alone. A row edited, deleted or inserted out of band breaks the
chain at that row or the next, which `verify` names. In a session marked `DEFER_SERIALISED` (the webhook writer's)
on PostgreSQL, the rows wait in the session and the lock, the read and the inserts happen at COMMIT, after every
other lock of the transaction is taken.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import actor, logs
from incidents.audit.models import AuditEntry
from incidents.database import DEFER_SERIALISED, Page, at_commit, paginate, utcnow

GENESIS = "0" * 64  # the prev_hash of the first row
_LOCK_KEY = 0x6175646974  # "audit": the advisory lock that serialises appends on PostgreSQL
_CHAIN = "incidents.audit.chain"  # session.info: (transaction, last hash) of the chain as this transaction left it
_DEFERRED = "incidents.audit.deferred"  # session.info: rows waiting for this transaction's COMMIT

CONTENT = ("at", "actor_kind", "actor_id", "actor_label", "kind", "object_type", "object_id", "object_label",
           "changes", "address", "request_id")


def canonical(value: Any) -> Any:
    """`value` as JSON gives it back (dates as ISO strings), so the stored row hashes as it was hashed."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False)) if value is not None else None


def canonical_text(value: Any) -> str:
    """`value` as compact JSON with sorted keys (what the hash covers; the CSV's changes column)."""
    return "" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(content: dict[str, Any], prev_hash: str) -> str:
    at = content["at"]
    body = {k: content[k] for k in CONTENT} | {"at": at.astimezone(UTC).isoformat(timespec="microseconds"),
                                               "prev_hash": prev_hash}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _last_hash(session: Session) -> str:
    tx = session.get_nested_transaction() or session.get_transaction()
    cached = session.info.get(_CHAIN)
    if cached is not None and cached[0] is tx:
        return cached[1]
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"key": _LOCK_KEY})  # re-entrant
    return conn.execute(_LAST_HASH).scalar() or GENESIS


# Built once, run on the connection: audit rows are only ever written here, never as ORM objects, so there is
# nothing to autoflush, and building an ORM statement per row cost more than running it (webhook writer, issue 18).
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")
_LAST_HASH = sa.select(AuditEntry.__table__.c.hash).order_by(AuditEntry.__table__.c.id.desc()).limit(1)
_INSERT = sa.insert(AuditEntry.__table__)


def append(session: Session, *, kind: str, object_type: str, object_id: int | None, object_label: str = "",
           changes: dict | None = None, who: actor.Actor | None = None) -> str | None:
    """Add one row to the chain in the caller's transaction (one INSERT, plus the last-hash read and the lock
    once per transaction); returns its hash (None when deferred to COMMIT, see the module docstring). The actor,
    address and request id come from the running context."""
    who = who or actor.current()
    content = {
        "at": utcnow(), "actor_kind": who.kind, "actor_id": who.id, "actor_label": (who.label or "")[:300],
        "kind": kind, "object_type": object_type, "object_id": object_id, "object_label": (object_label or "")[:300],
        "changes": canonical(changes), "address": (actor.address() or None), "request_id": logs.request_id.get(),
    }
    if content["address"]:
        content["address"] = content["address"][:64]
    if session.info.get(DEFER_SERIALISED) and session.get_bind().dialect.name == "postgresql":
        session.info.setdefault(_DEFERRED, []).append(content)
        return None
    return _insert(session, content)


def _insert(session: Session, content: dict[str, Any]) -> str:
    if session.autoflush:  # what an ORM statement would have done first: the row lands after the change's own writes
        session.flush()
    prev = _last_hash(session)
    digest = row_hash(content, prev)
    session.connection().execute(_INSERT, {**content, "prev_hash": prev, "hash": digest})
    session.info[_CHAIN] = (session.get_nested_transaction() or session.get_transaction(), digest)
    return digest


def _insert_deferred(session: Session) -> None:
    """before_commit: the rows deferred by `append`, in the order they were appended."""
    for content in session.info.pop(_DEFERRED, None) or ():
        _insert(session, content)


def _drop_deferred(session: Session, *_args) -> None:
    """The transaction rolled back: so do its deferred rows."""
    session.info.pop(_DEFERRED, None)


def listen_once() -> None:
    at_commit("audit", _insert_deferred, _drop_deferred)


# --- verifying the chain -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    row_id: int | None = None
    message: str = ""


def verify(session: Session, batch: int = 5000) -> Verdict:
    """Recompute the chain in id order, `batch` rows per query (keyset pagination, so memory stays flat at
    hundreds of thousands of rows); the first broken row, or ok."""
    columns = [AuditEntry.id, AuditEntry.prev_hash, AuditEntry.hash] + [getattr(AuditEntry, c) for c in CONTENT]
    prev, prev_id, checked, after = GENESIS, None, 0, 0
    while True:
        rows = session.execute(sa.select(*columns).where(AuditEntry.id > after).order_by(AuditEntry.id)
                               .limit(batch)).all()
        if not rows:
            return Verdict(True, checked)
        for row in rows:
            content = {c: getattr(row, c) for c in CONTENT}
            if row.prev_hash != prev:
                where = f"row {prev_id}" if prev_id is not None else "the start of the log"
                return Verdict(False, checked, row.id, f"row {row.id}: its previous hash does not match {where} "
                                                       "(a row before it was deleted, inserted or rewritten)")
            if row_hash(content, row.prev_hash) != row.hash:
                return Verdict(False, checked, row.id, f"row {row.id}: its content does not match its hash "
                                                       "(the row was edited)")
            prev, prev_id, after = row.hash, row.id, row.id
            checked += 1


# --- reading -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor_kind: str | None = None
    actor_id: int | None = None
    actor: str | None = None  # part of the actor's label
    object_type: str | None = None
    object_id: int | None = None
    kind: str | None = None  # an event name, or its domain prefix ("auth" or "auth.")
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list:
        clauses = []
        if self.actor_kind:
            clauses.append(AuditEntry.actor_kind == self.actor_kind)
        if self.actor_id is not None:
            clauses.append(AuditEntry.actor_id == self.actor_id)
        if self.actor:
            clauses.append(AuditEntry.actor_label.contains(self.actor, autoescape=True))
        if self.object_type:
            clauses.append(AuditEntry.object_type == self.object_type)
        if self.object_id is not None:
            clauses.append(AuditEntry.object_id == self.object_id)
        if self.kind:
            if "." in self.kind.rstrip("."):
                clauses.append(AuditEntry.kind == self.kind)
            else:
                clauses.append(AuditEntry.kind.startswith(self.kind.rstrip(".") + ".", autoescape=True))
        if self.since is not None:
            clauses.append(AuditEntry.at >= self.since)
        if self.until is not None:
            clauses.append(AuditEntry.at < self.until)
        return clauses


def list_entries(session: Session, f: AuditFilter, page: int = 1, per_page: int = 50) -> Page:
    """Newest first."""
    return paginate(session, sa.select(AuditEntry).where(*f.where()).order_by(AuditEntry.id.desc()), page, per_page)


def iter_entries(session: Session, f: AuditFilter, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every matching row, newest first, in batches (for the CSV export)."""
    before = None
    while True:
        stmt = sa.select(AuditEntry).where(*f.where()).order_by(AuditEntry.id.desc()).limit(batch)
        if before is not None:
            stmt = stmt.where(AuditEntry.id < before)
        rows = list(session.scalars(stmt))
        if not rows:
            return
        yield from rows
        before = rows[-1].id


def kinds(session: Session) -> list[str]:
    return list(session.scalars(sa.select(AuditEntry.kind).distinct().order_by(AuditEntry.kind)))
