"""Sentry integration-platform parser and signature: the shared issue captures, every handled resource and action,
and vectors computed from the documented scheme (hex HMAC-SHA256 of the raw body with the client secret)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import pytest

from incidents.alert.services.rules import validate_rules
from incidents.alert.sources import sentry
from incidents.alert.sources.base import REDACTED, Kind, ParseError
from tests.conftest import PAYLOADS

SAMPLES = PAYLOADS / "sentry"
ISSUE = {"sentry-hook-resource": "issue"}
ALERT = {"sentry-hook-resource": "event_alert"}

# sample -> (event, kind, fingerprint, title, severity, occurred_at, dedup_key, actor, tags)
EXPECTED = {
    "zulip_issue_created_for_exception": (
        "issue.created", Kind.TRIGGER, "1635244907", "Exception: Custom exception!", "error",
        "2020-04-28T13:56:05.903736+00:00", "issue.created:1635244907", "Sentry",
        ("project:zulip-integration-testing", "level:error", "platform:python")),
    "zulip_issue_resolved": (
        "issue.resolved", Kind.CLOSE, "1638821441", "Exception: program has entered an invalid state.", "error",
        None, None, "Hemanth V. Alluri",
        ("project:zulip-integration-testing", "level:error", "platform:python")),
}


def load(name: str) -> dict:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples not present at {SAMPLES}")
    return json.loads((SAMPLES / f"{name}.json").read_text())


def one(payload: dict, headers: dict | None = None):
    events = sentry.parse(payload, ISSUE if headers is None else headers, {})
    assert isinstance(events, list) and len(events) == 1
    return events[0]


def issue_body(action: str, **issue) -> dict:
    """An `issue` webhook in the documented shape, written by hand."""
    body = {"action": action, "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
            "actor": {"type": "user", "id": 1, "name": "colleen"},
            "data": {"issue": {"id": "1170820242", "shortId": "FRONT-END-9", "title": "ReferenceError: x",
                               "culprit": "?(runner)", "level": "error", "platform": "javascript",
                               "status": "unresolved", "substatus": "ongoing",
                               "firstSeen": "2019-08-19T20:58:37.391000Z",
                               "web_url": "https://sentry.io/organizations/acme/issues/1170820242/",
                               "url": "https://sentry.io/api/0/issues/1170820242/",
                               "project": {"id": "1", "slug": "front-end", "name": "front-end"}}}}
    body["data"]["issue"].update(issue)
    return body


def alert_body(**event) -> dict:
    """An `event_alert` webhook in the documented shape (trimmed), written by hand."""
    body = {"action": "triggered", "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
            "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
            "data": {"triggered_rule": "Very Important Alert Rule!",
                     "issue_alert": {"title": "Very Important Alert Rule!",
                                     "settings": [{"name": "channel", "value": "#general"}]},
                     "event": {"event_id": "e4874d664c3540c1a32eab185f12c5ab", "issue_id": "1117540176",
                               "title": "ReferenceError: heck is not defined", "culprit": "?(<anonymous>)",
                               "level": "error", "datetime": "2019-08-19T21:06:17.677000Z",
                               "timestamp": 1566248777.677, "project": 1,
                               "issue_url": "https://sentry.io/api/0/issues/1117540176/",
                               "web_url": "https://sentry.io/organizations/test-org/issues/1117540176/events/"
                                          "e4874d664c3540c1a32eab185f12c5ab/",
                               "tags": [["browser", "Chrome 75"], ["environment", "production"],
                                        ["level", "error"], ["release", "web@1.2.3"]],
                               "request": {"headers": [["User-Agent", "Mozilla/5.0"],
                                                       ["Authorization", "Bearer abc"],
                                                       ["Cookie", "session=s3cret"]],
                                           "cookies": "session=s3cret", "query_string": "a=1&token=t0k"}}}}
    body["data"]["event"].update(event)
    return body


def test_every_shared_sample_has_an_expectation():
    names = {p.stem for p in SAMPLES.glob("*.json")} if SAMPLES.is_dir() else set()
    assert names <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_samples(name):
    event_name, kind, fp, title, severity, occurred, dedup, actor, tags = EXPECTED[name]
    event = one(load(name))
    assert (event.source, event.event, event.kind, event.fingerprint, event.external_id) == (
        "sentry", event_name, kind, fp, fp)
    assert (event.title, event.severity, event.dedup_key, event.actor, event.tags) == (
        title, severity, dedup, actor, tags)
    assert (event.occurred_at.isoformat() if event.occurred_at else None) == occurred
    assert event.description == "__main__ in <module>"
    assert event.link is None  # these 2020 captures carry no web_url nor permalink
    assert event.bump is (kind == Kind.TRIGGER)


def test_shared_samples_without_the_resource_header_read_the_same():
    for name in EXPECTED:
        assert one(load(name), {}) == one(load(name))


@pytest.mark.parametrize(("action", "kind"), [
    ("created", Kind.TRIGGER), ("resolved", Kind.CLOSE), ("assigned", Kind.INFO), ("archived", Kind.INFO),
    ("ignored", Kind.INFO), ("unresolved", Kind.REACTIVATE),
])
def test_issue_actions(action, kind):
    event = one(issue_body(action))
    assert (event.event, event.kind, event.fingerprint) == (f"issue.{action}", kind, "1170820242")
    assert event.link == "https://sentry.io/organizations/acme/issues/1170820242/"
    assert event.tags == ("project:front-end", "level:error", "platform:javascript")
    assert event.bump is (kind == Kind.TRIGGER)
    assert (event.occurred_at is not None) is (kind == Kind.TRIGGER)


def test_issue_reasons():
    assigned = issue_body("assigned")
    assigned["data"]["assignee"] = {"type": "user", "id": "7", "name": "Ada", "email": "ada@example.com"}
    assert one(assigned).reason == "Sentry: assigned to Ada by colleen"
    team = issue_body("assigned", assignedTo={"type": "team", "id": "3", "name": "payments"})
    assert one(team).reason == "Sentry: assigned to payments by colleen"
    archived = one(issue_body("archived", status="ignored", substatus="archived_until_escalating"))
    assert archived.reason == "Sentry: archived (archived_until_escalating) by colleen"
    assert one(issue_body("ignored", substatus=None)).reason == "Sentry: archived by colleen"


def test_a_regression_counts_as_an_occurrence():
    assert one(issue_body("unresolved", substatus="regressed")).bump is True
    assert one(issue_body("unresolved", substatus="escalating")).bump is False


def test_request_id_names_status_changes_and_creation_is_keyed_by_issue():
    headers = {**ISSUE, "request-id": "0c5e2a4e-1d8b-4a51-9a44-1e6f0f6b2c11"}
    assert one(issue_body("resolved"), headers).dedup_key == "request:0c5e2a4e-1d8b-4a51-9a44-1e6f0f6b2c11"
    assert one(issue_body("created"), headers).dedup_key == "issue.created:1170820242"
    assert one(issue_body("resolved"), {**ISSUE, "request-id": "bad id!"}).dedup_key is None


def test_event_alert_triggered():
    event = one(alert_body(), ALERT)
    assert (event.event, event.kind, event.fingerprint, event.external_id) == (
        "event_alert.triggered", Kind.TRIGGER, "1117540176", "1117540176")
    assert event.title == "ReferenceError: heck is not defined" and event.severity == "error"
    assert event.environment == "production" and event.bump is True
    assert event.link == ("https://sentry.io/organizations/test-org/issues/1117540176/events/"
                          "e4874d664c3540c1a32eab185f12c5ab/")
    assert event.occurred_at.isoformat() == "2019-08-19T21:06:17.677000+00:00"
    assert event.occurrence == "e4874d664c3540c1a32eab185f12c5ab"
    assert event.dedup_key == "event_alert:1117540176:e4874d664c3540c1a32eab185f12c5ab:Very Important Alert Rule!"
    assert event.reason == "Sentry: alert rule 'Very Important Alert Rule!' fired"
    assert event.tags == ("level:error", "environment:production", "release:web-1.2.3")
    # Same issue as its `issue` webhooks: one alert.
    assert event.fingerprint == one(issue_body("created", id="1117540176")).fingerprint


def test_event_alert_identity():
    first = one(alert_body(), ALERT)
    other_rule = alert_body()
    other_rule["data"]["triggered_rule"] = "Another rule"
    second = one(other_rule, ALERT)
    assert first.occurrence == second.occurrence and first.dedup_key != second.dedup_key
    later = one(alert_body(event_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0"), ALERT)
    assert later.occurrence != first.occurrence and later.dedup_key != first.dedup_key
    no_id = one(alert_body(event_id=None, datetime=None), ALERT)
    assert no_id.dedup_key is None and no_id.occurrence is None
    assert no_id.occurred_at.isoformat() == "2019-08-19T21:06:17.677000+00:00"  # epoch `timestamp`


def test_event_alert_fallbacks():
    event = one(alert_body(title="", message="", level="FATAL", tags=[["environment", "staging"]]), ALERT)
    assert event.title == "Sentry issue 1117540176" and event.severity == "fatal"
    assert event.environment == "staging" and event.tags == ("level:fatal", "environment:staging")
    assert one(alert_body(level="verbose", tags=[]), ALERT).severity is None


@pytest.mark.parametrize(("headers", "action"), [
    ({"sentry-hook-resource": "installation"}, "created"),
    ({"sentry-hook-resource": "metric_alert"}, "critical"),
    ({"sentry-hook-resource": "comment"}, "created"),
    ({"sentry-hook-resource": "error"}, "created"),
    (ISSUE, "unassigned"),
    (ALERT, "resolved"),
])
def test_unknown_resources_and_actions_are_ignored(headers, action):
    body = issue_body(action) if headers is ISSUE else alert_body()
    body["action"] = action
    event = one(body, headers)
    assert event.kind == Kind.IGNORE and "ignored" in event.reason and event.fingerprint is None


def test_installation_without_header_and_legacy_plugin_are_ignored():
    install = {"action": "created", "data": {"installation": {"uuid": "x"}}, "installation": {"uuid": "x"}}
    assert one(install, {}).kind == Kind.IGNORE
    legacy = {"id": "1", "project": "web", "project_slug": "web", "level": "error", "message": "boom",
              "url": "https://sentry.io/acme/web/issues/1/?referrer=webhooks_plugin", "triggering_rules": []}
    event = one(legacy, {})
    assert event.kind == Kind.IGNORE and "legacy" in event.reason


def test_hostile_values_are_cleaned():
    event = one(issue_body("created", title="two\nlines\x00", web_url="javascript:alert(1)",
                           firstSeen="2019-08-19T20:58:37"))
    assert event.title == "two lines\ufffd" and event.link is None and event.occurred_at is None


@pytest.mark.parametrize(("body", "headers"), [
    ({}, ISSUE),
    ({"action": "created"}, ISSUE),
    ({"action": "created", "data": []}, ISSUE),
    ({"action": "created", "data": {}}, ISSUE),
    ({"action": "created", "data": {"issue": "1"}}, ISSUE),
    ({"action": "created", "data": {"issue": {"title": "no id"}}}, ISSUE),
    ({"action": "created", "data": {"issue": {"id": "../x"}}}, ISSUE),
    ({"action": "triggered", "data": {}}, ALERT),
    ({"action": "triggered", "data": {"event": {"title": "no issue"}}}, ALERT),
])
def test_wrong_shapes_raise(body, headers):
    with pytest.raises(ParseError):
        sentry.parse(body, headers, {})


def test_redact_blanks_captured_secrets():
    body = alert_body()
    body["data"]["issue_alert"]["settings"].append({"name": "api_key", "value": "k3y"})
    assert sentry.redact(body) is True
    request = body["data"]["event"]["request"]
    assert request["headers"] == [["User-Agent", "Mozilla/5.0"], ["Authorization", REDACTED], ["Cookie", REDACTED]]
    assert request["cookies"] == REDACTED
    assert "t0k" not in request["query_string"] and "a=1" in request["query_string"]
    assert body["data"]["issue_alert"]["settings"] == [{"name": "channel", "value": "#general"},
                                                       {"name": "api_key", "value": REDACTED}]
    assert body["data"]["event"]["tags"][1] == ["environment", "production"]
    again = copy.deepcopy(body)
    assert sentry.redact(again) is False and again == body
    assert sentry.redact(load("zulip_issue_resolved")) is False


# --- signatures ---------------------------------------------------------------------------------------------

SECRET = "7d2f1c0e9b8a4c6d5e3f2a1b0c9d8e7f"
BODY = b'{"action":"created","data":{"issue":{"id":"1170820242"}}}'
# Computed once with Python's hmac from the documented scheme; fixed here so the scheme cannot drift unseen.
LITERAL = "c00e33626a7b2f09c1467bedc699bc22be52b4b457ecadceedcdc4def673cbdd"


def signed(signature: str, **extra: str) -> dict[str, str]:
    return {"sentry-hook-resource": "issue", "sentry-hook-signature": signature, **extra}


def test_hard_coded_vector():
    assert sentry.verify(BODY, signed(LITERAL), SECRET, 0.0) is None


def test_vector_computed_from_the_documented_scheme():
    body = json.dumps(load("zulip_issue_created_for_exception"), indent=2).encode()
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sentry.verify(body, signed(expected), SECRET, 1e9) is None
    assert sentry.verify(body, signed(expected.upper()), SECRET, 1e9) is None


def test_one_byte_changed_fails():
    assert sentry.verify(BODY.replace(b"242", b"243"), signed(LITERAL), SECRET, 0.0) is not None
    assert sentry.verify(BODY + b" ", signed(LITERAL), SECRET, 0.0) is not None
    assert sentry.verify(BODY, signed(LITERAL), SECRET + "x", 0.0) is not None
    assert sentry.verify(BODY, signed(LITERAL[:-1] + "e"), SECRET, 0.0) is not None


def test_the_timestamp_is_not_a_reason_to_refuse():
    ancient = signed(LITERAL, **{"sentry-hook-timestamp": "1"})
    assert sentry.verify(BODY, ancient, SECRET, 2_000_000_000.0) is None
    assert sentry.verify(BODY, signed(LITERAL), SECRET, 2_000_000_000.0) is None  # no timestamp at all
    garbage = signed(LITERAL, **{"sentry-hook-timestamp": "yesterday"})
    assert sentry.verify(BODY, garbage, SECRET, 0.0) is None


@pytest.mark.parametrize("signature", ["", "sha256=" + LITERAL, LITERAL[:32], "zz\u00e9", " "])
def test_missing_or_malformed_signatures_fail_without_raising(signature):
    reason = sentry.verify(BODY, signed(signature), SECRET, 0.0)
    assert reason and SECRET not in reason


def test_missing_header_and_empty_secret():
    assert sentry.verify(BODY, {}, SECRET, 0.0) == "missing Sentry-Hook-Signature"
    assert sentry.verify(BODY, signed(LITERAL), "", 0.0) is not None


def test_module_contract():
    assert sentry.LABEL == "Sentry" and "?token=" in sentry.SETUP
    assert validate_rules(sentry.DEFAULT_RULES) == sentry.DEFAULT_RULES
