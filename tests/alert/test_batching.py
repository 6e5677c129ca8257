"""Group commit of webhook deliveries (incidents/alert/batching.py): deliveries waiting together are applied in one
transaction; one that cannot be (a sender's retry, our bug) is handed back and runs alone, and the rest commit."""

from __future__ import annotations

import copy
import json
import os
import threading

import pytest
import sqlalchemy as sa

from incidents.alert import batching, services
from incidents.alert.models import Alert, Delivery, Outcome
from incidents.alert.sources import parse
from incidents.database import utcnow
from incidents.extensions import db
from incidents.incident.models import Incident
from tests.alert.conftest import fixture, make_integration, post


def _occurrence(n: int) -> dict:
    payload = copy.deepcopy(fixture("rollbar_occurrence"))
    payload["data"]["occurrence"]["uuid"] = f"00000000-0000-4000-8000-{n:012d}"
    return payload


def _work(info, payload: dict) -> batching.Work:
    parsed = parse("rollbar", payload)[0]
    raw = json.dumps(payload).encode()
    return batching.Work(info, parsed, raw.decode(), {"content-type": "application/json"}, utcnow(),
                         services.dedup_key(parsed, raw))


def _run_together(batcher: batching.Batcher, works: list[batching.Work]) -> None:
    """Queue every delivery before the writer starts, so that it finds them waiting together."""
    db.session.rollback()  # as the view does: a thread waiting for the writer must not hold SQLite's write turn
    for work in works:
        batcher._queue.put(work)
    batcher._ensure_running()
    for work in works:
        assert work.done.wait(30)


@pytest.fixture
def batcher(app):
    return batching.Batcher(app)


@pytest.fixture
def info(app):
    row, token = make_integration("rollbar", "shop")
    return services.integration_for_token(db.session, "rollbar", token)


def _deliveries(session) -> list[Delivery]:
    session.rollback()  # a fresh snapshot: the writer committed on its own connection
    return list(session.scalars(sa.select(Delivery).order_by(Delivery.id)))


def test_deliveries_waiting_together_are_applied_in_one_transaction(session, batcher, info):
    works = [_work(info, _occurrence(n)) for n in range(6)]

    _run_together(batcher, works)

    assert (batcher.batches, batcher.batched) == (1, 6)
    assert all(w.result is not None and w.alone is None for w in works)
    rows = _deliveries(session)
    assert [r.id for r in rows] == [w.result.delivery_id for w in works]
    assert {r.outcome for r in rows} == {Outcome.PROCESSED}
    alert = session.scalars(sa.select(Alert)).one()
    assert alert.occurrence_count == 6  # the first opened it, five repeats counted exactly


def test_a_retry_of_a_committed_delivery_is_answered_before_its_batch(app, session, batcher, info, monkeypatch):
    first = _work(info, _occurrence(1))
    _run_together(batcher, [first])
    again = _work(info, _occurrence(1))  # the sender's retry: same occurrence uuid
    others = [_work(info, _occurrence(n)) for n in (2, 3)]
    fresh = batching.Batcher(app)  # not started yet: the three are certain to wait together
    applied = []
    real_ingest = services.ingest
    monkeypatch.setattr(services, "ingest", lambda s, i, parsed, **kw: applied.append(kw["key"])
                        or real_ingest(s, i, parsed, **kw))

    _run_together(fresh, [others[0], again, others[1]])

    assert again.duplicate and again.result is None and again.alone is None
    assert applied == [others[0].key, others[1].key]  # the retry was never applied: no batch rolled back
    assert all(w.result is not None for w in others)
    assert (fresh.batches, fresh.batched) == (1, 2)  # the two others, in one transaction
    assert len(_deliveries(session)) == 3
    assert session.scalars(sa.select(Alert)).one().occurrence_count == 3


def test_stored_keys_finds_exactly_the_stored_pairs_among_any_number(app, session):
    """One statement for any number of pairs (JSON arrays on SQLite, arrays on PostgreSQL): the cross product of
    the integrations and keys asked about is narrowed to the pairs asked about, and odd keys compare exactly."""
    first, _ = make_integration("rollbar", "shop")
    second, _ = make_integration("rollbar", "billing")
    stored = [(first.id, "k-1"), (first.id, "clé-ü-\"quoted\""), (second.id, "k-2")]
    for integration_id, key in stored:
        services.store_delivery(session, integration_id, "rollbar", outcome=Outcome.PROCESSED, body="{}", headers={},
                                received_at=utcnow(), key=key)
    session.commit()

    for n in (1, 2, 5, 40):  # batch sizes: the same statement serves each
        asked = [(first.id, "k-1"), (second.id, "k-1"), (first.id, "k-2"), (second.id, "k-2"),
                 (first.id, "clé-ü-\"quoted\""), (first.id, "clé-u")] + [(first.id, f"new-{i}") for i in range(n)]
        assert services.stored_keys(session, asked) == {(first.id, "k-1"), (second.id, "k-2"),
                                                        (first.id, "clé-ü-\"quoted\"")}
    assert services.stored_keys(session, [(second.id, "k-9")]) == set()
    # Both stored pairs are in the cross product of these, neither was asked about.
    assert services.stored_keys(session, [(first.id, "k-2"), (second.id, "k-1")]) == set()
    assert services.stored_keys(session, []) == set()


def test_a_batch_of_retries_only_is_answered_and_leaves_no_transaction_open(app, session, batcher, info):
    first = _work(info, _occurrence(1))
    _run_together(batcher, [first])
    again = _work(info, _occurrence(1))

    _run_together(batcher, [again])
    later = _work(info, _occurrence(2))  # the writer is free for the next batch: it holds no lock
    _run_together(batcher, [later])

    assert again.duplicate and again.result is None and again.alone is None
    assert later.result is not None and (batcher.batches, batcher.batched) == (2, 2)
    assert len(_deliveries(session)) == 2


def test_a_retry_in_the_same_batch_is_handed_back_and_the_others_commit(app, session, info):
    first, again = _work(info, _occurrence(1)), _work(info, _occurrence(1))  # not committed when the batch starts
    other = _work(info, _occurrence(2))
    fresh = batching.Batcher(app)

    _run_together(fresh, [first, again, other])

    assert isinstance(again.alone, services.Duplicate) and again.result is None and not again.duplicate
    assert first.result is not None and other.result is not None
    assert (fresh.batches, fresh.batched) == (1, 2)  # the two others, in one transaction
    assert len(_deliveries(session)) == 2
    assert session.scalars(sa.select(Alert)).one().occurrence_count == 2


def test_our_bug_in_one_delivery_leaves_the_rest_of_its_batch_committed(session, batcher, info, monkeypatch):
    real_ingest = services.ingest

    def ingest(session, info, parsed, **kw):
        result = real_ingest(session, info, parsed, **kw)  # it wrote, then failed: the batch is rolled back
        if parsed.dedup_key.endswith("-000000000002"):
            raise RuntimeError("a bug")
        return result

    monkeypatch.setattr(services, "ingest", ingest)
    works = [_work(info, _occurrence(n)) for n in (1, 2, 3)]

    _run_together(batcher, works)

    assert isinstance(works[1].alone, RuntimeError) and works[1].result is None
    assert works[0].result is not None and works[2].result is not None
    assert len(_deliveries(session)) == 2  # nothing of the failed one: its request thread runs it alone
    assert session.scalars(sa.select(Alert)).one().occurrence_count == 2


def test_through_the_endpoint_a_handed_back_bug_is_stored_as_failed(app, client, session, monkeypatch):
    batcher = batching.Batcher(app)
    monkeypatch.setitem(app.extensions, batching.EXTENSION, batcher)
    _row, token = make_integration("rollbar", "shop")

    def broken(*_a, **_kw):
        raise RuntimeError("a bug in processing")

    ok = post(client, "rollbar", fixture("rollbar_new_item_production"), token)
    assert ok.status_code == 200 and ok.json["outcome"] == "processed"
    assert batcher.batches == 1  # it went through the writer
    monkeypatch.setattr(services, "ingest", broken)
    failed = post(client, "rollbar", _occurrence(9), token)

    assert failed.status_code == 202 and failed.json["outcome"] == "failed"
    rows = _deliveries(session)
    assert [r.outcome for r in rows] == [Outcome.PROCESSED, Outcome.FAILED]
    assert "a bug in processing" in rows[1].error
    assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 1


def test_many_threads_through_the_endpoint_count_exactly(app, session, monkeypatch):
    batcher = batching.Batcher(app)
    monkeypatch.setitem(app.extensions, batching.EXTENSION, batcher)
    _row, token = make_integration("rollbar", "shop")
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def sender(k: int):
        with app.app_context():
            c = app.test_client()
            barrier.wait()
            for n in range(k * 10, k * 10 + 10):
                codes.append(post(c, "rollbar", _occurrence(n), token).status_code)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert codes == [200] * 80
    assert batcher.batched == 80
    assert len(_deliveries(session)) == 80
    assert session.scalars(sa.select(Alert)).one().occurrence_count == 80


def test_a_forked_process_starts_its_own_writer_with_an_empty_queue(batcher, info):
    _run_together(batcher, [_work(info, _occurrence(1))])
    parent_thread, parent_queue = batcher._thread, batcher._queue
    batcher._pid = -1  # as a gunicorn worker sees the object it inherited from the master

    batcher._ensure_running()

    assert batcher._pid == os.getpid()
    assert batcher._queue is not parent_queue and batcher._thread is not parent_thread
    assert batcher._thread.is_alive()


def test_batching_can_be_turned_off(app):
    from incidents import create_app

    off = create_app({"TESTING": True, "DATABASE_URL": app.config["DATABASE_URL"], "SECRET_KEY": "x",
                      "INGEST_BATCH": False})
    assert batching.batcher(off) is None
    assert batching.batcher(app) is not None  # the default


def test_a_batch_takes_its_alerts_in_one_global_order(session, batcher, info, monkeypatch):
    # Two processes' writers locking the same alerts in different orders deadlocked on PostgreSQL.
    seen: list[str] = []
    real_ingest = services.ingest

    def ingest(session, info, parsed, **kw):
        seen.append(parsed.fingerprint)
        return real_ingest(session, info, parsed, **kw)

    monkeypatch.setattr(services, "ingest", ingest)
    works = []
    for n, item in enumerate([7, 3, 9, 3, 1]):
        payload = _occurrence(n)
        payload["data"]["item"]["id"] = 1000 + item
        works.append(_work(info, payload))

    _run_together(batcher, works)

    assert seen == sorted(seen)
    assert [w.parsed.fingerprint for w in sorted(works, key=batching.lock_order)] == seen
    # Equal keys keep their arrival order (the two deliveries of item 3).
    threes = [w for w in works if w.parsed.fingerprint.endswith("1003")]
    assert threes[0].result.delivery_id < threes[1].result.delivery_id
    assert all(w.result is not None for w in works)


def test_a_batch_that_opens_incidents_writes_their_audit_rows_after_its_alert_locks(app, session, batcher, info):
    """The audit chain's lock (PostgreSQL) is taken at COMMIT, after every alert row of the batch: taken between
    two alert rows, two processes' writers could wait for each other crosswise (a deadlock)."""
    from incidents.audit import services as audit
    from incidents.audit.models import AuditEntry

    items = []
    for n in range(3):
        payload = copy.deepcopy(fixture("rollbar_new_item_production"))
        payload["data"]["item"]["id"] = 9000 + n  # three new items: each opens an incident
        payload["data"]["item"]["counter"] = 9000 + n
        payload["data"]["item"]["last_occurrence"]["uuid"] = f"11111111-aaaa-4bbb-8ccc-{n:012d}"
        items.append(_work(info, payload))
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(" ".join(statement.split())[:60])

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        _run_together(batcher, items)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)

    assert all(w.result is not None and w.result.incident_id for w in items)
    assert (batcher.batches, batcher.batched) == (1, 3)
    session.rollback()
    declared = session.scalars(sa.select(AuditEntry).where(AuditEntry.kind == "incident.declared")).all()
    assert sorted(row.object_id for row in declared) == sorted(w.result.incident_id for w in items)
    assert audit.verify(session).ok
    if db.engine.dialect.name == "postgresql":
        last_alert = max(i for i, s in enumerate(statements) if s.startswith("INSERT INTO alert"))
        lock = next(i for i, s in enumerate(statements) if "pg_advisory_xact_lock" in s)
        audit_rows = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO audit_entry")]
        assert last_alert < lock < min(audit_rows) and len(audit_rows) == 3

