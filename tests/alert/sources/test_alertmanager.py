"""The Alertmanager parser alone: shared samples, groups mixing firing and resolved, versions, options, redact."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from incidents.alert.sources import Kind, ParseError
from incidents.alert.sources import alertmanager as am
from incidents.alert.sources.base import rfc3339
from tests.alert.conftest import sample, sample_names
from tests.conftest import PAYLOADS

SAMPLES = PAYLOADS / "alertmanager"
CPU_QUERY = ("http://cobalt:9090/graph?g0.expr=avg+by%28host%29+%28sensors_temp_input%7Bfeature%3D~%22core_%5B0-9"
             "%5D%2B%22%7D%29+%3E+15&g0.tab=1")
CPU_TAGS = ("alertname:high-cpu-temperature", "host:andromeda", "severity:critical")
STARTS = "2020-02-06T00:17:58.432911368Z"


def parse(payload, options=None):
    return am.parse(payload, {}, options or {})


def alert(status="firing", fp="f1", starts="2026-01-02T03:04:05Z", ends="0001-01-01T00:00:00Z", **labels):
    return {"status": status, "labels": {"alertname": "Disk full", **labels},
            "annotations": {"summary": f"Disk full ({fp})"}, "startsAt": starts, "endsAt": ends,
            "generatorURL": "https://prom.example.com/graph?g0.expr=disk", "fingerprint": fp}


def group(*alerts, **extra):
    return {"version": "4", "groupKey": "{}:{alertname=\"Disk full\"}", "status": "firing", "receiver": "incidents",
            "externalURL": "https://am.example.com", "alerts": list(alerts), **extra}


def test_every_shared_sample_has_an_expectation():
    assert set(sample_names(SAMPLES)) <= {"zulip_alert_firing_2alerts", "zulip_single_alert_resolved"}


def test_firing_sample_is_one_trigger_per_alert():
    events = parse(sample(SAMPLES, "zulip_alert_firing_2alerts"))
    assert [e.kind for e in events] == [Kind.TRIGGER, Kind.TRIGGER]
    assert [e.fingerprint for e in events] == ["a1bc48475b20e73d", "c2ea85182f28cbd9"]
    assert [e.occurrence for e in events] == [STARTS, STARTS]
    first = events[0]
    assert first.source == "alertmanager" and first.event == "firing" and first.bump
    assert first.title == "High CPU core temperature"
    assert first.severity == "critical" and first.environment is None
    assert first.tags == CPU_TAGS
    assert first.link == CPU_QUERY
    assert first.occurred_at == datetime(2020, 2, 6, 0, 17, 58, 432911, tzinfo=UTC)
    assert first.description.startswith("CPU core temperature is 34.75C\n\n")
    assert "topic: andromeda" in first.description  # an annotation without a place of its own
    assert "Alertmanager: http://ops1:9093" in first.description and f"Source: {CPU_QUERY}" in first.description
    assert events[1].description.startswith("CPU core temperature is 17.625C")


def test_resolved_sample_closes_the_same_alert():
    (event,) = parse(sample(SAMPLES, "zulip_single_alert_resolved"))
    assert event.kind == Kind.CLOSE and event.event == "resolved"
    assert event.fingerprint == "a1bc48475b20e73d"
    assert not event.bump and event.occurrence is None  # a resolve ends the episode, it is not one
    assert event.occurred_at is None  # this capture's endsAt is Go's zero time: unset
    assert event.severity == "critical" and event.tags == CPU_TAGS and event.link == CPU_QUERY


def test_a_group_mixing_firing_and_resolved_alerts():
    events = parse(group(alert("firing", "aaa", severity="warning"),
                         alert("resolved", "bbb", ends="2026-01-02T04:00:00.5+01:00", severity="critical"),
                         alert("firing", "ccc", starts="2026-01-02T05:00:00Z")))
    assert [(e.kind, e.fingerprint, e.event) for e in events] == [
        (Kind.TRIGGER, "aaa", "firing"), (Kind.CLOSE, "bbb", "resolved"), (Kind.TRIGGER, "ccc", "firing")]
    assert [e.occurrence for e in events] == ["2026-01-02T03:04:05Z", None, "2026-01-02T05:00:00Z"]
    assert [e.bump for e in events] == [True, False, True]
    assert events[1].occurred_at == datetime(2026, 1, 2, 3, 0, 0, 500000, tzinfo=UTC)  # endsAt, in UTC
    assert [e.severity for e in events] == ["warning", "critical", None]
    assert events[0].title == "Disk full (aaa)"


def test_the_same_alert_re_sent_is_the_same_occurrence_and_a_new_start_is_another():
    first = parse(group(alert(fp="aaa")))[0]
    again = parse(group(alert(fp="aaa")))[0]
    later = parse(group(alert(fp="aaa", starts="2026-01-03T00:00:00Z")))[0]
    assert first.occurrence == again.occurrence != later.occurrence
    assert first.fingerprint == again.fingerprint == later.fingerprint


def test_fingerprint_ignores_the_group_key():
    one = parse(group(alert(fp="aaa")))[0]
    other = parse(group(alert(fp="aaa"), groupKey="{}/{team=\"db\"}:{alertname=\"Disk full\"}"))[0]
    assert one.fingerprint == other.fingerprint == "aaa"


def test_a_missing_fingerprint_is_computed_as_alertmanager_does():
    payload = sample(SAMPLES, "zulip_alert_firing_2alerts")
    del payload["alerts"][0]["fingerprint"]
    assert parse(payload)[0].fingerprint == "a1bc48475b20e73d"  # the value Alertmanager sent for these labels


def test_long_fingerprints_are_hashed_not_cut():
    (event,) = parse(group(alert(fp="x" * 300)))
    assert event.fingerprint.startswith("sha256:") and len(event.fingerprint) <= 255


def test_severity_label_option():
    payload = group(alert(priority="P1", severity="warning"))
    assert parse(payload)[0].severity == "warning"
    assert parse(payload, {"severity_label": "priority"})[0].severity == "p1"
    assert parse(payload, {"severity_label": "missing"})[0].severity is None
    assert parse(payload, {"severity_label": ""})[0].severity == "warning"  # blank: the default label


def test_environment_labels_and_tags():
    (event,) = parse(group(alert(environment="Production", team="Core DB", __internal="x")))
    assert event.environment == "Production"
    assert event.tags == ("alertname:disk-full", "environment:production", "team:core-db")
    assert parse(group(alert(env="staging")))[0].environment == "staging"


def test_title_falls_back_to_alertname_then_fingerprint():
    payload = group(alert(fp="aaa"))
    del payload["alerts"][0]["annotations"]["summary"]
    assert parse(payload)[0].title == "Disk full"
    payload["alerts"][0]["labels"] = {"job": "node"}
    assert parse(payload)[0].title == "Alertmanager alert aaa"


def test_runbook_and_links_are_http_only():
    payload = group(alert(), externalURL="javascript:alert(1)")
    payload["alerts"][0]["annotations"]["runbook_url"] = "https://runbooks.example.com/disk"
    payload["alerts"][0]["generatorURL"] = "javascript:alert(1)"
    (event,) = parse(payload)
    assert event.link is None
    assert "Runbook: https://runbooks.example.com/disk" in event.description
    assert "javascript" not in event.description


def test_external_url_is_the_link_without_a_generator_url():
    payload = group(alert())
    del payload["alerts"][0]["generatorURL"]
    assert parse(payload)[0].link == "https://am.example.com"


def test_truncated_alerts_are_recorded_on_the_first_event():
    events = parse(group(alert(fp="a"), alert(fp="b"), truncatedAlerts=7))
    assert events[0].description.endswith("Alertmanager left 7 more alerts of this group out of the notification "
                                          "(max_alerts).")
    assert "max_alerts" not in events[1].description
    assert "max_alerts" not in parse(group(alert(), truncatedAlerts=0))[0].description


def test_an_empty_group_is_one_ignore():
    (event,) = parse(group(truncatedAlerts=3))
    assert event.kind == Kind.IGNORE and "without alerts" in event.reason and "3 more alerts" in event.reason


def test_an_unknown_alert_status_is_ignored_alone():
    events = parse(group(alert("pending", "a"), alert("firing", "b")))
    assert [e.kind for e in events] == [Kind.IGNORE, Kind.TRIGGER]
    assert "'pending'" in events[0].reason


def test_unset_and_bad_times_are_none():
    assert rfc3339("0001-01-01T00:00:00Z") is None
    assert rfc3339("2026-01-02") is None  # RFC 3339 needs the time and the offset
    assert rfc3339("2026-01-02T03:04:05") is None
    assert rfc3339("2026-13-02T03:04:05Z") is None
    assert rfc3339(1767323045) is None
    assert rfc3339("2026-01-02t03:04:05.123456789z") == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    (event,) = parse(group(alert(starts="garbage")))
    assert event.occurred_at is None and event.occurrence is None and event.kind == Kind.TRIGGER


@pytest.mark.parametrize("version", ["1", "3", "4.0", 5])
def test_other_versions_are_refused(version):
    with pytest.raises(ParseError, match="version .* is not supported"):
        parse(group(alert(), version=version))


def test_grafana_bodies_are_pointed_elsewhere():
    with pytest.raises(ParseError, match="grafana integration"):
        parse(group(alert(), version="1"))


@pytest.mark.parametrize("payload", [
    {"action": "Create", "alert": {}},  # OpsGenie
    {"version": "4", "alerts": {"status": "firing"}},
    {"version": "4", "alerts": ["firing"]},
    {"version": "4", "alerts": [{"status": "firing", "labels": {}}]},  # nothing to identify the alert by
])
def test_bodies_of_another_shape_are_refused(payload):
    with pytest.raises(ParseError):
        parse(payload)


def test_hostile_strings_are_cleaned():
    payload = group(alert(fp="a\x00b", severity="crit\x00ical-and-much-longer-than-the-column"))
    payload["alerts"][0]["annotations"]["summary"] = "line one\nline two \ud800"
    (event,) = parse(payload)
    assert "\x00" not in event.fingerprint and "\n" not in event.title and "\ud800" not in event.title
    assert len(event.severity) <= 16


def test_redact_blanks_secret_looking_labels_only():
    payload = group(alert(api_key="hunter2"))
    kept = copy.deepcopy(payload)
    assert am.redact(payload)
    assert payload["alerts"][0]["labels"]["api_key"] == "[redacted]"
    kept["alerts"][0]["labels"]["api_key"] = "[redacted]"
    assert payload == kept
    assert not am.redact(sample(SAMPLES, "zulip_alert_firing_2alerts"))


def test_default_rules_have_the_rules_shape():
    from incidents.alert.services.rules import validate_rules

    assert validate_rules(am.DEFAULT_RULES) == am.DEFAULT_RULES
    assert am.LABEL and "Authorization: Bearer" in am.SETUP
