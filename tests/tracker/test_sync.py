"""Status flowing back: POST /webhooks/shortcut (signed, stored, deduplicated) and the reconcile job."""

from __future__ import annotations

import json
import uuid

import pytest

from incidents.action_item import services as items
from incidents.action_item.models import ItemStatus
from incidents.extensions import db
from incidents.tracker import jobs, services
from incidents.tracker.models import DeliveryOutcome, ShortcutDelivery
from incidents.tracker.webhook import sign
from tests.tracker.conftest import WEBHOOK_SAMPLES
from tests.tracker.helpers import make_exportable_item

SECRET = "test-webhook-secret"  # shortcut_app's INCIDENTS_SHORTCUT_WEBHOOK_SECRET


def post_event(client, body: bytes | dict, secret: str = SECRET, header: str = "Payload-Signature"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/webhooks/shortcut", data=raw, content_type="application/json",
                       headers={header: sign(secret, raw)})


def sent_item(story_id: int, **overrides):
    """An action item whose card exists as story `story_id` (recorded the way the export job records it)."""
    item = make_exportable_item(**overrides)
    export, _ = services.request_export(db.session, item, {"SHORTCUT_API_TOKEN": "t"})
    services.record_sent(db.session, export, {"id": story_id, "app_url": f"https://app.shortcut.com/x/story/{story_id}"})
    db.session.commit()
    return item


def reload(item):
    db.session.expire_all()
    return items.get_action_item(db.session, item.id)


def sample(name: str) -> bytes:
    path = WEBHOOK_SAMPLES / name
    if not path.exists():
        pytest.skip(f"webhook sample {path} not found")
    return path.read_bytes()


def event(story_id: int, changes: dict | None = None, *, action: str = "update", references=(),
          changed_at: str = "2026-11-20T10:00:00Z", **extra) -> dict:
    body = {"id": str(uuid.uuid4()), "changed_at": changed_at, "version": "v1", "primary_id": story_id,
            "member_id": str(uuid.uuid4()),
            "actions": [{"id": story_id, "entity_type": "story", "action": action, "name": "card",
                         "changes": changes or {}}],
            "references": list(references)} | extra
    if action == "delete":
        del body["actions"][0]["changes"]
    return body


def state_ref(state_id: int, kind: str) -> dict:
    return {"id": state_id, "entity_type": "workflow-state", "name": kind.title(), "type": kind}


# --- the dorametrix captures, byte for byte, signed with the test secret ------------------------------------


def test_captured_completion_marks_the_item_done(shortcut_app, client):
    item = sent_item(16927)
    raw = sample("story_update_completed.json")
    response = post_event(client, raw)
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "processed" and response.get_json()["action_items"] == [item.id]
    item = reload(item)
    assert item.status == ItemStatus.DONE
    assert item.export.completed_at.isoformat() == "2023-03-22T21:38:19.067000+00:00"  # the event's time
    stored = db.session.query(ShortcutDelivery).one()
    assert stored.body == raw.decode() and stored.event_id == "641b754b-3f7f-4040-b9d9-4cc44a840b94"


def test_a_replayed_event_changes_nothing(shortcut_app, client):
    item = sent_item(16927)
    raw = sample("story_update_completed.json")
    assert post_event(client, raw).get_json()["outcome"] == "processed"
    items.update_action_item(db.session, reload(item), status="in_progress")  # someone reopens it here
    db.session.commit()
    replay = post_event(client, raw)
    assert replay.status_code == 200 and replay.get_json()["outcome"] == "duplicate"
    assert reload(item).status == ItemStatus.IN_PROGRESS
    assert db.session.query(ShortcutDelivery).count() == 1


def test_captured_start_moves_an_open_item_in_progress(shortcut_app, client):
    item = sent_item(16927)
    assert post_event(client, sample("story_update_started.json")).status_code == 200
    item = reload(item)
    assert item.status == ItemStatus.IN_PROGRESS and item.export.card_state == "started"


def test_captured_delete_flags_an_unfinished_item(shortcut_app, client):
    item = sent_item(3352)
    response = post_event(client, sample("story_delete.json"))  # also carries a story-comment action
    assert response.status_code == 200
    item = reload(item)
    assert item.status == ItemStatus.OPEN  # a person decides
    assert item.export.card_closed and item.export.card_state == "deleted"
    assert item.export.sync_state == "card closed without completion"


def test_captured_bulk_archive_flags_every_story_of_ours(shortcut_app, client):
    mine = sent_item(3354)
    done = sent_item(3352)
    items.update_action_item(db.session, done, status="done")
    db.session.commit()
    response = post_event(client, sample("story_bulk_update.json"))  # no primary_id, two stories
    assert response.status_code == 200
    assert reload(mine).export.card_closed is True
    assert reload(done).export.card_closed is False  # archived after completion: nothing to decide
    assert reload(done).export.card_state == "archived"


@pytest.mark.parametrize("name", ["push_event.json", "story_create.json", "story_update_label_added.json"])
def test_captured_events_about_nothing_of_ours_are_ignored(shortcut_app, client, name):
    sent_item(999_999)
    response = post_event(client, sample(name))
    assert response.status_code == 200 and response.get_json()["outcome"] == "ignored"
    assert db.session.query(ShortcutDelivery).one().outcome == DeliveryOutcome.IGNORED


# --- signatures and bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Payload-Signature": "0" * 64}, {"Payload-Signature": sign("other-secret", b"{}")}])
def test_wrong_or_missing_signature_is_refused_and_not_stored(shortcut_app, client, headers):
    response = client.post("/webhooks/shortcut", data=b"{}", content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert db.session.query(ShortcutDelivery).count() == 0


def test_without_a_configured_secret_nothing_is_accepted(shortcut_app, client, monkeypatch):
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_WEBHOOK_SECRET", "")
    assert post_event(client, event(1), secret="").status_code == 401


def test_legacy_clubhouse_signature_header_works(shortcut_app, client):
    assert post_event(client, event(1), header="Clubhouse-Signature").status_code == 200


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": "e1", "changed_at": "yesterday", "actions": []}'])
def test_malformed_body_is_kept_for_inspection(shortcut_app, client, raw):
    response = post_event(client, raw)
    assert response.status_code == 400 and response.get_json()["outcome"] == "rejected"
    stored = db.session.query(ShortcutDelivery).one()
    assert stored.outcome == DeliveryOutcome.REJECTED and stored.body == raw.decode() and stored.error


def test_unknown_story_is_accepted_and_ignored(shortcut_app, client):
    response = post_event(client, event(424242, {"completed": {"new": True, "old": False}}))
    assert response.status_code == 200
    assert response.get_json() | {"delivery": None} == {"delivery": None, "outcome": "ignored", "action_items": [],
                                                          "ignored_stories": [424242]}


# --- transitions ---------------------------------------------------------------------------------------------


def test_moves_between_states_map_to_item_statuses(shortcut_app, client):
    item = sent_item(77)
    todo, doing, done, backlog = state_ref(1, "unstarted"), state_ref(2, "started"), state_ref(3, "done"), \
        state_ref(4, "backlog")
    steps = [
        ({"workflow_state_id": {"old": 1, "new": 2}}, "2026-11-20T10:00:00Z", ItemStatus.IN_PROGRESS),
        ({"workflow_state_id": {"old": 2, "new": 3}}, "2026-11-20T11:00:00Z", ItemStatus.DONE),
        ({"workflow_state_id": {"old": 3, "new": 2}, "completed": {"old": True, "new": False}},
         "2026-11-20T12:00:00Z", ItemStatus.IN_PROGRESS),  # un-completed, back in progress
        ({"workflow_state_id": {"old": 2, "new": 4}}, "2026-11-20T13:00:00Z", ItemStatus.OPEN),  # moved back
    ]
    for changes, at, expected in steps:
        response = post_event(client, event(77, changes, references=[todo, doing, done, backlog], changed_at=at))
        assert response.status_code == 200, response.get_json()
        assert reload(item).status == expected, changes
    assert reload(item).export.completed_at is None


def test_an_older_event_arriving_late_does_not_undo_a_newer_one(shortcut_app, client):
    item = sent_item(78)
    post_event(client, event(78, {"completed": {"new": True, "old": False}}, changed_at="2026-11-20T12:00:00Z"))
    post_event(client, event(78, {"started": {"new": True, "old": False}}, changed_at="2026-11-20T11:00:00Z"))
    assert reload(item).status == ItemStatus.DONE


def test_unarchiving_clears_the_flag(shortcut_app, client):
    item = sent_item(79)
    post_event(client, event(79, {"archived": {"new": True, "old": False}}, changed_at="2026-11-20T10:00:00Z"))
    assert reload(item).export.card_closed is True
    post_event(client, event(79, {"archived": {"new": False, "old": True}}, changed_at="2026-11-20T10:05:00Z"))
    assert reload(item).export.card_closed is False


def test_wont_do_items_are_not_overruled_by_the_card(shortcut_app, client):
    item = sent_item(80)
    items.update_action_item(db.session, item, status="wont_do", wont_do_reason="Service retired")
    db.session.commit()
    post_event(client, event(80, {"completed": {"new": True, "old": False}}))
    assert reload(item).status == ItemStatus.WONT_DO


# --- reconcile -------------------------------------------------------------------------------------------------


def test_reconcile_repairs_what_missed_webhooks_left(shortcut_app, fake_shortcut, api):
    finished, started, deleted, untouched = (make_exportable_item(title=f"Item {n}") for n in range(4))
    for item in (finished, started, deleted, untouched):
        assert api.post(f"/api/v1/action-items/{item.id}/export").status_code == 202
    fake_shortcut.move_story(reload(finished).export.story_id, "done")
    fake_shortcut.move_story(reload(started).export.story_id, "started")
    del fake_shortcut.stories[reload(deleted).export.story_id]
    before = len(fake_shortcut.calls("getStory"))

    assert jobs.reconcile_exports.run_now() == 3
    assert len(fake_shortcut.calls("getStory")) - before == 4  # one read per exported open item
    assert reload(finished).status == ItemStatus.DONE and reload(finished).export.completed_at is not None
    assert reload(started).status == ItemStatus.IN_PROGRESS
    assert reload(deleted).status == ItemStatus.OPEN and reload(deleted).export.card_closed
    assert reload(untouched).status == ItemStatus.OPEN and reload(untouched).export.synced_at is not None

    assert jobs.reconcile_exports.run_now() == 0  # done and flagged items are not read again
    assert len(fake_shortcut.calls("getStory")) - before == 4 + 2


def test_reconcile_reads_at_most_a_batch_per_run(shortcut_app, fake_shortcut, api, monkeypatch):
    for n in range(3):
        api.post(f"/api/v1/action-items/{make_exportable_item(title=f'Item {n}').id}/export")
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_RECONCILE_BATCH", 2)
    before = len(fake_shortcut.calls("getStory"))
    jobs.reconcile_exports.run_now()
    assert len(fake_shortcut.calls("getStory")) - before == 2


def test_the_flag_gives_way_once_a_person_decides(shortcut_app, client):
    item = sent_item(81)
    post_event(client, event(81, {"archived": {"new": True, "old": False}}))
    assert reload(item).export.sync_state == "card closed without completion"
    items.update_action_item(db.session, reload(item), status="wont_do", wont_do_reason="Not needed any more")
    db.session.commit()
    assert reload(item).export.sync_state == "archived"


def test_a_processing_bug_keeps_the_event_as_failed_and_answers_202(shortcut_app, client, monkeypatch):
    def broken(session, event):
        raise RuntimeError("bug in our mapping")

    monkeypatch.setattr(services, "apply_event", broken)  # our own code failing, not Shortcut
    body = event(82, {"completed": {"new": True, "old": False}})
    response = post_event(client, body)
    assert response.status_code == 202 and response.get_json()["outcome"] == "failed"
    stored = db.session.query(ShortcutDelivery).one()
    assert stored.outcome == DeliveryOutcome.FAILED and "bug in our mapping" in stored.error
    assert stored.event_id == body["id"] and stored.story_ids == [82]
    assert post_event(client, body).get_json()["outcome"] == "duplicate"  # the reconcile job repairs state


def test_deliveries_are_counted_by_outcome_for_metrics(shortcut_app, client):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("incidents_webhook_deliveries_total",
                                         {"source": "shortcut", "outcome": outcome}) or 0

    before = {o: count(o) for o in ("ignored", "duplicate", "unauthorized", "rejected")}
    body = event(4242)  # no story of ours
    assert post_event(client, body).get_json()["outcome"] == "ignored"
    assert post_event(client, body).get_json()["outcome"] == "duplicate"
    assert post_event(client, body, secret="wrong").status_code == 401
    assert post_event(client, b"not json").status_code == 400
    assert {o: count(o) - before[o] for o in before} == {"ignored": 1, "duplicate": 1, "unauthorized": 1,
                                                         "rejected": 1}
