"""Alerts and incidents fit together, end to end through the webhook endpoint and the incident page: the line when
every alert of an incident is closed (once) and the optional resolve, Opsgenie/JSM UpdatePriority, the alert's
environment as an incident tag, and the page's "Opened by" and related-alerts panel."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from incidents import events
from incidents.alert.models import Alert, AlertStatus, Integration
from incidents.extensions import db
from incidents.incident.models import Incident, Severity, Status, TimelineEntry
from tests.alert.conftest import make_integration, post
from tests.conftest import post_form


@pytest.fixture
def heard(app):
    """The incident events emitted in committed transactions, as (name, data)."""
    seen: list[tuple[str, dict]] = []
    names = ("incident.status_changed", "incident.severity_changed")
    handlers = {name: (lambda event, name=name: seen.append((name, event.data))) for name in names}
    for name, handler in handlers.items():
        events.subscribe(app, name, events.AFTER_COMMIT, handler)
    yield seen
    for name, handler in handlers.items():
        subs = events.registry(app).subscribers[name]
        subs[:] = [s for s in subs if s.handler is not handler]


def opsgenie_body(action: str, alias: str, *, priority=None, old=None, n: int = 0, message: str | None = None):
    """The Opsgenie/JSM alert-action envelope (contracts/more/jsm-ops.md); `n` makes each body (and its hash) new."""
    alert = {"alertId": f"id-{alias}", "alias": alias, "message": message or f"Alert {alias}", "tinyId": "7",
             "username": "ana@example.com", "userFullName": "Ana", "createdAt": 1700000000000 + n,
             "updatedAt": 1700000000000000000 + n * 1000, "tags": ["team:payments"], "entity": "", "source": "api"}
    if priority is not None:
        alert["priority"] = priority
    if old is not None:
        alert["oldPriority"] = old
    return {"action": action, "alert": alert, "source": {"name": "web", "type": "API"},
            "integrationId": "i-1", "integrationName": "Webhook"}


def alertmanager_body(status: str, *alerts: tuple[str, str, dict]) -> dict:
    """A version 4 group; each alert is (fingerprint, startsAt, extra labels)."""
    return {"version": "4", "status": status, "receiver": "incidents", "groupKey": "{}:{}", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.example:9093",
            "truncatedAlerts": 0,
            "alerts": [{"status": status, "fingerprint": fp, "startsAt": starts,
                        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T01:00:00Z",
                        "generatorURL": f"http://prom.example:9090/graph?{fp}",
                        "labels": {"alertname": f"Alert {fp}", **labels},
                        "annotations": {"summary": f"Alert {fp} fires"}} for fp, starts, labels in alerts]}


def ok(answer) -> dict:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.json


def fresh(model, **where):
    db.session.rollback()  # a fresh snapshot: the writer committed on its own connection
    return db.session.scalar(sa.select(model).filter_by(**where))


def texts(incident_id: int) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(sa.select(TimelineEntry.text).where(TimelineEntry.incident_id == incident_id)
                                   .order_by(TimelineEntry.id)))


def attach(client, alert_id: int, incident_id: int) -> None:
    answer = post_form(client, f"/alerts/{alert_id}/attach", {"incident": f"INC-{incident_id}"})
    assert answer.status_code == 302, answer.get_data(as_text=True)


def incident_of_three(client, token: str, source: str = "opsgenie") -> tuple[int, list[int]]:
    """A P1 alert opens an incident (default rules); two P4 alerts stay alerts and a responder attaches them."""
    first = ok(post(client, source, opsgenie_body("Create", "a", priority="P1"), token))
    others = [ok(post(client, source, opsgenie_body("Create", alias, priority="P4", n=i), token))
              for i, alias in enumerate("bc", 1)]
    assert first["incident"] and not any(o["incident"] for o in others)
    for o in others:
        attach(client, o["alert"], first["incident"])
    return first["incident"], [first["alert"]] + [o["alert"] for o in others]


# --- every alert closed ---------------------------------------------------------------------------------------

def test_the_last_close_writes_the_line_once_and_resolves_only_when_not_asked(responder_client, heard):
    _row, token = make_integration("opsgenie", "ops")
    incident_id, _alerts = incident_of_three(responder_client, token)

    for n, alias in enumerate("ab", 10):
        ok(post(responder_client, "opsgenie", opsgenie_body("Close", alias, n=n), token))
        assert not any(t.startswith("All ") for t in texts(incident_id))  # one still open

    last = opsgenie_body("Close", "c", n=20)
    ok(post(responder_client, "opsgenie", last, token))
    ok(post(responder_client, "opsgenie", last, token))  # the sender's retry: nothing twice
    ok(post(responder_client, "opsgenie", opsgenie_body("Delete", "c", n=21), token))  # no open alert any more
    assert [t for t in texts(incident_id) if t.startswith("All ")] == ["All 3 alerts are closed"]
    incident = fresh(Incident, id=incident_id)
    assert incident.status == Status.TRIGGERED and incident.resolved_at is None  # the option is off
    assert not [e for e in heard if e[0] == "incident.status_changed"]


def test_resolve_incident_option_resolves_through_the_status_machine(responder_client, heard):
    _row, token = make_integration("opsgenie", "ops", options={"resolve_incident": True})
    incident_id, _alerts = incident_of_three(responder_client, token)
    ok(post(responder_client, "opsgenie", opsgenie_body("Close", "a", n=10), token))
    assert fresh(Incident, id=incident_id).status == Status.TRIGGERED

    ok(post(responder_client, "opsgenie", opsgenie_body("Close", "b", n=11), token))
    ok(post(responder_client, "opsgenie", opsgenie_body("Delete", "c", n=12), token))
    incident = fresh(Incident, id=incident_id)
    assert incident.status == Status.RESOLVED and incident.resolved_at is not None
    lines = texts(incident_id)
    assert lines[-2:] == ["All 3 alerts are closed", "Status: triggered -> resolved"]
    moves = [(d["before"], d["after"]) for name, d in heard
             if name == "incident.status_changed" and d["incident_id"] == incident_id]
    assert moves == [("triggered", "resolved")]


def test_an_already_resolved_incident_is_left_alone(responder_client, heard):
    _row, token = make_integration("opsgenie", "ops", options={"resolve_incident": True})
    incident_id, _alerts = incident_of_three(responder_client, token)
    resolve = {"status": "resolved", "resolution": "Fixed"}
    assert post_form(responder_client, f"/incidents/INC-{incident_id}/status", resolve).status_code == 302
    heard.clear()
    for n, alias in enumerate("abc", 10):
        ok(post(responder_client, "opsgenie", opsgenie_body("Close", alias, n=n), token))
    assert fresh(Incident, id=incident_id).status == Status.RESOLVED
    assert texts(incident_id).count("All 3 alerts are closed") == 1
    assert not [e for e in heard if e[0] == "incident.status_changed"]


def test_one_alertmanager_delivery_resolving_every_alert_says_resolved(responder_client):
    _row, token = make_integration("alertmanager", "prod-cluster", options={"resolve_incident": True})
    group = [("f1", "2026-01-01T00:00:00Z", {"severity": "critical"}),
             ("f2", "2026-01-01T00:00:00Z", {"severity": "warning"})]
    fired = ok(post(responder_client, "alertmanager", alertmanager_body("firing", *group), token))
    incident_id = fresh(Alert, fingerprint="f1").incident_id
    assert incident_id and fresh(Alert, fingerprint="f2").incident_id is None
    attach(responder_client, fired["alerts"][1], incident_id)

    ok(post(responder_client, "alertmanager", alertmanager_body("resolved", *group), token))
    assert {a.status for a in db.session.scalars(sa.select(Alert))} == {AlertStatus.RESOLVED}
    lines = texts(incident_id)
    assert lines.count("All 2 alerts are resolved") == 1 and lines[-1] == "Status: triggered -> resolved"


def test_an_incident_of_one_alert_is_resolved_on_request_without_a_second_line(client):
    _row, token = make_integration("opsgenie", "ops", options={"resolve_incident": True})
    incident_id = ok(post(client, "opsgenie", opsgenie_body("Create", "solo", priority="P1"), token))["incident"]
    ok(post(client, "opsgenie", opsgenie_body("Close", "solo", n=1), token))
    lines = texts(incident_id)
    assert lines[-2:] == ["OpsGenie: alert closed by Ana", "Status: triggered -> resolved"]
    assert not any(t.startswith("All ") for t in lines)


# --- UpdatePriority -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["opsgenie", "jsm"])
def test_update_priority_moves_the_alert_and_when_asked_the_incident(client, heard, source):
    _row, token = make_integration(source, "ops", options={"update_incident_severity": True},
                                   **({"site_url": "https://acme.atlassian.net"} if source == "jsm" else {}))
    created = ok(post(client, source, opsgenie_body("Create", "db", priority="P2"), token))
    incident_id = created["incident"]
    assert fresh(Incident, id=incident_id).severity == Severity.SEV2

    answer = ok(post(client, source, opsgenie_body("UpdatePriority", "db", priority="P1", old="P2", n=1), token))
    assert answer["outcome"] == "processed" and answer["alert"] == created["alert"]
    assert fresh(Alert, id=created["alert"]).severity == "P1"
    assert fresh(Incident, id=incident_id).severity == Severity.SEV1
    label = "JSM" if source == "jsm" else "OpsGenie"
    assert texts(incident_id)[-2:] == [f"{label}: priority changed from P2 to P1 by Ana", "Severity: SEV2 -> SEV1"]
    assert ("incident.severity_changed", {"incident_id": incident_id, "before": "SEV2", "after": "SEV1"}) in heard


def test_update_priority_without_the_option_leaves_the_incident(client, heard):
    _row, token = make_integration("opsgenie", "ops")
    created = ok(post(client, "opsgenie", opsgenie_body("Create", "db", priority="P2"), token))
    ok(post(client, "opsgenie", opsgenie_body("UpdatePriority", "db", priority="P4", n=1), token))
    assert fresh(Alert, id=created["alert"]).severity == "P4"
    assert fresh(Incident, id=created["incident"]).severity == Severity.SEV2
    assert texts(created["incident"])[-1] == "OpsGenie: priority changed to P4 by Ana"
    assert not heard


def test_update_priority_of_an_unknown_alert_or_without_a_priority_is_ignored(client):
    _row, token = make_integration("opsgenie", "ops", options={"update_incident_severity": True})
    nobody = ok(post(client, "opsgenie", opsgenie_body("UpdatePriority", "nope", priority="P1"), token))
    assert nobody["outcome"] == "ignored" and "No open alert" in nobody["message"]
    ok(post(client, "opsgenie", opsgenie_body("Create", "db", priority="P3"), token))
    blank = ok(post(client, "opsgenie", opsgenie_body("UpdatePriority", "db", priority="urgent", n=1), token))
    assert blank["outcome"] == "ignored"
    assert fresh(Alert, fingerprint="db").severity == "P3"


# --- environment ----------------------------------------------------------------------------------------------

def test_the_alerts_environment_reaches_the_incident_as_a_tag(responder_client):
    _row, token = make_integration("alertmanager", "prod-cluster")
    body = alertmanager_body("firing", ("f1", "2026-01-01T00:00:00Z",
                                        {"severity": "critical", "environment": "Prod EU", "team": "db"}),
                             ("f2", "2026-01-01T00:00:00Z", {"severity": "warning", "env": "staging"}))
    incident_id = ok(post(responder_client, "alertmanager", body, token))["incident"]
    tags = fresh(Incident, id=incident_id).tags
    assert {"env:prod-eu", "alertmanager", "team:db"} <= set(tags)
    assert fresh(Alert, fingerprint="f1").environment == "Prod EU"

    kept = fresh(Alert, fingerprint="f2")  # a warning stays an alert; a responder opens its incident by hand
    assert kept.incident_id is None
    assert post_form(responder_client, f"/alerts/{kept.id}/open-incident", {"severity": "SEV3"}).status_code == 302
    assert "env:staging" in fresh(Incident, id=fresh(Alert, fingerprint="f2").incident_id).tags


# --- the incident page ----------------------------------------------------------------------------------------

def _panel(html: str) -> str:
    match = re.search(r'<section class="card related-alerts".*?</section>', html, re.S)
    assert match, "no related-alerts panel"
    return match.group(0)


def test_the_incident_page_shows_who_opened_it_and_every_related_alert(responder_client, viewer):
    _row, token = make_integration("alertmanager", "prod-cluster")
    group = [("f1", "2026-01-01T00:00:00Z", {"severity": "critical"}),
             ("f2", "2026-01-01T00:00:00Z", {"severity": "warning"})]
    fired = ok(post(responder_client, "alertmanager", alertmanager_body("firing", *group), token))
    incident_id = fresh(Alert, fingerprint="f1").incident_id
    attach(responder_client, fired["alerts"][1], incident_id)
    again = [("f1", "2026-01-01T02:00:00Z", {"severity": "critical"})]  # a new episode: one more occurrence
    ok(post(responder_client, "alertmanager", alertmanager_body("firing", *again), token))
    ok(post(responder_client, "alertmanager", alertmanager_body("resolved", group[1]), token))

    html = responder_client.get(f"/incidents/INC-{incident_id}").get_data(as_text=True)
    assert re.search(r"<dt>Opened by</dt><dd[^>]*>Alertmanager · prod-cluster</dd>", html)
    panel = _panel(html)
    rows = re.findall(r'<tr class="alert-row.*?</tr>', panel, re.S)
    assert len(rows) == 2 and "(2)" in panel
    by_fp = {fp: next(r for r in rows if f"Alert {fp} fires" in r) for fp in ("f1", "f2")}
    f1, f2 = fresh(Alert, fingerprint="f1"), fresh(Alert, fingerprint="f2")
    for alert, row in ((f1, by_fp["f1"]), (f2, by_fp["f2"])):
        assert f'href="/alerts/{alert.id}"' in row and f'href="{alert.link}"' in row
        assert "Alertmanager · prod-cluster" in row
        assert f'<td data-label="Status">{alert.status.value}</td>' in row
        assert f'<td data-label="Count" class="num">{alert.occurrence_count}</td>' in row
        assert alert.last_seen_at.isoformat() in row
    assert (f1.status, f1.occurrence_count, f2.status, f2.occurrence_count) == (AlertStatus.OPEN, 2,
                                                                                 AlertStatus.RESOLVED, 1)
    assert "(opened it)" in by_fp["f1"] and "(opened it)" not in by_fp["f2"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script anywhere on the page
    assert 'name="viewport"' in html  # laid out for a phone (the list table stacks its cells there)


def test_a_declared_incident_has_no_opener_and_an_empty_panel(responder_client, responder):
    answer = post_form(responder_client, "/incidents/new", {"title": "Checkout slow", "severity": "SEV3"})
    assert answer.status_code == 302
    html = responder_client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "<dt>Opened by</dt>" not in html and f"<dd>{responder.name}</dd>" in html
    assert "No alert is attached to this incident." in _panel(html)


def test_an_incident_opened_by_hand_from_an_alert_names_both(responder_client, responder):
    _row, token = make_integration("opsgenie", "ops")
    created = ok(post(responder_client, "opsgenie", opsgenie_body("Create", "low", priority="P4"), token))
    answer = post_form(responder_client, f"/alerts/{created['alert']}/open-incident", {"severity": "SEV3"})
    assert answer.status_code == 302
    incident_id = fresh(Alert, id=created["alert"]).incident_id
    html = responder_client.get(f"/incidents/INC-{incident_id}").get_data(as_text=True)
    assert re.search(r"<dt>Opened by</dt><dd[^>]*>OpsGenie · ops</dd>", html)
    assert f"<dt>Declared by</dt><dd>{responder.name}</dd>" in html


# --- the options ----------------------------------------------------------------------------------------------

def test_the_admin_form_sets_and_clears_the_options(admin_client):
    row, _token = make_integration("jsm", "ops", site_url="https://acme.atlassian.net")
    answer = post_form(admin_client, f"/admin/integrations/{row.id}",
                       {"name": "ops", "active": "on", "default_rules": "on", "resolve_incident": "on",
                        "update_incident_severity": "on"})
    assert answer.status_code == 302
    assert fresh(Integration, id=row.id).options == {"resolve_incident": True, "update_incident_severity": True}
    page = admin_client.get(f"/admin/integrations/{row.id}").get_data(as_text=True)
    assert re.search(r'name="resolve_incident" checked', page)
    post_form(admin_client, f"/admin/integrations/{row.id}", {"name": "ops", "active": "on", "default_rules": "on"})
    assert fresh(Integration, id=row.id).options == {}


def test_the_cli_sets_the_options(app):
    result = app.test_cli_runner().invoke(args=["integrations", "add", "jsm", "ops-cli", "--resolve-incident",
                                                "--update-incident-severity"])
    assert result.exit_code == 0, result.output
    assert fresh(Integration, name="ops-cli").options == {"resolve_incident": True, "update_incident_severity": True}


def test_a_bad_option_value_is_refused(app):
    from incidents.alert import services
    from incidents.errors import Invalid

    with pytest.raises(Invalid):
        services.create_integration(db.session, source="jsm", name="x", options={"resolve_incident": "maybe"})
    db.session.rollback()


# --- at the same moment ---------------------------------------------------------------------------------------

def test_concurrent_closes_of_an_incidents_last_alerts_write_the_line_once(app, live_server):
    """Every close of the incident's twelve alerts sent at once, on two gunicorn workers: the line is written exactly
    once and the incident resolved once (the lock that makes sure of it is proven step by step below)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from incidents.alert import services

    _row, token = make_integration("opsgenie", "ops", options={"resolve_incident": True})
    aliases = [f"c{n}" for n in range(12)]
    headers = {"X-Incidents-Token": token}
    with requests.Session() as http:
        first = http.post(f"{live_server}/webhooks/opsgenie", json=opsgenie_body("Create", "c0", priority="P1"),
                          headers=headers, timeout=60).json()
        for n, alias in enumerate(aliases[1:], 1):
            assert http.post(f"{live_server}/webhooks/opsgenie", headers=headers, timeout=60,
                             json=opsgenie_body("Create", alias, priority="P4", n=n)).status_code == 200
    db.session.rollback()
    incident = db.session.get(Incident, first["incident"])
    for alert in db.session.scalars(sa.select(Alert).where(Alert.incident_id.is_(None))):
        services.attach_alert(db.session, alert, incident)
    db.session.commit()

    barrier = threading.Barrier(len(aliases))

    def close(n_alias: tuple[int, str]) -> int:
        n, alias = n_alias
        with requests.Session() as http:
            barrier.wait()
            return http.post(f"{live_server}/webhooks/opsgenie", json=opsgenie_body("Close", alias, n=100 + n),
                             headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(len(aliases)) as pool:
        assert list(pool.map(close, enumerate(aliases))) == [200] * len(aliases)
    lines = texts(incident.id)
    assert lines.count("All 12 alerts are closed") == 1
    assert lines.count("Status: triggered -> resolved") == 1
    assert fresh(Incident, id=incident.id).status == Status.RESOLVED


def test_counting_an_incidents_alerts_does_not_wait_for_a_transaction_adding_its_timeline(app, responder_client):
    """PostgreSQL: a transaction that only adds timeline entries to an incident (a Rollbar deploy noting every open
    incident) holds a key-share lock on it through the foreign key; the close count's lock must not wait for it,
    or the two wait for each other crosswise when the deploy then needs a row the count's transaction holds."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writer holds the whole database: two writers never interleave")
    from sqlalchemy.orm import Session

    from incidents.alert.services import incident_sync, integration_info
    from incidents.database import utcnow
    from incidents.incident import services as incident_services
    from incidents.incident.models import EntryKind

    row, token = make_integration("opsgenie", "ops")
    first = ok(post(responder_client, "opsgenie", opsgenie_body("Create", "a", priority="P1"), token))
    info, incident_id = integration_info(fresh(Integration, id=row.id)), first["incident"]

    with Session(db.engine) as deploy, Session(db.engine) as count:
        incident_services.add_timeline_entries(deploy, [incident_id], EntryKind.DEPLOY, "Deploy of 1.2.3",
                                               occurred_at=utcnow())
        count.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
        count.execute(sa.update(Alert).where(Alert.id == first["alert"])
                      .values(status=AlertStatus.CLOSED, closed_at=utcnow()))
        assert incident_sync.note_all_closed(count, info, [(incident_id, utcnow())], 1) == [incident_id]
        count.commit()
        deploy.commit()


def test_two_transactions_closing_the_last_two_alerts_count_one_after_the_other(app, responder_client):
    """PostgreSQL, step by step: A and B each close one of the two open alerts, A counts (B's alert still open: no
    line) and holds the incident; B's count waits for A's commit, then sees no alert open and writes the line.
    Without the incident lock B would count before A commits, see A's alert open, and nobody would say it."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writer holds the whole database: two writers never interleave")
    import threading

    from sqlalchemy.orm import Session

    from incidents.alert.services import incident_sync, integration_info
    from incidents.database import utcnow

    row, token = make_integration("opsgenie", "ops")
    first = ok(post(responder_client, "opsgenie", opsgenie_body("Create", "a", priority="P1"), token))
    second = ok(post(responder_client, "opsgenie", opsgenie_body("Create", "b", priority="P4", n=1), token))
    attach(responder_client, second["alert"], first["incident"])
    info, incident_id = integration_info(fresh(Integration, id=row.id)), first["incident"]
    close = sa.update(Alert).values(status=AlertStatus.CLOSED, closed_at=utcnow())

    with Session(db.engine) as a, Session(db.engine) as b:
        a.execute(close.where(Alert.id == first["alert"]))
        b.execute(close.where(Alert.id == second["alert"]))
        assert incident_sync.note_all_closed(a, info, [(incident_id, utcnow())], 1) == []
        done: list[list[int]] = []
        waiting = threading.Thread(target=lambda: done.append(
            incident_sync.note_all_closed(b, info, [(incident_id, utcnow())], 2)))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive(), "B counted while A held the incident"
        a.commit()
        waiting.join(10)
        assert done == [[incident_id]]
        b.commit()
    assert texts(incident_id).count("All 2 alerts are closed") == 1
