"""alert.received: once per accepted delivery that touched an alert, on the batched path, the one-by-one path and
replay alike; never for a sender's retry, an ignored delivery or the rolled-back attempt of a batch."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from incidents import events
from incidents.alert import batching, services
from incidents.alert.models import Alert, Delivery, Outcome
from incidents.alert.services import processing
from incidents.alert.sources import parse
from incidents.database import utcnow
from incidents.extensions import db
from tests.alert.conftest import fixture, make_integration, post


def _occurrence(n: int) -> dict:
    payload = copy.deepcopy(fixture("rollbar_occurrence"))
    payload["data"]["occurrence"]["uuid"] = f"00000000-0000-4000-8000-{n:012d}"
    return payload


@pytest.fixture
def received(app):
    """What the two phases saw of alert.received: {"in_transaction": [...], "after_commit": [...]}."""
    seen: dict[str, list[dict]] = {events.IN_TRANSACTION: [], events.AFTER_COMMIT: []}

    def in_transaction(_session, event):
        seen[events.IN_TRANSACTION].append(event.data)

    def after_commit(event):
        seen[events.AFTER_COMMIT].append(event.data)

    events.subscribe(app, "alert.received", events.IN_TRANSACTION, in_transaction)
    events.subscribe(app, "alert.received", events.AFTER_COMMIT, after_commit)
    yield seen
    subs = events.registry(app).subscribers["alert.received"]
    subs[:] = [s for s in subs if s.handler not in (in_transaction, after_commit)]


@pytest.fixture
def unbatched(app, monkeypatch):
    monkeypatch.delitem(app.extensions, batching.EXTENSION, raising=False)


@pytest.fixture
def batcher(app, monkeypatch):
    fresh = batching.Batcher(app)
    monkeypatch.setitem(app.extensions, batching.EXTENSION, fresh)
    return fresh


def _rows(model):
    db.session.rollback()  # a fresh snapshot: the writer committed on its own connection
    return list(db.session.scalars(sa.select(model).order_by(model.id)))


def test_one_by_one_a_delivery_is_announced_once_with_its_alert_and_incident(client, received, unbatched):
    _row, token = make_integration("rollbar", "shop")

    first = post(client, "rollbar", fixture("rollbar_new_item_production"), token)
    retry = post(client, "rollbar", fixture("rollbar_new_item_production"), token)

    assert first.json["outcome"] == "processed" and retry.json["outcome"] == "duplicate"
    [alert], [delivery] = _rows(Alert), _rows(Delivery)
    assert alert.incident_id is not None
    assert received[events.AFTER_COMMIT] == [
        {"alert_id": alert.id, "delivery_id": delivery.id, "kind": "trigger", "incident_id": alert.incident_id}]


def test_batched_deliveries_are_each_announced_once_after_their_commit(client, received, batcher):
    _row, token = make_integration("rollbar", "shop")

    answers = [post(client, "rollbar", _occurrence(n), token) for n in (1, 2, 3)]

    assert [a.json["outcome"] for a in answers] == ["processed"] * 3
    assert batcher.batched == 3
    [alert] = _rows(Alert)
    seen = received[events.AFTER_COMMIT]
    assert [e["delivery_id"] for e in seen] == [d.id for d in _rows(Delivery)]
    assert {(e["alert_id"], e["kind"], e["incident_id"]) for e in seen} == {(alert.id, "repeat", alert.incident_id)}


def test_a_rolled_back_batch_announces_only_what_it_committed_again(app, received, batcher, monkeypatch):
    _row, token = make_integration("rollbar", "shop")
    info = services.integration_for_token(db.session, "rollbar", token)
    real_ingest = services.ingest

    def ingest(session, info, parsed, **kw):
        result = real_ingest(session, info, parsed, **kw)  # emitted, then the batch rolls back
        if parsed.dedup_key.endswith("-000000000002"):
            raise RuntimeError("a bug")
        return result

    monkeypatch.setattr(services, "ingest", ingest)
    works = []
    for n in (1, 2, 3):
        raw = json.dumps(_occurrence(n)).encode()
        parsed = parse("rollbar", json.loads(raw))[0]
        works.append(batching.Work(info, parsed, raw.decode(), {}, utcnow(), services.dedup_key(parsed, raw)))
    db.session.rollback()
    for work in works:
        batcher._queue.put(work)
    batcher._ensure_running()
    for work in works:
        assert work.done.wait(30)

    assert isinstance(works[1].alone, RuntimeError)
    assert len(received[events.IN_TRANSACTION]) > 2  # the first attempt emitted, and was rolled back
    assert sorted(e["delivery_id"] for e in received[events.AFTER_COMMIT]) == [d.id for d in _rows(Delivery)]
    assert len(received[events.AFTER_COMMIT]) == 2


def test_ignored_and_alert_less_deliveries_announce_nothing(client, received, unbatched):
    _row, token = make_integration("opsgenie", "ops")

    ignored = post(client, "opsgenie", {"action": "UpdateTimeline", "alert": {"alias": "x"}}, token)
    orphan_close = post(client, "opsgenie", fixture("opsgenie_close"), token)  # no open alert to close

    assert ignored.json["outcome"] == orphan_close.json["outcome"] == "ignored"
    assert received == {events.IN_TRANSACTION: [], events.AFTER_COMMIT: []}


def test_a_replayed_delivery_is_announced_when_it_finally_applies(client, received, unbatched, monkeypatch):
    _row, token = make_integration("rollbar", "shop")

    def broken(*_a, **_kw):
        raise RuntimeError("bug in the rules")

    monkeypatch.setattr(processing, "_apply", broken)
    assert post(client, "rollbar", fixture("rollbar_new_item_production"), token).json["outcome"] == "failed"
    assert received[events.AFTER_COMMIT] == []

    monkeypatch.undo()
    [delivery] = _rows(Delivery)
    result = services.replay_delivery(db.session, delivery)
    db.session.commit()

    assert result.outcome == Outcome.PROCESSED
    [alert] = _rows(Alert)
    assert received[events.AFTER_COMMIT] == [
        {"alert_id": alert.id, "delivery_id": delivery.id, "kind": "trigger", "incident_id": alert.incident_id}]
