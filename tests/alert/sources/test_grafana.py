"""The Grafana parser and signature check alone: shared samples, unified and legacy bodies, HMAC vectors."""

from __future__ import annotations

import copy
import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from incidents.alert.sources import Kind, ParseError
from incidents.alert.sources import grafana as gf
from tests.alert.conftest import sample, sample_names
from tests.conftest import PAYLOADS

SAMPLES = PAYLOADS / "grafana"
NOW = 1_767_323_045  # 2026-01-02T03:04:05Z
SECRET = "grafana-hmac-secret"
BODY = b'{"receiver":"incidents","status":"firing","alerts":[],"version":"1"}\n'


def parse(payload, options=None):
    return gf.parse(payload, {}, options or {})


def sign(body: bytes, secret: str = SECRET, stamp: str | None = None) -> str:
    message = body if stamp is None else f"{stamp}:".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_every_shared_sample_has_an_expectation():
    assert set(sample_names(SAMPLES)) <= {"legacy_zulip_alert_alerting", "zulip_alert-9-multiple_firing_3alerts",
                                          "zulip_alert-9-resolved"}


def test_firing_sample_is_one_trigger_per_alert():
    events = parse(sample(SAMPLES, "zulip_alert-9-multiple_firing_3alerts"))
    assert [e.kind for e in events] == [Kind.TRIGGER] * 3
    assert [e.fingerprint for e in events] == ["aaafafe0953f0962", "fb31814ac93dbe7d", "6f9cd313db421ef1"]
    assert [e.occurrence for e in events] == ["2022-06-17T01:11:00.782137894Z", "2022-06-17T01:11:00.782137894Z",
                                              "2022-06-17T01:03:00.782137894Z"]
    assert all(e.source == "grafana" and e.event == "firing" and e.bump for e in events)
    assert [e.severity for e in events] == [None, None, None]  # these rules have no severity label
    first = events[0]
    assert first.title == "This is a summary field, failure on badhost.example.com"
    assert first.tags == ("alertname:test-alert", "deploy:prod", "instance:badhost.example.com", "job:rabbitmq",
                          "test:true")
    assert events[2].tags == ("alertname:second-webhook-test", "test:true")
    # No dashboard or panel on these rules: the rule's page is the link.
    assert first.link == "https://grafana.example.com/alerting/grafana/zTjxv_C7k/view"
    assert first.occurred_at == datetime(2022, 6, 17, 1, 11, 0, 782137, tzinfo=UTC)
    lines = first.description.splitlines()
    assert lines[0] == "This is a description"
    assert "Runbook: https://example.com/" in lines
    assert any(line.startswith("Value: [ var='B' labels=") and line.endswith("value=1 ]") for line in lines)
    assert any(line.startswith("Silence: https://grafana.example.com/alerting/silence/new?") for line in lines)
    assert "Grafana: https://grafana.example.com/" in lines
    assert not any(line.startswith(("Dashboard:", "Panel:")) for line in lines)  # empty in the sample


def test_resolved_sample_closes_its_alert():
    (event,) = parse(sample(SAMPLES, "zulip_alert-9-resolved"))
    assert event.kind == Kind.CLOSE and event.event == "resolved"
    assert event.fingerprint == "d8a21484c9c25a60" and not event.bump and event.occurrence is None
    assert event.occurred_at == datetime(2022, 6, 17, 0, 51, 24, 67337, tzinfo=UTC)  # endsAt
    assert event.tags == ("alertname:test-alert", "test:true")
    assert event.link == "https://grafana.example.com/alerting/grafana/zTjxv_C7k/view"


def test_legacy_test_notification_is_ignored():
    (event,) = parse(sample(SAMPLES, "legacy_zulip_alert_alerting"))
    assert event.kind == Kind.IGNORE and "test notification" in event.reason and event.fingerprint is None


def legacy(**changes):
    """The legacy sample as a real rule would send it (the capture is the channel's test: ruleId 0)."""
    payload = sample(SAMPLES, "legacy_zulip_alert_alerting")
    payload.update({"ruleId": 7, "orgId": 2, "ruleName": "High load", "tags": {"severity": "Critical",
                                                                              "environment": "prod"}})
    payload.update(changes)
    return payload


def test_legacy_alerting_and_ok():
    (event,) = parse(legacy())
    assert event.kind == Kind.TRIGGER and event.event == "alerting" and event.bump
    assert event.fingerprint == "grafana-rule:2:7"
    assert event.title == "High load" and event.severity == "critical" and event.environment == "prod"
    assert event.tags == ("environment:prod", "severity:critical")
    assert event.link == "http://localhost:3000/"
    assert event.occurrence is None and event.occurred_at is None  # the legacy body carries no time
    assert event.description.splitlines() == [
        "Someone is testing the alert notification within grafana.", "",
        "High value = 100", "Higher Value = 200", "Rule: http://localhost:3000/",
        "Image: https://grafana.com/assets/img/blog/mixed_styles.png"]
    (closed,) = parse(legacy(state="ok"))
    assert closed.kind == Kind.CLOSE and closed.fingerprint == event.fingerprint and not closed.bump
    (no_data,) = parse(legacy(state="no_data"))
    assert no_data.kind == Kind.TRIGGER


@pytest.mark.parametrize("state", ["paused", "pending", "unknown"])
def test_legacy_states_without_news_are_ignored(state):
    (event,) = parse(legacy(state=state))
    assert event.kind == Kind.IGNORE and repr(state) in event.reason


def test_legacy_without_org_is_the_main_org_and_severity_label_option():
    payload = legacy(tags={"level": "high"})
    del payload["orgId"]
    (event,) = parse(payload, {"severity_label": "level"})
    assert event.fingerprint == "grafana-rule:1:7" and event.severity == "high"


@pytest.mark.parametrize("change", [{"ruleId": "7"}, {"ruleId": None}, {"ruleId": True}, {"state": ""}])
def test_legacy_bodies_missing_their_keys_are_refused(change):
    with pytest.raises(ParseError, match="Grafana legacy"):
        parse(legacy(**change))


def unified(*alerts, **extra):
    return {"receiver": "incidents", "status": "firing", "orgId": 1, "version": "1", "groupKey": "{}:{}",
            "truncatedAlerts": 0, "externalURL": "https://grafana.example.com/", "alerts": list(alerts), **extra}


def galert(status="firing", fp="fp1", **extra):
    return {"status": status, "labels": {"alertname": "High memory usage", "team": "blue", "sev": "critical"},
            "annotations": {"summary": "Memory above 90%", "__dashboardUid__": "abc"},
            "startsAt": "2026-01-02T10:51:03.157076+02:00", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://grafana.example.com/alerting/grafana/abc/view", "fingerprint": fp,
            "silenceURL": "https://grafana.example.com/alerting/silence/new?matcher=a",
            "dashboardURL": "https://grafana.example.com/d/abc", "panelURL": "https://grafana.example.com/d/abc?viewPanel=2",
            "values": {"B": 92.34567891, "C": 1}, "valueString": "[ var='B' value=92.3 ]", **extra}


def test_unified_values_urls_and_the_panel_as_link():
    resolved = galert("resolved", "fp2", endsAt="2026-01-02T09:00:00Z")
    events = parse(unified(galert(), resolved), {"severity_label": "sev"})
    assert [(e.kind, e.fingerprint) for e in events] == [(Kind.TRIGGER, "fp1"), (Kind.CLOSE, "fp2")]
    first = events[0]
    assert first.link == "https://grafana.example.com/d/abc?viewPanel=2"  # the graph beats the rule
    assert first.severity == "critical" and first.occurrence == "2026-01-02T10:51:03.157076+02:00"
    assert first.occurred_at == datetime(2026, 1, 2, 8, 51, 3, 157076, tzinfo=UTC)
    lines = first.description.splitlines()
    assert "Values: B=92.3457, C=1" in lines and not any(line.startswith("Value:") for line in lines)
    for line in ("Rule: https://grafana.example.com/alerting/grafana/abc/view",
                 "Dashboard: https://grafana.example.com/d/abc",
                 "Panel: https://grafana.example.com/d/abc?viewPanel=2",
                 "Silence: https://grafana.example.com/alerting/silence/new?matcher=a"):
        assert line in lines
    assert "__dashboardUid__" not in first.description
    assert events[1].occurred_at == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


def test_unified_truncated_alerts_and_grafana_test_button():
    test_alert = galert(fp="t1", labels={"alertname": "TestAlert", "instance": "Grafana"},
                        annotations={"summary": "Notification test"})
    events = parse(unified(test_alert, galert(fp="real"), truncatedAlerts=1))
    assert [e.kind for e in events] == [Kind.IGNORE, Kind.TRIGGER]
    assert "test notification" in events[0].reason and "1 more alert of this group" in events[0].reason
    custom = galert(fp="t2", labels={"alertname": "TestAlert", "instance": "Grafana", "team": "db"},
                    annotations={"summary": "Notification test"})
    assert parse(unified(custom))[0].kind == Kind.TRIGGER  # a customised test alert is the user's own


@pytest.mark.parametrize(("payload", "message"), [
    (unified(galert(), version="4"), "alertmanager integration"),
    (unified(galert(), version="2"), "version '2' is not supported"),
    ({"text": "custom template"}, "Neither a Grafana"),
    (unified(alerts={}), "'alerts' must be a list"),
])
def test_other_shapes_are_refused(payload, message):
    with pytest.raises(ParseError, match=message):
        parse(payload)


def test_redact():
    payload = unified(galert(labels={"alertname": "x", "password": "hunter2"}))
    kept = copy.deepcopy(payload)
    assert gf.redact(payload) and payload["alerts"][0]["labels"]["password"] == "[redacted]"
    kept["alerts"][0]["labels"]["password"] = "[redacted]"
    assert payload == kept
    assert not gf.redact(sample(SAMPLES, "zulip_alert-9-multiple_firing_3alerts"))


def test_default_rules_have_the_rules_shape():
    from incidents.alert.services.rules import validate_rules

    assert validate_rules(gf.DEFAULT_RULES) == gf.DEFAULT_RULES
    assert "X-Grafana-Alerting-Signature" in gf.SETUP and "X-Grafana-Alerting-Timestamp" in gf.SETUP


# ---- verify: vectors computed here from the documented scheme, and one literal ----

def test_body_signature_verifies():
    headers = {"x-grafana-alerting-signature": sign(BODY)}
    assert gf.verify(BODY, headers, SECRET, NOW) is None


def test_literal_vector():
    # HMAC-SHA256(key "secret", "1767323045:" + b'{"a":1}'), computed with `openssl dgst -sha256 -hmac secret`.
    literal = "407431d09039383e35d7681dc4c7325a378e24bdb275946b0714c212e5acac53"
    assert sign(b'{"a":1}', "secret", "1767323045") == literal
    headers = {"x-grafana-alerting-signature": literal, "x-grafana-alerting-timestamp": "1767323045"}
    assert gf.verify(b'{"a":1}', headers, "secret", NOW) is None


def test_timestamped_signature_verifies_within_tolerance():
    stamp = str(NOW - 200)
    headers = {"x-grafana-alerting-signature": sign(BODY, stamp=stamp), "x-grafana-alerting-timestamp": stamp}
    assert gf.verify(BODY, headers, SECRET, NOW) is None
    assert gf.verify(BODY, headers, SECRET, NOW + 100) is None  # 300 s: the edge is still fresh


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_stale_or_future_signed_timestamp_is_refused(age):
    stamp = str(NOW - age)
    headers = {"x-grafana-alerting-signature": sign(BODY, stamp=stamp), "x-grafana-alerting-timestamp": stamp}
    assert "Stale" in gf.verify(BODY, headers, SECRET, NOW)


def test_the_older_default_header_name_is_read_too():
    assert gf.verify(BODY, {"x-grafana-alert-signature": sign(BODY)}, SECRET, NOW) is None


def test_uppercase_hex_is_accepted():
    assert gf.verify(BODY, {"x-grafana-alerting-signature": sign(BODY).upper()}, SECRET, NOW) is None


@pytest.mark.parametrize("headers", [
    {},
    {"x-grafana-alerting-signature": ""},
    {"x-grafana-alerting-signature": sign(BODY, "another-secret")},
    {"x-grafana-alerting-signature": sign(BODY[:-1])},  # one byte less
    {"x-grafana-alerting-signature": "sha256=" + sign(BODY)},  # Grafana sends no prefix
    {"x-grafana-alerting-signature": sign(BODY)[:-1]},
    {"x-grafana-alerting-signature": "é" * 64},
    # The body alone signed, but a timestamp added on the way: the signed message is then "<ts>:" + body.
    {"x-grafana-alerting-signature": sign(BODY), "x-grafana-alerting-timestamp": str(NOW)},
    {"x-grafana-alerting-signature": sign(BODY, stamp=str(NOW)), "x-grafana-alerting-timestamp": f" {NOW}x"},
    {"x-grafana-alerting-signature": sign(BODY, stamp="-1"), "x-grafana-alerting-timestamp": "-1"},
])
def test_wrong_signatures_are_refused(headers):
    reason = gf.verify(BODY, headers, SECRET, NOW)
    assert reason and SECRET not in reason


def test_an_empty_secret_verifies_nothing():
    assert gf.verify(BODY, {"x-grafana-alerting-signature": sign(BODY, "")}, "", NOW) is not None


def test_a_changed_byte_fails():
    headers = {"x-grafana-alerting-signature": sign(BODY)}
    tampered = BODY.replace(b"firing", b"firinG")
    assert gf.verify(tampered, headers, SECRET, NOW) is not None
