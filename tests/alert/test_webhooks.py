"""POST /webhooks/<source>: authentication, deliveries and outcomes, dedup, rules and the alert lifecycle."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from incidents.alert import services
from incidents.alert.models import Alert, AlertStatus, Delivery, Outcome
from incidents.alert.services import processing
from incidents.extensions import db
from incidents.incident import services as incident_services
from incidents.incident.models import EntryKind, Incident, Severity, Status, TimelineEntry
from tests.alert.conftest import (
    OPSGENIE_SAMPLES,
    ROLLBAR_SAMPLES,
    fixture,
    make_integration,
    post,
    sample,
)
from tests.factories import make_service


def rows(model, *where):
    db.session.expire_all()
    return list(db.session.scalars(sa.select(model).where(*where).order_by(model.id)))


def entries(incident_id: int, kind: EntryKind | None = None) -> list[TimelineEntry]:
    where = [TimelineEntry.incident_id == incident_id]
    if kind:
        where.append(TimelineEntry.kind == kind)
    return rows(TimelineEntry, *where)


# --- authentication and transport ---------------------------------------------------------------

def test_missing_or_wrong_token_is_401_and_stores_nothing(client, rollbar, opsgenie):
    _, rollbar_token = rollbar
    _, opsgenie_token = opsgenie
    payload = fixture("rollbar_new_item_production")
    for token in (None, "whk_wrong-token-0123456789", opsgenie_token):  # the OpsGenie token is not Rollbar's
        response = post(client, "rollbar", payload, token)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert rows(Delivery) == [] and rows(Alert) == []


def test_disabled_integration_is_refused(client, rollbar):
    integration, token = rollbar
    services.update_integration(db.session, integration, active=False)
    db.session.commit()
    assert post(client, "rollbar", fixture("rollbar_new_item_production"), token).status_code == 401


def test_unknown_source_is_404(client, rollbar):
    assert post(client, "nagios", {}, rollbar[1]).status_code == 404


def test_token_in_query_parameter_works_and_is_never_stored_or_echoed(client, rollbar):
    _, token = rollbar
    response = post(client, "rollbar", fixture("rollbar_new_item_production"), token, via="query")
    assert response.status_code == 200
    assert token not in response.get_data(as_text=True)
    header = post(client, "rollbar", fixture("rollbar_occurrence"), token)
    assert header.status_code == 200
    for delivery in rows(Delivery):
        assert token not in delivery.body and token not in json.dumps(delivery.headers)
        assert "X-Incidents-Token" not in delivery.headers


def test_a_percent_encoded_query_token_is_the_token(client, rollbar):
    """werkzeug decodes query names, so `?tok%65n=` authenticates like `?token=`: the access log, which must
    redact what the app reads, decodes names the same way (tests/test_serving.py)."""
    response = client.post(f"/webhooks/rollbar?tok%65n={rollbar[1]}", data=json.dumps(fixture("rollbar_occurrence")),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200


def test_body_over_one_mebibyte_is_413(client, rollbar):
    big = b'{"event_name": "test", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    response = post(client, "rollbar", big, rollbar[1])
    assert response.status_code == 413
    assert rows(Delivery) == []


def test_webhooks_work_before_any_user_exists(client, rollbar):
    # No user yet: pages redirect to the setup form, but senders must still be able to deliver.
    response = post(client, "rollbar", sample(ROLLBAR_SAMPLES, "test") if ROLLBAR_SAMPLES.is_dir()
                    else {"event_name": "test", "data": {}}, rollbar[1])
    assert response.status_code == 200


# --- outcomes -----------------------------------------------------------------------------------

def test_not_json_is_rejected_with_400_and_kept(client, rollbar):
    response = post(client, "rollbar", b"<xml>not json</xml>", rollbar[1])
    assert response.status_code == 400
    body = response.get_json()
    assert body["outcome"] == "rejected" and "not valid JSON" in body["error"]["message"]
    [delivery] = rows(Delivery)
    assert delivery.id == body["delivery"] and delivery.outcome == Outcome.REJECTED
    assert delivery.body == "<xml>not json</xml>" and delivery.error == "The body is not valid JSON."


SECRET = "rollbar-post-server-item-token-9999"


@pytest.mark.parametrize("body", [
    # JSON, but not a shape Rollbar sends (ParseError): redacted like an accepted one
    json.dumps({"event_name": "occurrence", "data": {"item": "nope", "occurrence": {
        "metadata": {"access_token": SECRET}, "request": {"headers": {"Cookie": f"session={SECRET}"}}}}}),
    json.dumps([{"access_token": SECRET}]),  # an array
    '{"event_name": "new_item", "data": {"access_token": "' + SECRET + '", "item": {',  # truncated: not JSON
    "[" * 200 + '{"access_token": "' + SECRET + '"}' + "]" * 200,  # too deep to parse
    f"access_token={SECRET}&event_name=new_item",  # form-encoded
], ids=["bad-shape", "array", "truncated", "too-deep", "form"])
def test_rejected_deliveries_are_stored_redacted(client, rollbar, body):
    response = post(client, "rollbar", body.encode(), rollbar[1])
    assert response.status_code == 400 and response.get_json()["outcome"] == "rejected"
    [delivery] = rows(Delivery)
    assert delivery.outcome == Outcome.REJECTED
    assert SECRET not in delivery.body and "[redacted]" in delivery.body


def test_rejected_opsgenie_delivery_blanks_echoed_headers(client, opsgenie):
    payload = {"action": "Escalate", "alert": "nope", "headers": {"X-Incidents-Token": "abc"}}
    response = post(client, "opsgenie", payload, opsgenie[1])
    assert response.status_code == 400
    assert json.loads(rows(Delivery)[0].body)["headers"] == {"X-Incidents-Token": "[redacted]"}


def test_unreadable_shape_is_rejected_with_a_clear_message(client, opsgenie):
    response = post(client, "opsgenie", {"action": "Create", "alert": "nope"}, opsgenie[1])
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "OpsGenie Create: 'alert' must be an object."
    assert rows(Delivery)[0].outcome == Outcome.REJECTED


def test_test_event_and_unknown_events_are_ignored_with_2xx(client, rollbar, opsgenie):
    assert post(client, "rollbar", {"event_name": "test", "data": {"message": "hi"}}, rollbar[1]).status_code == 200
    unknown = post(client, "opsgenie", {"action": "UpdateTimeline", "alert": {"alias": "x"}}, opsgenie[1])
    assert unknown.status_code == 200 and unknown.get_json()["outcome"] == "ignored"
    assert [d.outcome for d in rows(Delivery)] == [Outcome.IGNORED, Outcome.IGNORED]
    assert rows(Alert) == []


def test_failed_processing_keeps_the_delivery_answers_202_and_replays(client, rollbar, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug in the rules")

    monkeypatch.setattr(processing, "_apply", broken)
    response = post(client, "rollbar", fixture("rollbar_new_item_production"), rollbar[1])
    assert response.status_code == 202 and response.get_json()["outcome"] == "failed"
    [delivery] = rows(Delivery)
    assert delivery.outcome == Outcome.FAILED and "RuntimeError: bug in the rules" in delivery.error
    assert "rollbar-post-server-item-token-0000" not in delivery.body  # redacted on this path too
    assert rows(Alert) == [] and rows(Incident) == []  # the half-done work was rolled back
    # A sender retry of the same delivery does not pile up: it is the same delivery.
    retry = post(client, "rollbar", fixture("rollbar_new_item_production"), rollbar[1])
    assert retry.get_json()["outcome"] == "duplicate" and len(rows(Delivery)) == 1

    monkeypatch.undo()  # the bug is fixed; replay
    result = services.replay_delivery(db.session, delivery)
    db.session.commit()
    assert result.outcome == Outcome.PROCESSED
    [delivery] = rows(Delivery)
    assert delivery.outcome == Outcome.PROCESSED and delivery.replayed_at is not None and delivery.error == ""
    [alert] = rows(Alert)
    assert delivery.alert_id == alert.id and alert.incident_id is not None
    with pytest.raises(Exception, match="only failed, rejected, ignored"):
        services.replay_delivery(db.session, delivery)


# --- OpsGenie lifecycle (hand-made fixtures) ----------------------------------------------------------

def test_opsgenie_lifecycle(client, opsgenie):
    token = opsgenie[1]
    created = post(client, "opsgenie", fixture("opsgenie_create_p1"), token)
    assert created.status_code == 200, created.get_json()
    body = created.get_json()
    assert body["outcome"] == "processed" and body["incident"]
    [alert] = rows(Alert)
    assert (alert.fingerprint, alert.severity, alert.status, alert.occurrence_count) == (
        "checkout-5xx", "P1", AlertStatus.OPEN, 1)
    assert alert.first_seen_at == datetime(2026, 1, 1, tzinfo=UTC)
    incident = db.session.get(Incident, body["incident"])
    assert incident.severity == Severity.SEV1 and incident.status == Status.TRIGGERED
    assert incident.tags == ["opsgenie"] and incident.detected_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [e.text for e in entries(incident.id, EntryKind.ALERT)] == [
        "Opened from OpsGenie alert: Checkout API 5xx rate above 5%"]

    # The same body again is a sender retry: nothing changes.
    again = post(client, "opsgenie", fixture("opsgenie_create_p1"), token)
    assert again.status_code == 200 and again.get_json()["outcome"] == "duplicate"
    assert rows(Alert)[0].occurrence_count == 1 and len(rows(Delivery)) == 1

    # A repeat Create (a new event for the open alias) bumps the count and last seen.
    repeat = fixture("opsgenie_create_p1")
    repeat["alert"]["createdAt"] += 60_000
    repeat["alertFlowContext"]["requestId"] = "req-2"
    assert post(client, "opsgenie", repeat, token).get_json()["incident"] == incident.id
    [alert] = rows(Alert)
    assert alert.occurrence_count == 2 and alert.last_seen_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert len(rows(Incident)) == 1

    # Acknowledge sets the incident's acknowledged time from OpsGenie's clock: that is the MTTA.
    assert post(client, "opsgenie", fixture("opsgenie_acknowledge"), token).status_code == 200
    db.session.expire_all()
    incident = db.session.get(Incident, incident.id)
    assert incident.status == Status.ACKNOWLEDGED
    assert incident.acknowledged_at == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)
    assert rows(Alert)[0].status == AlertStatus.ACKNOWLEDGED
    assert "OpsGenie: alert acknowledged by Rita Responder" in [e.text for e in entries(incident.id)]

    assert post(client, "opsgenie", fixture("opsgenie_addnote"), token).status_code == 200
    [note] = entries(incident.id, EntryKind.NOTE)
    assert note.body.startswith("Rolled back release 2026.1.3")

    escalate = post(client, "opsgenie", fixture("opsgenie_escalate_with_secret_header"), token)
    assert escalate.get_json()["outcome"] == "processed"
    assert "OpsGenie: escalated (checkout-escalation) to oncall-secondary" in [e.text for e in entries(incident.id)]
    stored = rows(Delivery, Delivery.event == "Escalate")[0].body
    assert "SECRET-TOKEN-ECHOED-BACK" not in stored and "[redacted]" in stored

    assert post(client, "opsgenie", fixture("opsgenie_close"), token).status_code == 200
    [alert] = rows(Alert)
    assert alert.status == AlertStatus.CLOSED and alert.closed_at == datetime(2026, 1, 1, 0, 15, tzinfo=UTC)
    assert "OpsGenie: alert closed by rita@example.com" in [e.text for e in entries(incident.id)]
    assert db.session.get(Incident, incident.id).status == Status.ACKNOWLEDGED  # closing an alert only notes it

    # After Close, the same alias opens a new alert (and, by the rules, a new incident: a repeat).
    reopened = fixture("opsgenie_create_p1")
    reopened["alert"]["createdAt"] += 3_600_000
    body = post(client, "opsgenie", reopened, token).get_json()
    assert len(rows(Alert)) == 2 and body["incident"] != incident.id
    assert db.session.get(Incident, body["incident"]).repeat_of_id is None  # the first one is still open
    assert [d.outcome for d in rows(Delivery)] == [Outcome.PROCESSED] * 7


def test_opsgenie_low_priority_stays_an_alert(client, opsgenie):
    payload = fixture("opsgenie_create_p1")
    payload["alert"]["priority"] = 3
    body = post(client, "opsgenie", payload, opsgenie[1]).get_json()
    assert body["outcome"] == "processed" and body["incident"] is None
    assert rows(Alert)[0].severity == "P3" and rows(Incident) == []


def test_integration_service_and_custom_rules(client, app):
    service = make_service(name="Checkout")
    _, token = make_integration("opsgenie", "custom", service=service.slug, rules=[
        {"severities": ["P3"], "incident_severity": "SEV3"},
        {"severities": ["P1"], "incident_severity": None},  # P1 from this source: keep as alert only
    ])
    p1 = post(client, "opsgenie", fixture("opsgenie_create_p1"), token).get_json()
    assert p1["incident"] is None
    p3 = fixture("opsgenie_create_p1")
    p3["alert"].update(alias="other", priority="P3")
    incident = db.session.get(Incident, post(client, "opsgenie", p3, token).get_json()["incident"])
    assert incident.severity == Severity.SEV3
    assert incident.service_id == service.id and incident.team_id == service.team_id


# --- Rollbar lifecycle (hand-made fixtures) ------------------------------------------------------------

def test_rollbar_lifecycle_and_repeat_incident(client, rollbar):
    integration, token = rollbar
    body = post(client, "rollbar", fixture("rollbar_new_item_production"), token).get_json()
    first = db.session.get(Incident, body["incident"])
    assert first.severity == Severity.SEV2  # level 40 (error) in production
    stored = rows(Delivery)[0].body
    assert "rollbar-post-server-item-token-0000" not in stored and "session=abc" not in stored

    for _ in range(2):  # the second is Rollbar retrying the same occurrence
        assert post(client, "rollbar", fixture("rollbar_occurrence"), token).status_code == 200
    [alert] = rows(Alert)
    assert alert.occurrence_count == 2 and alert.last_seen_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert len(rows(Delivery)) == 2

    deploy = post(client, "rollbar", fixture("rollbar_deploy_production"), token).get_json()
    assert deploy["outcome"] == "processed" and "1 open incident" in deploy["message"]
    [entry] = entries(first.id, EntryKind.DEPLOY)
    assert entry.text == "Deploy 4f2a9c1d0e8b to production by dana"
    assert entry.data["revision"].startswith("4f2a9c1d")

    incident_services.resolve_incident(db.session, first)
    db.session.commit()
    assert post(client, "rollbar", fixture("rollbar_resolved_item"), token).status_code == 200
    [alert] = rows(Alert)
    assert alert.status == AlertStatus.RESOLVED and alert.closed_at is not None
    assert "Rollbar: item resolved" in [e.text for e in entries(first.id)]

    # The item comes back: a new alert, and a new incident marked as a repeat of the resolved one.
    body = post(client, "rollbar", fixture("rollbar_reactivated_item"), token).get_json()
    old, new = rows(Alert)
    assert old.status == AlertStatus.RESOLVED and new.status == AlertStatus.OPEN
    assert new.fingerprint == old.fingerprint == "900000001" and new.severity == "critical"
    second = db.session.get(Incident, body["incident"])
    assert second.id != first.id and second.repeat_of_id == first.id and second.severity == Severity.SEV1
    assert f"(repeat of {first.ref})" in entries(second.id, EntryKind.ALERT)[0].text


def test_deploy_is_noted_once_on_every_open_incident_of_its_environment(client, rollbar):
    """The deploy fan-out writes its entries in one statement: same rows as one add_timeline_entry each."""
    integration, token = rollbar
    opened = []
    for n in range(12):
        payload = fixture("rollbar_new_item_production")
        item = payload["data"]["item"]
        item["id"], item["title"] = 900000100 + n, f"KeyError: 'cart_{n}'"
        item["last_occurrence"]["uuid"] = f"11111111-aaaa-4bbb-8ccc-{n:012d}"
        if n == 11:
            item["environment"] = item["last_occurrence"]["environment"] = "staging"  # another environment
        opened.append(post(client, "rollbar", payload, token).get_json()["incident"])
    staging_alert = rows(Alert, Alert.fingerprint == "900000111")[0]
    assert opened[11] is None and staging_alert.incident_id is None  # staging errors stay alerts
    resolved = db.session.get(Incident, opened[0])
    incident_services.resolve_incident(db.session, resolved)
    db.session.commit()

    deploy = post(client, "rollbar", fixture("rollbar_deploy_production"), token).get_json()
    assert deploy["outcome"] == "processed" and "noted on 10 open incident(s)" in deploy["message"]
    assert entries(opened[0], EntryKind.DEPLOY) == []  # resolved: not noted
    for incident_id in opened[1:11]:
        [entry] = entries(incident_id, EntryKind.DEPLOY)
        assert entry.text == "Deploy 4f2a9c1d0e8b to production by dana"
        assert entry.data["revision"].startswith("4f2a9c1d") and entry.data["delivery_id"] == deploy["delivery"]
        assert entry.data["source"] == "rollbar" and entry.author is None and entry.body == ""
        assert entry.occurred_at == datetime(2026, 1, 1, 0, 7, 40, tzinfo=UTC)  # the deploy's finish_time
        assert entry.created_at is not None


def test_alert_driven_changes_announce_exactly_the_declaration_and_status_changes(client, app, opsgenie,
                                                                                   monkeypatch):
    """Alert lines are written without the ORM; the declaration and the acknowledgement still announce."""
    from incidents.notify import jobs as notify_jobs

    announced = []
    monkeypatch.setitem(app.config, "NOTIFY_ON_COMMIT", True)
    monkeypatch.setattr(notify_jobs, "enqueue_now",
                        lambda job, incident_id, event: announced.append((incident_id, json.loads(event))))
    token = opsgenie[1]
    incident_id = post(client, "opsgenie", fixture("opsgenie_create_p1"), token).get_json()["incident"]
    assert [(i, e["kind"]) for i, e in announced] == [(incident_id, "opened")]
    post(client, "opsgenie", fixture("opsgenie_acknowledge"), token)
    post(client, "opsgenie", fixture("opsgenie_addnote"), token)
    post(client, "opsgenie", fixture("opsgenie_close"), token)
    assert [(i, e["kind"], e["to_status"]) for i, e in announced[1:]] == [
        (incident_id, "status_changed", "acknowledged")]
    kinds = [e.kind for e in entries(incident_id)]
    assert kinds[:2] == [EntryKind.CREATED, EntryKind.ALERT] and EntryKind.STATUS in kinds
    assert kinds.count(EntryKind.ALERT) == 3 and EntryKind.NOTE in kinds  # opened, acknowledged, closed


def test_repeat_lines_go_on_open_incidents_only_and_a_second_acknowledgement_moves_nothing(client, rollbar, opsgenie):
    """An alert's line and the check of its incident are one statement: an exp_repeat_item is noted on the open
    incident, not once it is resolved; an acknowledgement of an acknowledged incident is a line, not a move."""
    token = rollbar[1]
    incident_id = post(client, "rollbar", fixture("rollbar_new_item_production"), token).get_json()["incident"]
    repeat = fixture("rollbar_occurrence")
    repeat["event_name"] = "exp_repeat_item"
    repeat["data"]["occurrences"] = 10
    assert post(client, "rollbar", repeat, token).status_code == 200
    assert [e.text for e in entries(incident_id, EntryKind.ALERT)][-1] == "Rollbar: occurrence #10 of this item"
    incident_services.resolve_incident(db.session, db.session.get(Incident, incident_id))
    db.session.commit()
    before = len(entries(incident_id))
    repeat["data"]["occurrences"] = 100
    repeat["data"]["occurrence"]["uuid"] = "22222222-aaaa-4bbb-8ccc-000000000100"
    assert post(client, "rollbar", repeat, token).get_json()["outcome"] == "processed"
    assert len(entries(incident_id)) == before  # resolved: the repeat changes its alert, not its timeline

    token = opsgenie[1]
    opened = post(client, "opsgenie", fixture("opsgenie_create_p1"), token).get_json()["incident"]
    post(client, "opsgenie", fixture("opsgenie_acknowledge"), token)
    acknowledged_at = db.session.get(Incident, opened).acknowledged_at
    again = fixture("opsgenie_acknowledge")
    again["alert"]["updatedAt"] = again["alert"].get("updatedAt", 0) + 1  # another delivery, not a retry
    again["source"] = {**again.get("source", {}), "name": "another responder"}
    assert post(client, "opsgenie", again, token).status_code == 200
    incident = db.session.get(Incident, opened)
    assert incident.status == Status.ACKNOWLEDGED and incident.acknowledged_at == acknowledged_at
    assert len(entries(opened, EntryKind.STATUS)) == 1
    lines = [e.text for e in entries(opened, EntryKind.ALERT) if " acknowledged" in e.text]
    assert len(lines) == 2, lines


def test_bulk_timeline_entries_refuse_kinds_that_announce(app):
    with pytest.raises(ValueError):
        incident_services.add_timeline_entries(db.session, [1], EntryKind.STATUS, "Status: a -> b")
    with pytest.raises(ValueError):
        incident_services.add_timeline_entries(db.session, [1], EntryKind.CREATED, "Incident declared")
    assert incident_services.add_timeline_entries(db.session, [], EntryKind.DEPLOY, "Deploy") == 0


def test_reactivated_while_alert_open_but_incident_resolved(client, rollbar):
    _, token = rollbar
    first = db.session.get(Incident, post(client, "rollbar", fixture("rollbar_new_item_production"),
                                          token).get_json()["incident"])
    incident_services.resolve_incident(db.session, first)
    db.session.commit()
    body = post(client, "rollbar", fixture("rollbar_reactivated_item"), token).get_json()
    [alert] = rows(Alert)  # the alert never closed: it is reused, and moves to the new incident
    assert alert.incident_id == body["incident"] != first.id
    assert db.session.get(Incident, body["incident"]).repeat_of_id == first.id


def test_reactivated_while_its_incident_is_open_is_a_line_on_it(client, rollbar):
    _, token = rollbar
    first = post(client, "rollbar", fixture("rollbar_new_item_production"), token).get_json()["incident"]
    body = post(client, "rollbar", fixture("rollbar_reactivated_item"), token).get_json()
    assert body["outcome"] == "processed" and body["incident"] == first
    assert [i.id for i in rows(Incident)] == [first]  # nothing reopened, nothing new
    assert [e.text for e in entries(first, EntryKind.ALERT)][-1] == "Rollbar: item reactivated"


def test_occurrence_first_sight_opens_like_new_item(client, rollbar):
    body = post(client, "rollbar", fixture("rollbar_occurrence"), rollbar[1]).get_json()
    assert body["incident"] is not None
    payload = fixture("rollbar_occurrence")
    payload["data"]["occurrence"]["uuid"] = "11111111-aaaa-4bbb-8ccc-000000000009"
    assert post(client, "rollbar", payload, rollbar[1]).get_json()["incident"] == body["incident"]
    assert len(rows(Incident)) == 1 and rows(Alert)[0].occurrence_count == 2


def test_non_production_errors_stay_alerts(client, rollbar):
    payload = fixture("rollbar_new_item_production")
    payload["data"]["item"]["environment"] = "staging"
    assert post(client, "rollbar", payload, rollbar[1]).get_json()["incident"] is None
    assert len(rows(Alert)) == 1 and rows(Incident) == []


def test_close_for_unknown_alert_is_ignored(client, rollbar):
    body = post(client, "rollbar", fixture("rollbar_resolved_item"), rollbar[1]).get_json()
    assert body["outcome"] == "ignored" and "No open alert" in body["message"]


# --- every shared sample through the endpoint ---------------------------------------------------

OPSGENIE_ORDER = ["create", "acknowledge", "unacknowledge", "addnote", "addtags", "takeownership", "escalate", "close"]
ROLLBAR_ORDER = ["test", "new_item", "new_item_java", "new_item_log_message", "occurrence", "occurrence_trace_chain",
                 "exp_repeat_item", "item_velocity", "reopened_item", "resolved_item", "reactivated_item",
                 "reactivated_item_ios_crash_report", "deploy", "deploy_no_username",
                 "invalid_unsupported_event_name"]


def test_opsgenie_samples_through_the_endpoint(client, opsgenie):
    payloads = [sample(OPSGENIE_SAMPLES, name) for name in OPSGENIE_ORDER]
    statuses = [post(client, "opsgenie", p, opsgenie[1]).status_code for p in payloads]
    assert statuses == [200] * len(OPSGENIE_ORDER)
    outcomes = {d.event: d.outcome for d in rows(Delivery)}
    assert outcomes == {
        "Create": Outcome.PROCESSED, "Acknowledge": Outcome.PROCESSED, "UnAcknowledge": Outcome.PROCESSED,
        "AddNote": Outcome.PROCESSED, "AddTags": Outcome.PROCESSED,
        "TakeOwnership": Outcome.IGNORED, "Escalate": Outcome.IGNORED,  # alerts we never saw
        "Close": Outcome.PROCESSED,
    }
    created, aliastest = rows(Alert)
    assert (created.fingerprint, created.severity, created.status) == ("alert-alias", "P3", AlertStatus.OPEN)
    assert (aliastest.fingerprint, aliastest.status, aliastest.last_event) == ("aliastest", AlertStatus.CLOSED, "Close")
    assert aliastest.external_id == "052652ac-5d1c-464a-812a-7dd18bbfba8c" and aliastest.occurrence_count == 1
    assert rows(Incident) == []  # P3 opens nothing by default
    escalate = rows(Delivery, Delivery.event == "Escalate")[0]
    assert json.loads(escalate.body)["headers"] == {"foo": "[redacted]"}


def test_opsgenie_samples_with_a_rule_for_every_create(client, app):
    _, token = make_integration("opsgenie", "all", rules=[{"events": ["Create"], "incident_severity": "SEV3"}])
    for name in OPSGENIE_ORDER:
        post(client, "opsgenie", sample(OPSGENIE_SAMPLES, name), token)
    [incident] = rows(Incident)
    assert incident.severity == Severity.SEV3 and incident.title == "another alert"
    assert rows(Alert)[0].incident_id == incident.id


def test_rollbar_samples_through_the_endpoint(client, rollbar):
    token = rollbar[1]
    responses = [post(client, "rollbar", sample(ROLLBAR_SAMPLES, name), token) for name in ROLLBAR_ORDER]
    assert [r.status_code for r in responses] == [200] * len(ROLLBAR_ORDER)
    deliveries = rows(Delivery)
    assert [d.outcome for d in deliveries] == [Outcome.IGNORED] + [Outcome.PROCESSED] * 13 + [Outcome.IGNORED]
    assert "unsupported" in deliveries[-1].error  # the negative sample: a clear outcome, no 500
    assert all("d5dcc96766534ee388acf9c1df490892" not in d.body for d in deliveries)  # access_token redacted

    alerts = {a.fingerprint: a for a in rows(Alert)}
    assert set(alerts) == {"589557573", "603650150", "791055038", "782446217", "750356655", "816971413"}
    typeerror = alerts["589557573"]
    assert (typeerror.status, typeerror.occurrence_count) == (AlertStatus.RESOLVED, 2)
    assert alerts["782446217"].occurrence_count == 3  # occurrence, exp_repeat_item, item_velocity
    assert alerts["750356655"].incident_id is None  # js-sandbox is not production
    incidents = rows(Incident)
    assert len(incidents) == 5
    by_alert = {fp: db.session.get(Incident, a.incident_id) for fp, a in alerts.items() if a.incident_id}
    assert by_alert["816971413"].severity == Severity.SEV1  # critical
    assert by_alert["589557573"].severity == Severity.SEV2
    texts = [e.text for e in entries(by_alert["782446217"].id)]
    assert "Rollbar: occurrence #10 of this item" in texts
    assert "Rollbar: high occurrence rate (5 occurrences in 5 minutes)" in texts
    assert "Rollbar: item reopened" in [e.text for e in entries(by_alert["589557573"].id)]
    for incident in incidents:  # both deploys to "live" are on every open incident fed by a "live" alert
        assert len(entries(incident.id, EntryKind.DEPLOY)) == 2

    # Sending every sample again changes nothing: they are all retries now.
    counts = {a.fingerprint: a.occurrence_count for a in rows(Alert)}
    again = [post(client, "rollbar", sample(ROLLBAR_SAMPLES, n), token).get_json()["outcome"] for n in ROLLBAR_ORDER]
    assert set(again) == {"duplicate"}
    assert {a.fingerprint: a.occurrence_count for a in rows(Alert)} == counts
    assert len(rows(Delivery)) == len(ROLLBAR_ORDER)


def test_mutated_samples_never_500(client, rollbar, opsgenie):
    """Every sample with each top-level and data/alert field dropped or retyped: 2xx or a clear 400."""
    shapes = ["new_item", "occurrence", "item_velocity", "resolved_item", "reactivated_item_ios_crash_report", "deploy"]
    cases = [("rollbar", sample(ROLLBAR_SAMPLES, n), rollbar[1]) for n in shapes]
    cases += [("opsgenie", sample(OPSGENIE_SAMPLES, n), opsgenie[1]) for n in OPSGENIE_ORDER]
    for source, payload, token in cases:
        inner = payload.get("data", {}).get("item") if source == "rollbar" else payload.get("alert")
        for key in list(payload) + list(inner or {}):
            for value in (None, "x", 10**20):
                mutated = copy.deepcopy(payload)
                target = mutated if key in mutated else (
                    mutated["data"]["item"] if source == "rollbar" else mutated["alert"])
                target[key] = value
                response = post(client, source, mutated, token)
                assert response.status_code in (200, 400), (source, key, value, response.get_json())
