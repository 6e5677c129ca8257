"""The pure parsers: every shared sample and every hand-made fixture reads as the documented shape."""

from __future__ import annotations

import pytest

from incidents.alert.sources import REDACTED, Kind, ParseError, parse
from incidents.alert.sources import opsgenie as og
from incidents.alert.sources import rollbar as rb
from tests.alert.conftest import OPSGENIE_SAMPLES, ROLLBAR_SAMPLES, fixture, sample, sample_names

OPSGENIE_KINDS = {
    "create": Kind.TRIGGER, "acknowledge": Kind.ACKNOWLEDGE, "unacknowledge": Kind.UNACKNOWLEDGE,
    "addnote": Kind.NOTE, "close": Kind.CLOSE, "addtags": Kind.INFO, "takeownership": Kind.INFO,
    "escalate": Kind.ESCALATE,
}
ROLLBAR_KINDS = {
    "new_item": Kind.TRIGGER, "new_item_java": Kind.TRIGGER, "new_item_log_message": Kind.TRIGGER,
    "occurrence": Kind.REPEAT, "occurrence_trace_chain": Kind.REPEAT, "exp_repeat_item": Kind.REPEAT,
    "item_velocity": Kind.REPEAT, "reactivated_item": Kind.REACTIVATE,
    "reactivated_item_ios_crash_report": Kind.REACTIVATE, "reopened_item": Kind.REACTIVATE,
    "resolved_item": Kind.CLOSE, "deploy": Kind.DEPLOY, "deploy_no_username": Kind.DEPLOY,
    "test": Kind.IGNORE, "invalid_unsupported_event_name": Kind.IGNORE,
}


def test_every_shared_sample_has_an_expectation():
    # A new sample in the shared folder must be looked at, not silently pass.
    assert set(sample_names(OPSGENIE_SAMPLES)) <= set(OPSGENIE_KINDS)
    assert set(sample_names(ROLLBAR_SAMPLES)) <= set(ROLLBAR_KINDS)


@pytest.mark.parametrize("name", sorted(OPSGENIE_KINDS))
def test_opsgenie_samples(name):
    event = parse("opsgenie", sample(OPSGENIE_SAMPLES, name))[0]
    assert event.kind == OPSGENIE_KINDS[name]
    assert event.source == "opsgenie"
    if name == "escalate":
        assert event.external_id == "7ba97e3a-d328-4b5e-8f9a-39e945a3869a" and event.fingerprint is None
        assert "test_esc" in event.reason
        return
    assert event.fingerprint  # alias, falling back to alertId
    assert event.title and event.occurred_at is not None and event.occurred_at.tzinfo is not None
    assert event.link.startswith("https://app.opsgenie.com/alert/detail/")


def test_opsgenie_sample_details():
    create = parse("opsgenie", sample(OPSGENIE_SAMPLES, "create"))[0]
    assert (create.fingerprint, create.severity, create.title) == ("alert-alias", "P3", "another alert")
    assert create.bump
    assert create.occurred_at.year == 2017  # createdAt is epoch milliseconds
    ack = parse("opsgenie", sample(OPSGENIE_SAMPLES, "acknowledge"))[0]
    assert ack.fingerprint == "aliastest" and ack.occurred_at.year == 2015  # updatedAt is epoch nanoseconds
    assert ack.actor == "fili@ifountain.com" and ack.bump is False
    assert parse("opsgenie", sample(OPSGENIE_SAMPLES, "addnote"))[0].note == "note to test alert"
    assert "tag1,tag2,tag3" in parse("opsgenie", sample(OPSGENIE_SAMPLES, "addtags"))[0].reason
    owner = parse("opsgenie", sample(OPSGENIE_SAMPLES, "takeownership"))[0]
    assert owner.fingerprint == "8a745a79-3ed3-4044-8427-98e067c0623c"


@pytest.mark.parametrize("name", sorted(ROLLBAR_KINDS))
def test_rollbar_samples(name):
    event = parse("rollbar", sample(ROLLBAR_SAMPLES, name))[0]
    assert event.kind == ROLLBAR_KINDS[name]
    if event.kind in (Kind.IGNORE, Kind.DEPLOY):
        assert event.fingerprint is None and event.reason
        return
    assert event.fingerprint.isdigit()  # the global item id
    assert event.severity in ("error", "critical") and event.environment
    assert event.title and event.link.startswith("https://rollbar.com/")


def test_rollbar_sample_details():
    new = parse("rollbar", sample(ROLLBAR_SAMPLES, "new_item"))[0]
    assert (new.fingerprint, new.severity, new.environment) == ("589557573", "error", "live")
    assert new.description.startswith("TypeError: unsupported operand")
    assert new.dedup_key == "new_item:589557573:2e7cbf0a-a3af-402a-ab4f-95e07e5982f8"
    occurrence = parse("rollbar", sample(ROLLBAR_SAMPLES, "occurrence"))[0]
    # The same occurrence uuid appears under new_item and occurrence: the key keeps them apart.
    assert occurrence.dedup_key != new.dedup_key and occurrence.bump
    chain = parse("rollbar", sample(ROLLBAR_SAMPLES, "occurrence_trace_chain"))[0]
    assert chain.description == "Exception: foo"
    crash = parse("rollbar", sample(ROLLBAR_SAMPLES, "reactivated_item_ios_crash_report"))[0]
    assert crash.severity == "critical" and crash.description.startswith("Incident Identifier")
    assert parse("rollbar", sample(ROLLBAR_SAMPLES, "new_item_java"))[0].description == "This is an error message"
    velocity = parse("rollbar", sample(ROLLBAR_SAMPLES, "item_velocity"))[0]
    assert "5 occurrences in 5 minutes" in velocity.reason and velocity.dedup_key is None
    assert "#10" in parse("rollbar", sample(ROLLBAR_SAMPLES, "exp_repeat_item"))[0].reason
    deploy = parse("rollbar", sample(ROLLBAR_SAMPLES, "deploy_no_username"))[0]
    assert deploy.deploy["user"] == "" and deploy.environment == "live"
    assert parse("rollbar", sample(ROLLBAR_SAMPLES, "resolved_item"))[0].bump is False


def test_hand_made_fixtures():
    create = parse("opsgenie", fixture("opsgenie_create_p1"))[0]
    assert (create.kind, create.severity, create.fingerprint) == (Kind.TRIGGER, "P1", "checkout-5xx")
    assert parse("opsgenie", fixture("opsgenie_acknowledge"))[0].actor == "Rita Responder"
    new = parse("rollbar", fixture("rollbar_new_item_production"))[0]
    assert (new.fingerprint, new.severity, new.environment) == ("900000001", "error", "production")
    assert parse("rollbar", fixture("rollbar_reactivated_item"))[0].severity == "critical"  # level as a name
    assert parse("rollbar", fixture("rollbar_deploy_production"))[0].deploy["revision"].startswith("4f2a9c1d")


@pytest.mark.parametrize(("priority", "expected"), [
    (1, "P1"), (3, "P3"), ("P2", "P2"), ("p4", "P4"), ("5", "P5"), (0, None), (9, None), ("P9", None),
    (True, None), (None, None), ([], None), (2.0, None),
])
def test_opsgenie_priority(priority, expected):
    assert og.severity(priority) == expected


@pytest.mark.parametrize(("level", "expected"), [
    (40, "error"), (50, "critical"), (30, "warning"), ("error", "error"), ("CRITICAL", "critical"),
    ("warn", "warning"), (45, None), ("loud", None), (None, None), (True, None),
])
def test_rollbar_level(level, expected):
    assert rb.level(level) == expected


@pytest.mark.parametrize(("source", "payload", "message"), [
    ("opsgenie", {}, "action"),
    ("opsgenie", {"action": "Create"}, "'alert' must be an object"),
    ("opsgenie", {"action": "Create", "alert": {"message": "x"}}, "alias"),
    ("opsgenie", {"action": "Escalate", "alert": {}}, "alertId"),
    ("rollbar", {"data": {}}, "event_name"),
    ("rollbar", {"event_name": "new_item"}, "'data' must be an object"),
    ("rollbar", {"event_name": "new_item", "data": {"item": {"id": "x1"}}}, "data.item.id"),
    ("rollbar", {"event_name": "occurrence", "data": {"item": []}}, "data.item"),
    ("rollbar", {"event_name": "deploy", "data": {}}, "data.deploy"),
    ("rollbar", [1, 2], "JSON object"),
])
def test_unreadable_shapes_raise_a_clear_parse_error(source, payload, message):
    with pytest.raises(ParseError, match=message):
        parse(source, payload)


def test_unknown_actions_are_ignored_not_rejected():
    assert parse("opsgenie", {"action": "TestAction", "alert": {"alertId": "x"}})[0].kind == Kind.IGNORE
    assert parse("rollbar", {"event_name": "reactivated"})[0].kind == Kind.IGNORE


def test_redaction_of_secrets():
    payload = fixture("rollbar_new_item_production")
    assert rb.redact(payload)
    occurrence = payload["data"]["item"]["last_occurrence"]
    assert occurrence["metadata"]["access_token"] == REDACTED
    assert occurrence["request"]["headers"]["Cookie"] == REDACTED
    assert occurrence["request"]["headers"]["User-Agent"] == "curl/8"
    escalate = fixture("opsgenie_escalate_with_secret_header")
    assert og.redact(escalate) and escalate["headers"] == {"X-Incidents-Token": REDACTED}
    assert not og.redact(fixture("opsgenie_create_p1"))


def test_hostile_values_are_cleaned():
    event = parse("opsgenie", {"action": "Create", "alert": {
        "alias": "a" * 600, "message": "nul\x00 and \ud800 surrogate", "createdAt": 10**30, "priority": 10**100}})[0]
    assert len(event.fingerprint) <= 255 and event.fingerprint.startswith("sha256:")
    assert "\x00" not in event.title and "\ud800" not in event.title
    assert event.occurred_at is None and event.severity is None
    bad_link = parse("rollbar",
                     {"event_name": "new_item", "data": {"url": "javascript:alert(1)", "item": {"id": 1}}})[0]
    assert bad_link.link is None
