"""The outbox and the export job against the fake Shortcut (every body checked against the official spec)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from incidents.action_item import services as items
from incidents.database import utcnow
from incidents.extensions import db
from incidents.jobs import get_queue
from incidents.postmortem import services as pm_services
from incidents.tracker import jobs, services
from incidents.tracker.models import ExportStatus, ShortcutExport
from tests.factories import make_service, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident
from tests.tracker.fake_shortcut import Fault
from tests.tracker.helpers import SUMMARY, make_exportable_item


def export_of(item_id: int) -> ShortcutExport:
    db.session.expire_all()
    return items.get_action_item(db.session, item_id).export


def the_one_story(fake, item_id: int) -> dict:
    """Exactly one story carries the item's external_id, and the export points at it."""
    stories = fake.stories_with_external_id(f"incidents:action-item:{item_id}")
    assert len(stories) == 1, stories
    export = export_of(item_id)
    assert export.status == ExportStatus.SENT and export.story_id == stories[0]["id"]
    assert export.story_url == stories[0]["app_url"]
    return stories[0]


def assert_card_fields(fake, story: dict, item) -> None:
    assert story["name"] == "Add a circuit breaker to the payments client"
    assert story["story_type"] == "chore"
    assert [label["name"] for label in story["labels"]] == ["postmortem", "tech-debt", item.postmortem.incident.ref,
                                                           "payments-api"]
    assert story["workflow_state_id"] == fake.state_id("unstarted")
    assert story["owner_ids"] == [fake.members[0]["id"]]  # matched by e-mail
    assert story["deadline"] == "2030-03-01T12:00:00Z"
    assert story["estimate"] == 3
    assert story["external_links"] == [f"http://incidents.test/postmortems/{item.postmortem_id}"]
    description = story["description"]
    ref = item.postmortem.incident.ref
    for expected in (f"[{ref}](http://incidents.test/incidents/{ref})", "SEV1", "Payments API", SUMMARY,
                     "Trip after 5 failures.", f"http://incidents.test/postmortems/{item.postmortem_id}"):
        assert expected in description


def test_api_export_creates_one_card_with_every_field(shortcut_app, fake_shortcut, api):
    item = make_exportable_item()
    response = api.post(f"/api/v1/action-items/{item.id}/export")
    assert response.status_code == 202, response.get_json()
    assert get_queue().failures == []
    story = the_one_story(fake_shortcut, item.id)
    assert_card_fields(fake_shortcut, story, item)
    body = response.get_json()["export"]
    assert body == {"status": "sent", "story_id": story["id"], "story_url": story["app_url"], "attempts": 1,
                    "last_error": None, "next_attempt_at": None, "card_state": "unstarted",
                    "card_closed_without_completion": False, "completed_at": None}
    [create] = fake_shortcut.calls("createStory")
    assert create.problems == []  # CreateStoryParams forbids unknown keys; the fixture checks every request

    again = api.post(f"/api/v1/action-items/{item.id}/export")  # a second request never makes a second card
    assert again.status_code == 202 and again.get_json()["export"]["story_id"] == story["id"]
    assert len(fake_shortcut.calls("createStory")) == 1
    listed = api.get("/api/v1/action-items?status=open").get_json()["items"]
    assert [i["export"]["story_id"] for i in listed] == [story["id"]]


def test_repair_items_become_bugs_and_story_types_are_configurable(shortcut_app, fake_shortcut, monkeypatch):
    repair = make_exportable_item(type="repair")
    pm = repair.postmortem
    detect = make_exportable_item(pm, title="Alert on 502 rate", type="detect", owner=make_user(), estimate=None,
                                  due_date=None)
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_STORY_TYPES", {"repair": "bug", "detect": "feature"})
    jobs.queue_postmortem_export(db.session, pm, shortcut_app.config)
    db.session.commit()
    assert the_one_story(fake_shortcut, repair.id)["story_type"] == "bug"
    story = the_one_story(fake_shortcut, detect.id)
    assert story["story_type"] == "feature"
    assert story["owner_ids"] == [] and story["deadline"] is None and story["estimate"] is None  # not matched


@pytest.mark.parametrize("fault", [
    pytest.param(Fault.status_code(500), id="500-before-processing"),
    pytest.param(Fault.process_then_status(500), id="500-after-creating"),
    pytest.param(Fault.rate_limited(0), id="429-retry-after"),
    pytest.param(Fault.rate_limited(), id="429-without-retry-after"),
    pytest.param(Fault.process_then_delay(1.0), id="timeout-after-creating"),
    pytest.param(Fault.drop(), id="dropped-connection"),
    pytest.param(Fault.process_then_drop(), id="dropped-after-creating"),
])
def test_every_fault_still_gives_exactly_one_story(shortcut_app, fake_shortcut, api, fault):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", fault)
    assert api.post(f"/api/v1/action-items/{item.id}/export").status_code == 202
    assert get_queue().failures == []
    story = the_one_story(fake_shortcut, item.id)
    assert_card_fields(fake_shortcut, story, item)


def test_a_create_still_in_flight_is_adopted_by_the_next_run(shortcut_app, fake_shortcut, api):
    # The server waits before it creates: the client times out, the lookup finds nothing yet, and the
    # job must not create again; the next run (once Shortcut has finished) adopts the story.
    item = make_exportable_item()
    fake_shortcut.inject("createStory", Fault.slow(0.6))
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    assert export.status == ExportStatus.PENDING and "UnknownOutcome" in export.last_error
    assert export.next_attempt_at > utcnow()
    deadline = time.monotonic() + 10
    while not fake_shortcut.stories_with_external_id(f"incidents:action-item:{item.id}"):
        assert time.monotonic() < deadline, "the fake never finished the slow create"
        time.sleep(0.05)
    assert jobs.send_export(export.id) == "skipped"  # not due yet
    later = utcnow() + timedelta(hours=2)
    assert services.due_export_ids(db.session, now=later) == [export.id]
    assert jobs.send_export(export.id, now=later) == "adopted"
    the_one_story(fake_shortcut, item.id)
    assert len(fake_shortcut.calls("createStory")) == 1


def test_pending_exports_are_retried_until_they_succeed(shortcut_app, fake_shortcut, api):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.status_code(503)] * 3)  # every attempt of this run fails
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    assert (export.status, export.attempts) == (ExportStatus.PENDING, 1)
    assert "503" in export.last_error and fake_shortcut.stories == {}
    assert services.due_export_ids(db.session) == []  # backing off
    assert jobs.send_export(export.id, now=utcnow() + timedelta(hours=2)) == "sent"
    assert export_of(item.id).attempts == 2 and export_of(item.id).last_error == ""
    the_one_story(fake_shortcut, item.id)


def test_rate_limit_longer_than_a_job_waits_is_retried_later(shortcut_app, fake_shortcut, api):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.rate_limited()] * 3)  # 0.2 s each; the job waits twice
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    assert export.status == ExportStatus.PENDING and "rate limited" in export.last_error
    assert jobs.send_export(export.id, now=utcnow() + timedelta(hours=2)) == "sent"
    the_one_story(fake_shortcut, item.id)


def test_a_refused_card_fails_until_a_person_fixes_it(shortcut_app, fake_shortcut, api, monkeypatch):
    item = make_exportable_item()
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_WORKFLOW_STATE_ID", 999)  # no such state: 422
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    assert export.status == ExportStatus.FAILED and "422" in export.last_error
    assert services.due_export_ids(db.session, now=utcnow() + timedelta(days=1)) == []  # not retried blindly
    body = api.get(f"/api/v1/action-items/{item.id}").get_json()["export"]
    assert body["status"] == "failed" and "Unknown workflow state" in body["last_error"]

    services.save_settings(db.session, item.postmortem.incident.team_id,
                           workflow_state_id=fake_shortcut.state_id("backlog"))
    db.session.commit()
    assert api.post(f"/api/v1/action-items/{item.id}/export").status_code == 202  # the team's state wins
    assert the_one_story(fake_shortcut, item.id)["workflow_state_id"] == fake_shortcut.state_id("backlog")


def test_an_abandoned_export_is_never_retried(shortcut_app, fake_shortcut, api):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.status_code(500)] * 3)
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    services.give_up(db.session, export, by=None)
    db.session.commit()
    later = utcnow() + timedelta(days=1)
    assert services.due_export_ids(db.session, now=later) == []
    assert jobs.send_export(export.id, now=later) == "skipped"
    assert export_of(item.id).status == ExportStatus.ABANDONED and fake_shortcut.stories == {}


def test_not_configured_is_a_conflict(app, api):
    item = make_exportable_item()
    response = api.post(f"/api/v1/action-items/{item.id}/export")
    assert response.status_code == 409 and "not configured" in response.get_json()["error"]["message"]
    assert items.get_action_item(db.session, item.id).export is None


def test_export_all_of_a_postmortem_skips_wont_do(shortcut_app, fake_shortcut, api):
    first = make_exportable_item()
    pm = first.postmortem
    second = make_exportable_item(pm, title="Canary config pushes")
    dropped = make_exportable_item(pm, title="Rewrite the gateway")
    items.update_action_item(db.session, dropped, status="wont_do", wont_do_reason="Gateway is retired in Q3")
    db.session.commit()
    response = api.post(f"/api/v1/postmortems/{pm.id}/export")
    assert response.status_code == 202
    assert sorted(i["id"] for i in response.get_json()["items"]) == [first.id, second.id]
    the_one_story(fake_shortcut, first.id)
    the_one_story(fake_shortcut, second.id)
    assert export_of(dropped.id) is None and len(fake_shortcut.stories) == 2
    assert api.post(f"/api/v1/postmortems/{pm.id}/export").status_code == 202  # again: nothing new
    assert len(fake_shortcut.calls("createStory")) == 2


def test_publishing_exports_when_the_team_asked_for_it(shortcut_app, fake_shortcut, session):
    incident = make_resolved_incident(service_id=make_service().id)
    pm = fill_for_publishing(make_postmortem(incident))
    other = fill_for_publishing(make_postmortem(make_resolved_incident(service_id=make_service().id)))
    assert incident.team_id is not None
    services.save_settings(session, incident.team_id, workflow_state_id=None, auto_export=True)
    session.commit()
    for postmortem in (pm, other):
        pm_services.submit_for_review(session, postmortem)
        pm_services.publish_postmortem(session, postmortem)
        session.commit()
    assert get_queue().failures == []
    [item] = pm.action_items
    story = the_one_story(fake_shortcut, item.id)
    assert story["workflow_state_id"] == fake_shortcut.state_id("unstarted")  # the environment's default
    assert export_of(other.action_items[0].id) is None  # that team did not ask


def test_sweep_requeues_due_exports(shortcut_app, fake_shortcut, api, monkeypatch):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.status_code(500)] * 3)
    api.post(f"/api/v1/action-items/{item.id}/export")
    export = export_of(item.id)
    export.next_attempt_at = utcnow() - timedelta(seconds=1)  # its backoff has passed
    db.session.commit()
    assert jobs.retry_pending_exports.run_now() == 1  # queued (and, in tests, run inline) after its commit
    the_one_story(fake_shortcut, item.id)
    assert jobs.retry_pending_exports.run_now() == 0


def test_deleting_an_exported_item_removes_its_outbox_row(shortcut_app, fake_shortcut, api):
    item = make_exportable_item()
    api.post(f"/api/v1/action-items/{item.id}/export")
    export_id = export_of(item.id).id
    items.delete_action_item(db.session, items.get_action_item(db.session, item.id))
    db.session.commit()
    assert db.session.get(ShortcutExport, export_id) is None


def test_two_runs_of_one_export_never_both_hold_it(shortcut_app, fake_shortcut, session):
    item = make_exportable_item()
    export, _ = services.request_export(session, item, shortcut_app.config)  # recorded, not queued
    session.commit()
    lease = shortcut_app.config["SHORTCUT_EXPORT_LEASE"]
    assert services.claim(session, export.id, lease) is not None
    session.commit()
    assert services.claim(session, export.id, lease) is None  # a duplicate run (or the sweep) skips it
    assert services.due_export_ids(session) == []
    later = utcnow() + timedelta(seconds=lease + 1)
    assert services.due_export_ids(session, now=later) == [export.id]  # a dead holder's lease runs out
    assert services.claim(session, export.id, lease, now=later).attempts == 2
    session.commit()
    assert fake_shortcut.stories == {}  # claiming alone sends nothing
