"""PagerDuty V3 parser and signature: every shared sample, each handled event type, the known-answer vector."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import pytest

from incidents.alert.services.rules import validate_rules
from incidents.alert.sources import pagerduty as pd
from incidents.alert.sources.base import Kind, ParseError
from tests.conftest import PAYLOADS

SAMPLES = PAYLOADS / "pagerduty"
VECTOR = SAMPLES / "go-pagerduty_signature_vector.txt"
VECTOR_BODY = SAMPLES / "go-pagerduty_signature_vector_body.json"

# name -> (kind, fingerprint, title, severity, link, dedup_key, actor, tags)
EXPECTED = {
    "zulip_incident.triggered_v3": (
        Kind.TRIGGER, "PFQZPSY", "Test Incident 3", "high", "https://pig208.pagerduty.com/incidents/PFQZPSY",
        "01BZYIL05THJDFF2Y08X9SVMTU", "PIG 208", ("service:pig208", "urgency:high")),
    "zulip_incident.acknowledged_v3": (
        Kind.ACKNOWLEDGE, "PQ1K5C8", "Test Incident", "high", "https://pig208.pagerduty.com/incidents/PQ1K5C8",
        "01BZYK8N47N5JG55J1EEEHPEJI", "PIG 208", ("service:pig208", "urgency:high")),
    "zulip_incident.resolved_v3": (
        Kind.CLOSE, "PCPZE64", "Test Incident", "high", "https://pig208.pagerduty.com/incidents/PCPZE64",
        "01BZYH1JJY09P9LEIST8HG2PMN", "PIG 208", ("service:pig208", "urgency:high")),
    "go-pagerduty_signature_vector_body": (
        Kind.INFO, "PGR0VU2", "A little bump in the road", "P1", "https://acme.pagerduty.com/incidents/PGR0VU2",
        "01BWDWL3NYY7LUFPZCC28QUCMK", "Tenex Engineer",
        ("service:api-service", "urgency:high", "team:engineering")),
}


def load(name: str) -> dict:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared samples not present at {SAMPLES}")
    return json.loads((SAMPLES / f"{name}.json").read_text())


def parse_one(payload: dict):
    events = pd.parse(payload, {}, {})
    assert len(events) == 1
    return events[0]


def incident_event(event_type: str, **data) -> dict:
    """A V3 body in the documented shape, written by hand (not a shared sample)."""
    incident = {
        "id": "PABC123", "type": "incident", "html_url": "https://acme.pagerduty.com/incidents/PABC123",
        "number": 42, "status": "triggered", "title": "Checkout latency above SLO",
        "service": {"id": "PSVC1", "summary": "Checkout", "type": "service_reference"},
        "assignees": [{"id": "PU1", "summary": "Ada Lovelace", "type": "user_reference"}],
        "escalation_policy": {"id": "PEP1", "summary": "Checkout on-call", "type": "escalation_policy_reference"},
        "teams": [{"id": "PT1", "summary": "Payments Team", "type": "team_reference"}],
        "priority": None, "urgency": "low",
    }
    incident.update(data)
    return {"event": {"id": f"01EVT{event_type.split('.')[-1].upper()[:8]}", "event_type": event_type,
                      "resource_type": "incident", "occurred_at": "2024-05-01T10:00:00.000Z",
                      "agent": {"id": "PU2", "summary": "Grace Hopper", "type": "user_reference"},
                      "client": None, "data": incident}}


def test_every_shared_sample_has_an_expectation():
    names = {p.stem for p in SAMPLES.glob("*.json")} if SAMPLES.is_dir() else set()
    assert names <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_samples(name):
    kind, fp, title, severity, link, dedup, actor, tags = EXPECTED[name]
    event = parse_one(load(name))
    assert (event.source, event.kind, event.fingerprint, event.external_id) == ("pagerduty", kind, fp, fp)
    assert (event.title, event.severity, event.link, event.dedup_key, event.actor) == (
        title, severity, link, dedup, actor)
    assert event.tags == tags
    assert event.bump is (kind == Kind.TRIGGER)
    assert event.occurred_at is not None and event.occurred_at.tzinfo is not None
    assert event.event == load(name)["event"]["event_type"]


def test_sample_details():
    triggered = parse_one(load("zulip_incident.triggered_v3"))
    assert triggered.occurred_at.isoformat() == "2021-06-04T13:35:29.781000+00:00"
    assert triggered.reason == "" and triggered.note is None
    priority = parse_one(load("go-pagerduty_signature_vector_body"))
    assert priority.reason == "PagerDuty: priority set to P1 by Tenex Engineer"


@pytest.mark.parametrize(("event_type", "kind"), [
    ("incident.triggered", Kind.TRIGGER), ("incident.acknowledged", Kind.ACKNOWLEDGE),
    ("incident.unacknowledged", Kind.UNACKNOWLEDGE), ("incident.resolved", Kind.CLOSE),
    ("incident.reassigned", Kind.INFO), ("incident.escalated", Kind.ESCALATE),
    ("incident.priority_updated", Kind.INFO), ("incident.reopened", Kind.REACTIVATE),
])
def test_incident_event_types(event_type, kind):
    event = parse_one(incident_event(event_type))
    assert (event.kind, event.fingerprint, event.external_id) == (kind, "PABC123", "PABC123")
    assert event.title == "Checkout latency above SLO" and event.severity == "low"
    assert event.dedup_key.startswith("01EVT") and event.actor == "Grace Hopper"
    assert event.tags == ("service:checkout", "urgency:low", "team:payments-team")
    assert event.bump is (kind == Kind.TRIGGER)  # a reopen is someone's action, not another occurrence


def test_info_and_escalate_reasons():
    assert parse_one(incident_event("incident.reassigned")).reason == (
        "PagerDuty: reassigned to Ada Lovelace by Grace Hopper")
    assert parse_one(incident_event("incident.escalated")).reason == (
        "PagerDuty: escalated (Checkout on-call) to Ada Lovelace")
    nobody = parse_one(incident_event("incident.reassigned", assignees=[]))
    assert "reassigned to nobody" in nobody.reason


def test_priority_updated_carries_the_new_severity():
    body = incident_event("incident.priority_updated", priority={"id": "PP2", "summary": "P2",
                                                                 "type": "priority_reference"})
    event = parse_one(body)
    assert event.severity == "P2" and event.reason == "PagerDuty: priority set to P2 by Grace Hopper"
    cleared = parse_one(incident_event("incident.priority_updated", urgency=None))
    assert cleared.severity is None and "priority set to none" in cleared.reason


def test_annotated_is_a_note_on_the_referenced_incident():
    body = {"event": {
        "id": "01NOTE", "event_type": "incident.annotated", "resource_type": "incident",
        "occurred_at": "2024-05-01T10:05:00Z", "agent": {"summary": "Grace Hopper", "type": "user_reference"},
        "data": {"id": "PNOTE1", "type": "incident_note", "content": "Rolled back the deploy.", "trimmed": False,
                 "incident": {"id": "PABC123", "type": "incident_reference", "summary": "[#42] Checkout latency",
                              "html_url": "https://acme.pagerduty.com/incidents/PABC123"}}}}
    event = parse_one(body)
    assert (event.kind, event.fingerprint, event.note) == (Kind.NOTE, "PABC123", "Rolled back the deploy.")
    assert event.link == "https://acme.pagerduty.com/incidents/PABC123" and event.dedup_key == "01NOTE"
    assert event.title == "[#42] Checkout latency" and event.severity is None and event.tags == ()


@pytest.mark.parametrize("event_type", ["incident.responder.added", "incident.status_update_published",
                                        "service.created", "pagey.ping"])
def test_unknown_events_are_ignored(event_type):
    body = incident_event("incident.triggered")
    body["event"]["event_type"] = event_type
    event = parse_one(body)
    assert event.kind == Kind.IGNORE and event.event == event_type and "ignored" in event.reason
    assert event.fingerprint is None


def test_hostile_values_are_cleaned():
    body = incident_event("incident.triggered", title="line\none\x00", html_url="javascript:alert(1)",
                          urgency="HIGH")
    body["event"]["occurred_at"] = "1970-01-01T00:00:00Z"
    event = parse_one(body)
    assert event.title == "line one\ufffd" and event.link is None and event.occurred_at is None
    assert event.severity == "high"
    body["event"]["occurred_at"] = "2024-05-01T10:00:00"  # naive: no zone, no guess
    assert parse_one(body).occurred_at is None
    assert parse_one(incident_event("incident.triggered", title="", number=7)).title == "PagerDuty incident #7"


@pytest.mark.parametrize("mutate", [
    lambda b: b.pop("event"),
    lambda b: b.update(event="incident.triggered"),
    lambda b: b["event"].pop("event_type"),
    lambda b: b["event"].update(event_type=3),
    lambda b: b["event"].update(data=None),
    lambda b: b["event"]["data"].pop("id"),
    lambda b: b["event"]["data"].update(id="../../etc"),
    lambda b: b["event"].update(event_type="incident.annotated"),  # a note without its incident reference
])
def test_wrong_shapes_raise(mutate):
    body = incident_event("incident.triggered")
    mutate(body)
    with pytest.raises(ParseError):
        pd.parse(body, {}, {})


def test_redact_blanks_secret_looking_keys():
    body = incident_event("incident.triggered")
    body["event"]["data"]["custom_fields"] = {"api_key": "abc123", "region": "eu"}
    original = copy.deepcopy(body)
    assert pd.redact(body) is True
    assert body["event"]["data"]["custom_fields"] == {"api_key": "[redacted]", "region": "eu"}
    assert pd.redact(original["event"]["data"]["service"]) is False


# --- signatures ---------------------------------------------------------------------------------------------

def vector() -> tuple[bytes, str, str, str]:
    if not VECTOR.is_file():
        pytest.skip(f"shared samples not present at {SAMPLES}")
    fields = dict(line.split("=", 1) for line in VECTOR.read_text().splitlines()
                  if line and not line.startswith("#"))
    return (VECTOR_BODY.read_bytes(), fields["secret"], fields["X-PagerDuty-Signature (valid)"],
            fields["X-PagerDuty-Signature (mismatch case in test)"])


def headers(signature: str) -> dict[str, str]:
    return {"x-pagerduty-signature": signature}


def test_known_answer_vector_passes():
    body, secret, valid, _ = vector()
    assert pd.verify(body, headers(valid), secret, 0.0) is None
    # The vector is what the scheme says: hex HMAC-SHA256 of the raw body.
    assert valid == "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_one_byte_changed_fails():
    body, secret, valid, _ = vector()
    for changed in (body[:-1] + b" ", body.replace(b"P1", b"P2", 1), body + b"\n"):
        assert pd.verify(changed, headers(valid), secret, 0.0) is not None
    assert pd.verify(body, headers(valid), secret[:-1] + "x", 0.0) is not None
    flipped = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    assert pd.verify(body, headers(flipped), secret, 0.0) is not None


def test_mismatch_case_of_the_vector_fails():
    body, secret, _, mismatch = vector()
    assert pd.verify(body, headers(mismatch), secret, 0.0) is not None


def test_any_of_several_signatures_during_rotation():
    body, secret, valid, mismatch = vector()
    assert pd.verify(body, headers(f"{mismatch},{valid}"), secret, 0.0) is None
    assert pd.verify(body, headers(f"{valid}, {mismatch}"), secret, 0.0) is None
    assert pd.verify(body, headers(f"{mismatch},{mismatch}"), secret, 0.0) is not None
    assert pd.verify(body, headers(valid.upper().replace("V1=", "v1=")), secret, 0.0) is None  # hex case


@pytest.mark.parametrize("signature", ["", "v0=abc", "sha256=deadbeef", "v1=", "v1=zz\u00e9", ",,,"])
def test_missing_or_malformed_signatures_fail_without_raising(signature):
    body, secret, _, _ = vector()
    reason = pd.verify(body, headers(signature), secret, 0.0)
    assert reason and secret not in reason


def test_missing_header_and_empty_secret():
    body, secret, valid, _ = vector()
    assert pd.verify(body, {}, secret, 0.0) == "missing X-PagerDuty-Signature"
    assert pd.verify(body, headers(valid), "", 0.0) is not None


def test_module_contract():
    assert pd.LABEL == "PagerDuty" and "X-Incidents-Token" in pd.SETUP
    assert validate_rules(pd.DEFAULT_RULES) == pd.DEFAULT_RULES
    assert {e for rule in pd.DEFAULT_RULES for e in rule["events"]} <= set(pd.EVENTS)
