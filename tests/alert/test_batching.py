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


def test_a_retry_in_a_batch_is_handed_back_and_the_others_commit(app, session, batcher, info):
    first = _work(info, _occurrence(1))
    _run_together(batcher, [first])
    again = _work(info, _occurrence(1))  # the sender's retry: same occurrence uuid
    others = [_work(info, _occurrence(n)) for n in (2, 3)]
    fresh = batching.Batcher(app)  # not started yet: the three are certain to wait together

    _run_together(fresh, [others[0], again, others[1]])

    assert isinstance(again.alone, services.Duplicate) and again.result is None
    assert all(w.result is not None for w in others)
    assert (fresh.batches, fresh.batched) == (1, 2)  # the two others, in one transaction
    assert len(_deliveries(session)) == 3
    assert session.scalars(sa.select(Alert)).one().occurrence_count == 3


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
