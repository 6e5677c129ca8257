"""What every source shares: the token in any of its three places, signatures checked before anything is stored,
several alerts per delivery (one path or batched, and replayed), firing episodes, and tags reaching the incident.

A small signed test source stands in for the real ones: registered in SOURCES with monkeypatch under an existing
name (the Source enum is built from SOURCES at import), it reads {"alerts": [...]} and signs with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import pytest
import sqlalchemy as sa

from incidents import events
from incidents.alert import batching, services
from incidents.alert.models import Alert, AlertStatus, Delivery, Integration, Outcome
from incidents.alert.services import processing
from incidents.alert.sources import SOURCES, Kind, ParsedEvent, SourceSpec, tag
from incidents.database import utcnow
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.incident.models import Incident
from tests.alert.conftest import fixture, make_integration
from tests.conftest import post_form

NAME = "rollbar"  # the test source's name: any registered one will do
SECRET = "test-signing-secret-0123456789"
SIGNATURE = "X-Test-Signature"


def _parse(payload: dict, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[ParsedEvent]:
    label = options.get("severity_label", "severity")
    out = []
    for alert in payload.get("alerts") or []:
        labels = alert.get("labels", {})
        resolved = alert.get("status") == "resolved"
        out.append(ParsedEvent(
            NAME, "resolved" if resolved else "firing", Kind.CLOSE if resolved else Kind.TRIGGER,
            fingerprint=alert["fp"], title=f"{headers.get('x-test-kind', 'Alert')} {alert['fp']}",
            severity=labels.get(label), bump=not resolved,
            occurrence=alert.get("startsAt"), tags=tuple(t for k, v in labels.items() if (t := tag(k, v)))))
    return out or [ParsedEvent(NAME, "empty", Kind.IGNORE, reason="An empty group: nothing to do.")]


def _verify(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> str | None:
    given = headers.get(SIGNATURE.lower(), "")
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(given.encode(), expected.encode()) else "The signature does not match."


def _spec(signed: bool = True) -> SourceSpec:
    return SourceSpec(name=NAME, label="Test", setup="Paste this URL into the test sender; sign with the secret.",
                      parse=_parse, redact=lambda payload: False, verify=_verify, signed=signed,
                      keep_headers=("X-Test-Kind",),
                      default_rules=[{"events": ["firing"], "severities": ["critical"], "incident_severity": "SEV1"}])


@pytest.fixture
def signed(app, monkeypatch):
    """The signed test source, and an integration of it with its secret: (integration, token)."""
    monkeypatch.setitem(SOURCES, NAME, _spec())
    return make_integration(NAME, "grouped", secret=SECRET)


@pytest.fixture
def unbatched(app, monkeypatch):
    monkeypatch.delitem(app.extensions, batching.EXTENSION, raising=False)


def _alert(fp: str, severity: str = "critical", starts: str = "2026-11-30T01:00:00Z", status: str = "firing",
           **labels) -> dict:
    return {"fp": fp, "status": status, "startsAt": starts, "labels": {"severity": severity, **labels}}


def _send(client, token: str, alerts: list[dict], *, secret: str | None = SECRET, headers: dict | None = None,
          **extra):
    raw = json.dumps({"alerts": alerts, **extra}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}", **(headers or {})}
    if secret is not None:
        headers[SIGNATURE] = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(f"/webhooks/{NAME}", data=raw, headers=headers)


def rows(model, *where):
    db.session.rollback()  # a fresh snapshot: the batch writer commits on its own connection
    return list(db.session.scalars(sa.select(model).where(*where).order_by(model.id)))


# --- the token and the signature ---------------------------------------------------------------------------

def test_the_token_may_come_as_an_authorization_bearer_header(client, rollbar):
    _row, token = rollbar
    payload = fixture("rollbar_new_item_production")

    def send(authorization: str):
        return client.post("/webhooks/rollbar", data=json.dumps(payload),
                           headers={"Content-Type": "application/json", "Authorization": authorization})

    assert send(f"Bearer {token}").status_code == 200
    for wrong in (f"Bearer {token}x", f"Basic {token}", "Bearer ", token):
        response = send(wrong)
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert len(rows(Delivery)) == 1
    assert token not in json.dumps(rows(Delivery)[0].headers)  # the Authorization header is never stored


@pytest.mark.parametrize("signature", [None, "0" * 64, "not hex at all", "é"])
def test_a_missing_or_wrong_signature_is_401_and_stores_nothing(client, signed, signature):
    _row, token = signed
    raw = json.dumps({"alerts": [_alert("a")]}).encode()
    headers = {"Content-Type": "application/json", "X-Incidents-Token": token}
    if signature is not None:
        headers[SIGNATURE] = signature
    response = client.post(f"/webhooks/{NAME}", data=raw, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == {"code": "unauthorized", "message": "The signature does not match.",
                                            "fields": {}}
    assert SECRET not in response.get_data(as_text=True)
    assert rows(Delivery) == [] and rows(Alert) == []


def test_a_body_changed_after_signing_is_refused(client, signed):
    _row, token = signed
    raw = json.dumps({"alerts": [_alert("a")]}).encode()
    good = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post(f"/webhooks/{NAME}", data=raw.replace(b'"a"', b'"b"'),
                           headers={"Content-Type": "application/json", "X-Incidents-Token": token, SIGNATURE: good})
    assert response.status_code == 401 and rows(Delivery) == []
    assert _send(client, token, [_alert("a")]).status_code == 200  # signed right, it goes through
    assert len(rows(Delivery)) == 1


def test_a_signed_source_needs_its_secret_at_creation(app, admin_client, monkeypatch):
    monkeypatch.setitem(SOURCES, NAME, _spec())
    with pytest.raises(Invalid, match="signs its requests") as refused:
        services.create_integration(db.session, source=NAME, name="no secret")
    assert refused.value.fields == {"secret": ["Required for this source."]}
    db.session.rollback()
    result = app.test_cli_runner().invoke(args=["integrations", "add", NAME, "no-secret"])
    assert result.exit_code != 0 and "--secret" in result.output
    page = post_form(admin_client, "/admin/integrations", {"source": NAME, "name": "web", "rules": ""})
    assert page.status_code == 422 and "signs its requests" in page.get_data(as_text=True)
    assert rows(Integration) == []

    made = app.test_cli_runner().invoke(args=["integrations", "add", NAME, "with-secret", "--secret", SECRET,
                                              "--site-url", "https://example.atlassian.net/",
                                              "--severity-label", "priority"])
    assert made.exit_code == 0, made.output
    assert SECRET not in made.output and "Paste this URL into the test sender" in made.output
    row = rows(Integration)[0]
    assert (row.secret, row.site_url, row.options) == (SECRET, "https://example.atlassian.net",
                                                       {"severity_label": "priority"})
    listing = app.test_cli_runner().invoke(args=["integrations", "list"])
    assert "secret set" in listing.output and SECRET not in listing.output
    bad = app.test_cli_runner().invoke(args=["integrations", "add", NAME, "x", "--secret", SECRET,
                                             "--site-url", "javascript:alert(1)"])
    assert bad.exit_code != 0 and "http(s)" in bad.output


def test_the_admin_form_sets_the_secret_and_never_shows_it(app, admin_client, monkeypatch):
    monkeypatch.setitem(SOURCES, NAME, _spec())
    created = post_form(admin_client, "/admin/integrations",
                        {"source": NAME, "name": "web", "rules": "", "secret": SECRET, "severity_label": "prio",
                         "site_url": "https://grafana.example.com"})
    assert created.status_code == 201 and SECRET not in created.get_data(as_text=True)
    assert "signing secret is stored" in created.get_data(as_text=True)
    row = rows(Integration)[0]
    assert (row.secret, row.options, row.site_url) == (SECRET, {"severity_label": "prio"},
                                                       "https://grafana.example.com")
    page = admin_client.get(f"/admin/integrations/{row.id}").get_data(as_text=True)
    assert "Signing secret (set)" in page and SECRET not in page
    # Saving the form without typing a secret keeps it; a bad site URL is refused and nothing changes.
    saved = post_form(admin_client, f"/admin/integrations/{row.id}",
                      {"name": "web", "active": "on", "default_rules": "on", "site_url": "", "severity_label": ""})
    assert saved.status_code == 302
    row = rows(Integration)[0]
    assert (row.secret, row.options, row.site_url) == (SECRET, {}, None)
    refused = post_form(admin_client, f"/admin/integrations/{row.id}",
                        {"name": "web", "active": "on", "default_rules": "on", "site_url": "ftp://x"})
    assert refused.status_code == 422 and rows(Integration)[0].site_url is None


def test_an_unsigned_source_with_a_verify_checks_only_integrations_that_have_a_secret(client, monkeypatch):
    monkeypatch.setitem(SOURCES, NAME, _spec(signed=False))
    _open, open_token = make_integration(NAME, "no secret")
    _closed, closed_token = make_integration(NAME, "with secret", secret=SECRET)
    assert _send(client, open_token, [_alert("a")], secret=None).status_code == 200
    assert _send(client, closed_token, [_alert("a")], secret=None).status_code == 401
    assert _send(client, closed_token, [_alert("a")], secret="another secret").status_code == 401
    assert _send(client, closed_token, [_alert("a")]).status_code == 200


def test_the_parser_gets_the_integration_options(client, monkeypatch):
    monkeypatch.setitem(SOURCES, NAME, _spec())
    _row, token = make_integration(NAME, "prio", secret=SECRET, options={"severity_label": "priority"})
    _send(client, token, [_alert("a", severity="warning", priority="critical")])
    assert rows(Alert)[0].severity == "critical"


# --- several alerts per delivery ----------------------------------------------------------------------------

@pytest.fixture
def received(app):
    seen: list[dict] = []

    def after_commit(event):
        seen.append(event.data)

    events.subscribe(app, "alert.received", events.AFTER_COMMIT, after_commit)
    yield seen
    subs = events.registry(app).subscribers["alert.received"]
    subs[:] = [s for s in subs if s.handler is not after_commit]


def _three_alerts_then_again(client, token: str, received: list[dict]) -> None:
    # In the body: z first, so the lock order (a, m, z) differs from the body's order.
    group = [_alert("z"), _alert("a", severity="warning"), _alert("m")]
    first = _send(client, token, group)
    assert first.status_code == 200
    answer = first.get_json()
    alerts = {a.fingerprint: a for a in rows(Alert)}
    assert sorted(alerts) == ["a", "m", "z"] and all(a.is_open for a in alerts.values())
    assert answer["outcome"] == "processed" and answer["alert"] == alerts["z"].id
    assert answer["alerts"] == [alerts["z"].id, alerts["a"].id, alerts["m"].id]
    (delivery,) = rows(Delivery)
    assert delivery.alert_id == alerts["z"].id and delivery.outcome == Outcome.PROCESSED
    # The two critical ones opened an incident each (the test source's default rule); the warning did not.
    assert alerts["a"].incident_id is None and alerts["m"].incident_id and alerts["z"].incident_id
    assert answer["incident"] == alerts["z"].incident_id
    assert sorted(e["alert_id"] for e in received) == sorted(a.id for a in alerts.values())
    assert {e["delivery_id"] for e in received} == {delivery.id}

    # Alertmanager re-sends the group: the same three episodes, one more alert. One delivery again.
    again = _send(client, token, [*group, _alert("b", severity="warning")], receiver="again")
    assert again.status_code == 200
    alerts = {a.fingerprint: a for a in rows(Alert)}
    assert sorted(alerts) == ["a", "b", "m", "z"]
    assert [alerts[f].occurrence_count for f in "amz"] == [1, 1, 1] and [alerts[f].event_count for f in "amz"] == [
        2, 2, 2]
    assert len(rows(Delivery)) == 2 and len(rows(Incident)) == 2  # nothing opened twice
    assert len(received) == 7


def test_a_delivery_of_three_alerts_one_by_one(client, signed, received, unbatched):
    _three_alerts_then_again(client, signed[1], received)


def test_a_delivery_of_three_alerts_batched(client, signed, received):
    assert batching.batcher(client.application) is not None
    _three_alerts_then_again(client, signed[1], received)


def test_a_retried_group_changes_nothing(client, signed):
    _row, token = signed
    group = [_alert("a"), _alert("b")]
    assert _send(client, token, group).status_code == 200
    retry = _send(client, token, group)
    assert retry.status_code == 200 and retry.get_json()["outcome"] == "duplicate"
    assert [a.event_count for a in rows(Alert)] == [1, 1] and len(rows(Delivery)) == 1


def test_an_ignored_only_delivery_is_ignored(client, signed):
    response = _send(client, signed[1], [])
    assert response.get_json()["outcome"] == "ignored" and response.get_json()["alert"] is None
    (delivery,) = rows(Delivery)
    assert delivery.outcome == Outcome.IGNORED and delivery.error == "An empty group: nothing to do."
    # A resolve of alerts we never saw touches nothing either.
    response = _send(client, signed[1], [_alert("x", status="resolved"), _alert("y", status="resolved")])
    assert response.get_json()["outcome"] == "ignored" and "none acted on" in response.get_json()["message"]


def test_a_mixed_delivery_is_processed_and_names_its_first_alert(client, signed):
    _send(client, signed[1], [_alert("b")])
    response = _send(client, signed[1], [_alert("a", status="resolved"), _alert("b", status="resolved")])
    body = response.get_json()
    (b,) = rows(Alert)
    assert body["outcome"] == "processed" and body["alert"] == b.id and body["alerts"] == [b.id]
    assert b.status == AlertStatus.RESOLVED and rows(Delivery)[-1].alert_id == b.id


def _work(info, alerts: list[dict]) -> batching.Work:
    raw = json.dumps({"alerts": alerts}).encode()
    parsed = _parse(json.loads(raw), {}, {})
    return batching.Work(info, parsed, raw.decode(), {}, utcnow(), services.dedup_key(parsed, raw))


def test_a_batch_of_groups_takes_alert_rows_in_one_ascending_order_per_transaction(app, signed, monkeypatch):
    # Several alerts per delivery: a batch commits before a delivery whose rows sort below those already taken,
    # so that no transaction takes two rows against the global order (deadlocks between processes).
    info = services.integration_for_token(db.session, NAME, signed[1])
    taken: list[str] = []
    transactions: list[list[str]] = []
    real_upsert, real_commit = processing._upsert_alert, batching.Batcher._commit

    def upsert(session, info, parsed, at, now):
        taken.append(parsed.fingerprint)
        return real_upsert(session, info, parsed, at, now)

    def commit(self, chunk):
        taken.clear()
        ok = real_commit(self, chunk)
        transactions.append(list(taken))
        return ok

    monkeypatch.setattr(processing, "_upsert_alert", upsert)
    monkeypatch.setattr(batching.Batcher, "_commit", commit)
    works = [_work(info, [_alert("m"), _alert("a")]), _work(info, [_alert("z")]), _work(info, [_alert("c")]),
             _work(info, [])]
    writer = batching.Batcher(app)
    db.session.rollback()
    for work in works:
        writer._queue.put(work)
    writer._ensure_running()
    for work in works:
        assert work.done.wait(30)

    assert all(w.result is not None and w.alone is None for w in works)
    assert transactions == [["a", "m"], ["c", "z"]]  # the empty group took no row: it rode in the first
    assert all(t == sorted(t) for t in transactions)
    assert (writer.batches, writer.batched) == (2, 4)
    assert works[0].result.alert_id == next(a.id for a in rows(Alert) if a.fingerprint == "m")  # body order
    assert sorted(a.fingerprint for a in rows(Alert)) == ["a", "c", "m", "z"]


def test_a_failed_group_is_kept_and_replays_whole(client, signed, monkeypatch, unbatched):
    _row, token = signed
    real_apply = processing._apply

    def broken(session, info, parsed, row, at, delivery_id):
        if parsed.fingerprint == "b":
            raise RuntimeError("boom")
        return real_apply(session, info, parsed, row, at, delivery_id)

    monkeypatch.setattr(processing, "_apply", broken)
    response = _send(client, token, [_alert("a"), _alert("b"), _alert("c")], headers={"X-Test-Kind": "Disk"})
    assert response.status_code == 202
    (delivery,) = rows(Delivery)
    assert delivery.outcome == Outcome.FAILED and rows(Alert) == []  # all or nothing
    # The header the parser reads is kept for the replay; the token and the signature never are.
    assert delivery.headers["X-Test-Kind"] == "Disk"
    assert token not in json.dumps(delivery.headers) and SIGNATURE not in delivery.headers
    monkeypatch.undo()
    monkeypatch.setitem(SOURCES, NAME, _spec())
    monkeypatch.delitem(client.application.extensions, batching.EXTENSION, raising=False)

    result = services.replay_delivery(db.session, delivery)
    db.session.commit()
    alerts = rows(Alert)
    assert result.outcome == Outcome.PROCESSED and sorted(a.fingerprint for a in alerts) == ["a", "b", "c"]
    assert [a.title for a in alerts] == ["Disk a", "Disk b", "Disk c"]
    assert result.alert_id == alerts[0].id and rows(Delivery)[0].alert_id == alerts[0].id
    assert rows(Delivery)[0].outcome == Outcome.PROCESSED


# --- episodes and tags --------------------------------------------------------------------------------------

def test_a_repeat_of_the_same_episode_moves_last_seen_not_the_count(client, signed):
    _row, token = signed
    _send(client, token, [_alert("a", starts="T1")])
    (first,) = rows(Alert)
    seen = first.last_seen_at
    _send(client, token, [_alert("a", starts="T1")], n=2)
    (again,) = rows(Alert)
    assert (again.occurrence_count, again.event_count, again.occurrence) == (1, 2, "T1")
    assert again.last_seen_at > seen
    # Another episode while the alert is still open: one more occurrence, and it is the alert's now.
    _send(client, token, [_alert("a", starts="T2")])
    (third,) = rows(Alert)
    assert (third.id, third.occurrence_count, third.occurrence) == (first.id, 2, "T2")


def test_after_a_resolve_a_new_episode_is_a_new_occurrence(client, signed):
    _row, token = signed
    _send(client, token, [_alert("a", starts="T1")])
    _send(client, token, [_alert("a", starts="T1", status="resolved")])
    (resolved,) = rows(Alert)
    assert resolved.status == AlertStatus.RESOLVED and resolved.incident_id is not None
    _send(client, token, [_alert("a", starts="T2")])
    old, new = rows(Alert)
    assert old.status == AlertStatus.RESOLVED and new.is_open and new.occurrence == "T2"
    assert old.occurrence_count + new.occurrence_count == 2  # counted once more
    assert new.incident_id is not None and new.incident_id != old.incident_id  # the rules open it again
    # A late repeat of the new episode counts nothing.
    _send(client, token, [_alert("a", starts="T2")], n=3)
    assert [a.occurrence_count for a in rows(Alert)] == [1, 1]


def test_an_alert_keeps_its_tags_and_its_incident_gets_them(client, signed):
    _row, token = signed
    labels = {f"label{n:02d}": "x" for n in range(30)}
    _send(client, token, [_alert("a", team="Payments API", **labels)])
    (alert,) = rows(Alert)
    assert alert.tags[:2] == ["severity:critical", "team:payments-api"] and len(alert.tags) == 32
    incident = db.session.get(Incident, alert.incident_id)
    assert set(incident.tags) >= {NAME, "severity:critical", "team:payments-api"} and len(incident.tags) == 20
    # A later event with tags replaces the alert's.
    _send(client, token, [_alert("a", severity="critical", team="core")])
    assert rows(Alert)[0].tags == ["severity:critical", "team:core"]
