"""Every shared sample of the sources added for teams leaving Opsgenie, through its real endpoint: Alertmanager,
Grafana, PagerDuty, Sentry and Jira Service Management. Signatures are made with the integration's secret the way
each sender documents; the resulting alerts, incidents and timeline are read back from the database."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import sqlalchemy as sa

from incidents.alert.models import Alert, AlertStatus, Delivery, Outcome
from incidents.extensions import db
from incidents.incident.models import Incident, TimelineEntry
from tests.alert.conftest import make_integration, sample_names
from tests.conftest import PAYLOADS

SECRET = "a-shared-secret-for-tests"
SITE = "https://acme.atlassian.net"


def signature_headers(source: str, raw: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return {"pagerduty": {"X-PagerDuty-Signature": f"v1={digest}"},
            "sentry": {"Sentry-Hook-Signature": digest},
            "grafana": {"X-Grafana-Alerting-Signature": digest}}.get(source, {})


def deliver(client, source: str, token: str, raw: bytes, *, signed: bool = True, via: str = "header", **extra):
    headers = {"Content-Type": "application/json", **(signature_headers(source, raw) if signed else {}), **extra}
    url = f"/webhooks/{source}"
    if via == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    else:
        headers["X-Incidents-Token"] = token
    return client.post(url, data=raw, headers=headers)


def raw_sample(folder: str, name: str) -> bytes:
    path = PAYLOADS / folder / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"shared samples not present at {path.parent}")
    return path.read_bytes()


def alerts(source: str) -> dict[str, Alert]:
    db.session.rollback()  # a fresh snapshot: the writer committed on its own connection
    return {a.fingerprint: a for a in db.session.scalars(sa.select(Alert).where(Alert.source == source))}


def timeline(incident_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(TimelineEntry.text).where(TimelineEntry.incident_id == incident_id)
                                   .order_by(TimelineEntry.id)))


def test_every_shared_sample_has_its_case_here():
    covered = {"alertmanager": {"zulip_alert_firing_2alerts", "zulip_single_alert_resolved"},
               "grafana": {"legacy_zulip_alert_alerting", "zulip_alert-9-multiple_firing_3alerts",
                           "zulip_alert-9-resolved"},
               "pagerduty": {"zulip_incident.acknowledged_v3", "zulip_incident.resolved_v3",
                             "zulip_incident.triggered_v3", "go-pagerduty_signature_vector_body"},
               "sentry": {"zulip_issue_created_for_exception", "zulip_issue_resolved"}}
    for folder, names in covered.items():
        present = set(sample_names(PAYLOADS / folder))
        if not present:
            pytest.skip("shared samples not present")
        assert present == names, f"{folder}: a new sample needs its case in this file"


def test_alertmanager_group_opens_one_alert_per_fingerprint_and_resolves_one(client):
    _row, token = make_integration("alertmanager", "prod-cluster")
    firing = raw_sample("alertmanager", "zulip_alert_firing_2alerts")

    answer = deliver(client, "alertmanager", token, firing, via="bearer")  # what http_config's authorization sends
    assert answer.status_code == 200 and answer.json["outcome"] == "processed"
    found = alerts("alertmanager")
    assert sorted(found) == ["a1bc48475b20e73d", "c2ea85182f28cbd9"]
    assert answer.json["alerts"] == sorted(answer.json["alerts"], key=lambda i: db.session.get(Alert, i).fingerprint)
    for alert in found.values():
        assert (alert.status, alert.severity, alert.occurrence_count) == (AlertStatus.OPEN, "critical", 1)
        assert {"alertname:high-cpu-temperature", "host:andromeda", "severity:critical"} <= set(alert.tags)
        incident = db.session.get(Incident, alert.incident_id)
        assert incident.severity.value == "SEV1" and "alertmanager" in incident.tags
        assert timeline(incident.id)[1] == "Opened from Alertmanager alert: High CPU core temperature"
    first_seen = found["a1bc48475b20e73d"].last_seen_at

    again = deliver(client, "alertmanager", token, firing)  # the repeat interval re-sends the same body
    assert again.status_code == 200 and again.json["outcome"] == "processed"  # not a retry: stored and applied
    repeated = alerts("alertmanager")
    assert [a.occurrence_count for a in repeated.values()] == [1, 1]  # same startsAt: the same occurrence
    assert repeated["a1bc48475b20e73d"].last_seen_at >= first_seen

    resolved = deliver(client, "alertmanager", token, raw_sample("alertmanager", "zulip_single_alert_resolved"))
    assert resolved.status_code == 200 and resolved.json["outcome"] == "processed"
    after = alerts("alertmanager")
    assert after["a1bc48475b20e73d"].status == AlertStatus.RESOLVED
    assert after["c2ea85182f28cbd9"].status == AlertStatus.OPEN
    assert timeline(after["a1bc48475b20e73d"].incident_id)[-1] == "Alertmanager: alert resolved"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 3


def test_alertmanager_refuses_a_wrong_token_and_stores_nothing(client):
    make_integration("alertmanager", "prod-cluster")
    answer = deliver(client, "alertmanager", "whk_not-the-token-at-all-000000", b'{"version": "4"}', via="bearer")
    assert answer.status_code == 401 and answer.json["error"]["code"] == "unauthorized"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0


def test_grafana_unified_group_legacy_test_and_a_resolve(client):
    _row, token = make_integration("grafana", "grafana", secret=SECRET)

    legacy = deliver(client, "grafana", token, raw_sample("grafana", "legacy_zulip_alert_alerting"))
    assert legacy.json["outcome"] == "ignored"
    assert legacy.json["message"] == "Grafana test notification: the integration works."

    group = deliver(client, "grafana", token, raw_sample("grafana", "zulip_alert-9-multiple_firing_3alerts"))
    assert group.json["outcome"] == "processed" and len(group.json["alerts"]) == 3
    found = alerts("grafana")
    assert sorted(found) == ["6f9cd313db421ef1", "aaafafe0953f0962", "fb31814ac93dbe7d"]
    assert all(a.status == AlertStatus.OPEN and a.incident_id is None for a in found.values())  # no severity label
    assert "instance:badhost.example.com" in found["aaafafe0953f0962"].tags

    resolved = deliver(client, "grafana", token, raw_sample("grafana", "zulip_alert-9-resolved"))
    assert resolved.json["outcome"] == "ignored"  # the sample resolves an alert this integration never saw
    assert "d8a21484c9c25a60" in resolved.json["message"]


def test_grafana_with_a_secret_refuses_a_wrong_signature_and_stores_nothing(client):
    _row, token = make_integration("grafana", "grafana", secret=SECRET)
    raw = raw_sample("grafana", "zulip_alert-9-multiple_firing_3alerts")
    forged = deliver(client, "grafana", token, raw, signed=False,
                     **signature_headers("grafana", raw, "not-the-secret"))
    assert forged.status_code == 401
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0


def test_pagerduty_samples_open_acknowledge_and_resolve(client):
    _row, token = make_integration("pagerduty", "pagerduty", secret=SECRET)

    triggered = deliver(client, "pagerduty", token, raw_sample("pagerduty", "zulip_incident.triggered_v3"))
    assert triggered.json["outcome"] == "processed"
    alert = alerts("pagerduty")["PFQZPSY"]
    assert (alert.status, alert.severity, alert.title) == (AlertStatus.OPEN, "high", "Test Incident 3")
    incident = db.session.get(Incident, alert.incident_id)
    assert incident.severity.value == "SEV2" and {"pagerduty", "service:pig208", "urgency:high"} <= set(incident.tags)

    retry = deliver(client, "pagerduty", token, raw_sample("pagerduty", "zulip_incident.triggered_v3"))
    assert retry.json["outcome"] == "duplicate"  # the same event id: a sender retry changes nothing
    assert alerts("pagerduty")["PFQZPSY"].occurrence_count == 1

    acknowledged = deliver(client, "pagerduty", token, raw_sample("pagerduty", "zulip_incident.acknowledged_v3"))
    assert acknowledged.json["outcome"] == "processed"
    assert alerts("pagerduty")["PQ1K5C8"].status == AlertStatus.ACKNOWLEDGED

    resolved = deliver(client, "pagerduty", token, raw_sample("pagerduty", "zulip_incident.resolved_v3"))
    assert resolved.json["outcome"] == "ignored" and "PCPZE64" in resolved.json["message"]


def test_pagerduty_known_answer_vector_passes_through_the_endpoint_and_one_byte_fails(client):
    vector = PAYLOADS / "pagerduty" / "go-pagerduty_signature_vector.txt"
    if not vector.is_file():
        pytest.skip("shared samples not present")
    lines = dict(line.split("=", 1) for line in vector.read_text().splitlines() if "=" in line and line[0] != "#")
    secret, valid = lines["secret"], lines["X-PagerDuty-Signature (valid)"]
    _row, token = make_integration("pagerduty", "vector", secret=secret)
    raw = raw_sample("pagerduty", "go-pagerduty_signature_vector_body")

    ok = deliver(client, "pagerduty", token, raw, signed=False, **{"X-PagerDuty-Signature": valid})
    assert ok.status_code == 200
    changed = raw.replace(b"}", b" }", 1)
    refused = deliver(client, "pagerduty", token, changed, signed=False, **{"X-PagerDuty-Signature": valid})
    assert refused.status_code == 401
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 1


def test_pagerduty_and_sentry_need_a_secret(app):
    from incidents.alert import services
    from incidents.errors import Invalid

    for source in ("pagerduty", "sentry"):
        with pytest.raises(Invalid, match="secret"):
            services.create_integration(db.session, source=source, name=source)


def test_sentry_issue_created_is_an_alert_and_a_replay_knows_its_resource(client):
    _row, token = make_integration("sentry", "sentry", secret=SECRET)
    raw = raw_sample("sentry", "zulip_issue_created_for_exception")
    created = deliver(client, "sentry", token, raw, **{"Sentry-Hook-Resource": "issue"})
    assert created.json["outcome"] == "processed"
    alert = alerts("sentry")["1635244907"]
    assert (alert.status, alert.severity, alert.incident_id) == (AlertStatus.OPEN, "error", None)
    assert alert.title == "Exception: Custom exception!"
    delivery = db.session.get(Delivery, created.json["delivery"])
    assert {k.lower(): v for k, v in delivery.headers.items()}.get("sentry-hook-resource") == "issue"

    resolved = deliver(client, "sentry", token, raw_sample("sentry", "zulip_issue_resolved"),
                       **{"Sentry-Hook-Resource": "issue"})
    assert resolved.json["outcome"] == "ignored" and "1638821441" in resolved.json["message"]

    unsigned = deliver(client, "sentry", token, raw, signed=False, **{"Sentry-Hook-Resource": "issue"})
    assert unsigned.status_code == 401


@pytest.mark.parametrize("name", sample_names(PAYLOADS / "opsgenie") or ["create"])
def test_jsm_reads_every_opsgenie_sample_and_links_to_the_site(client, name):
    _row, token = make_integration("jsm", "jsm", site_url=SITE)
    raw = raw_sample("opsgenie", name)
    answer = deliver(client, "jsm", token, raw)
    assert answer.status_code == 200 and answer.json["outcome"] in ("processed", "ignored")
    if name == "create":
        [alert] = alerts("jsm").values()
        alert_id = json.loads(raw)["alert"]["alertId"]
        assert alert.link == f"{SITE}/jira/ops/alerts/{alert_id}"
        assert alert.status == AlertStatus.OPEN
    delivery = db.session.get(Delivery, answer.json["delivery"])
    assert delivery.outcome in (Outcome.PROCESSED, Outcome.IGNORED)
