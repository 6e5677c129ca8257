"""Group commit for webhook deliveries: one transaction for the deliveries that arrive together.

Under load a delivery's transaction envelope costs more than its work: on PostgreSQL a pool ping, BEGIN and
COMMIT are round trips of their own; on SQLite each transaction takes the database's single write lock, and a
descheduled holder makes every other writer wait. So each process has one writer thread. A request thread
(alert/ingestion.py) parses and checks its delivery, hands the work to the writer and waits. The writer takes
whatever deliveries are waiting (up to `max_batch`; it never waits for more, so a lone delivery is not delayed),
applies them one after the other in **one** transaction and commits. Only then does each request thread answer:
nothing is acknowledged before it is durable.

Deadlocks: on PostgreSQL the writers of two processes lock alert rows concurrently; each transaction takes them in
one global order (`lock_order`), so they never wait for each other crosswise. A delivery may carry several alerts
(an Alertmanager group): `services.ingest` takes them in that order, and a batch commits before a delivery whose
first alert sorts below the last alert already taken (`lock_span`), starting a new transaction for the rest.

Isolation without savepoints: if a delivery raises (a sender's retry is a `Duplicate`; a lock timeout; our bug),
the batch is rolled back, that delivery is handed back to its request thread, which runs it alone through the
one-transaction-per-delivery path (with its retries, and the FAILED record for our bugs), and the rest of the batch
is applied again without it. So a batch changes only how deliveries are grouped into transactions, never what a
delivery does: `services.ingest` is the same function on both paths (and emits the same events).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask

from incidents import actor, logs
from incidents.alert import services
from incidents.database import DEFER_SERIALISED
from incidents.extensions import db

log = logging.getLogger(__name__)

EXTENSION = "incidents.ingest_batcher"


@dataclass(eq=False)
class Work:
    """One delivery handed to the writer; `result` or `alone` is set before `done`."""

    info: services.IntegrationInfo
    parsed: services.Events  # the delivery's events (a lone ParsedEvent is one event)
    body: str
    headers: dict
    received_at: datetime
    key: str
    payload: object = None  # the parsed JSON body, for rules on a payload field
    result: services.Result | None = None
    alone: BaseException | None = None  # why it left its batch: its request thread runs it by itself
    duplicate: bool = False  # a sender's retry of a committed delivery: answered as such, nothing applied
    done: threading.Event = field(default_factory=threading.Event)
    # The request's id, so that the jobs this delivery enqueues (and the writer's log lines) carry it.
    request_id: str | None = field(default_factory=logs.request_id.get)
    # Who sent it and from where, for the audit rows of what it changes (the writer thread has no request).
    acting: tuple = field(default_factory=actor.snapshot)


class Batcher:
    def __init__(self, app: Flask, max_batch: int = 32):
        self.app = app
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.batches = 0  # committed batches and the deliveries in them, for tests and curiosity
        self.batched = 0

    def submit(self, work: Work) -> Work:
        """Apply `work` in the next batch; returns once it is committed, or handed back (`work.alone`)."""
        self._ensure_running()
        self._queue.put(work)
        work.done.wait()
        return work

    def _ensure_running(self) -> None:
        # A thread does not survive fork: gunicorn's workers each start their own on their first delivery.
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._start:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                if self._pid is not None and self._pid != os.getpid():
                    self._queue = queue.SimpleQueue()  # never inherit another process's waiting work
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        with self.app.app_context():
            while True:
                batch = [self._queue.get()]
                while len(batch) < self.max_batch:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._apply(batch)
                except BaseException as e:  # noqa: BLE001 - the writer must outlive anything a batch does
                    log.exception("webhook writer: a batch failed as a whole; its deliveries run alone")
                    for work in batch:
                        if not work.done.is_set():
                            work.result, work.alone = None, work.alone or e
                    self._close_session()  # start the next batch clean
                finally:
                    logs.request_id.set(None)
                    for work in batch:
                        work.done.set()

    def _apply(self, batch: list[Work]) -> None:
        batch = self._answer_retries(batch)
        if not batch:
            db.session.commit()  # the look-up's transaction; a ROLLBACK would drop PostgreSQL's prepared statements
            return
        pending = sorted(batch, key=lock_order)  # stable: one alert's deliveries keep their arrival order
        while pending:
            # The longest prefix whose alert rows come in one ascending order is one transaction.
            take, high = 0, None
            for work in pending:
                low, top = lock_span(work)
                if high is not None and low is not None and low < high:
                    break
                take += 1
                high = top if top is not None else high
            if not self._commit(pending[:take]):
                return
            pending = pending[take:]

    @staticmethod
    def _answer_retries(batch: list[Work]) -> list[Work]:
        """Answer the sender retries of committed deliveries (one look-up for the batch, in its transaction) and
        return the rest. Applied, a retry would raise Duplicate and roll the whole batch back, to be applied again
        without it; and on PostgreSQL each ROLLBACK also makes psycopg drop the connection's prepared statements."""
        keyed = [(work.info.id, work.key) for work in batch if work.key]
        known = services.stored_keys(db.session, keyed) if keyed else set()
        if not known:
            return batch
        rest = []
        for work in batch:
            if work.key and (work.info.id, work.key) in known:
                work.duplicate = True
                work.done.set()
            else:
                rest.append(work)
        return rest

    def _commit(self, chunk: list[Work]) -> bool:
        """Apply `chunk` in one transaction; False when its COMMIT failed (then every delivery runs alone)."""
        session = db.session
        session.info[DEFER_SERIALISED] = True  # see incidents/database.py: no lock taken between alert rows
        pending = list(chunk)
        while pending:
            current = None
            try:
                for work in pending:
                    current = work
                    logs.request_id.set(work.request_id)
                    with actor.acting(work.acting):
                        work.result = services.ingest(session, work.info, work.parsed, body=work.body,
                                                      headers=work.headers, received_at=work.received_at,
                                                      key=work.key, payload=work.payload)
                    if session.new:  # flushed now, so a refused row is blamed on this delivery, not the batch
                        session.flush()
                current = None
                session.commit()
            except Exception as e:  # noqa: BLE001 - handed back whole: the one-by-one path decides what it is
                session.rollback()
                for work in pending:
                    work.result = None
                if current is None:  # the COMMIT failed (a lock timeout): everyone runs alone
                    for work in pending:
                        work.alone = e
                    return False
                current.alone = e
                current.done.set()
                pending.remove(current)
                continue
            self.batches += 1
            self.batched += len(pending)
            return True
        return True

    @staticmethod
    def _close_session() -> None:
        try:
            db.session.close()
        except Exception:  # noqa: BLE001
            log.exception("webhook writer: closing the session failed")


def lock_order(work: Work) -> tuple[int, str]:
    """The order a batch takes its alert rows in: by integration, then by the delivery's lowest alert key. Every
    process's writer takes them in the same order, so two batches on PostgreSQL never wait for each other's rows
    crosswise (a deadlock PostgreSQL breaks only after deadlock_timeout, after which both deliveries run alone)."""
    keys = [key for key in map(services.lock_key, services.events_of(work.parsed)) if key]
    return work.info.id, min(keys) if keys else ""


def lock_span(work: Work) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """The lowest and highest alert row `work` locks, (None, None) when it locks none (an ignored body)."""
    keys = [key for key in map(services.lock_key, services.events_of(work.parsed)) if key]
    if not keys:
        return None, None
    return (work.info.id, min(keys)), (work.info.id, max(keys))


def init_app(app: Flask) -> None:
    """Batching is on unless INGEST_BATCH is false."""
    if app.config["INGEST_BATCH"]:
        app.extensions[EXTENSION] = Batcher(app, int(app.config["INGEST_BATCH_MAX"]))


def batcher(app: Flask) -> Batcher | None:
    return app.extensions.get(EXTENSION)
