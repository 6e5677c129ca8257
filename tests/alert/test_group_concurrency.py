"""An Alertmanager group's life under concurrent senders, through a real gunicorn (2 workers x 8 threads).

An HA pair of Alertmanagers (or a sender retrying on a timeout) posts the same group notification several times
at once. Each notification below is posted by SENDERS threads released together; the next one waits for all
answers. The group fires with 2 alerts, re-fires with 4 (the first two repeated with the same startsAt), then
resolves them one by one; the database must end with exactly the right alerts open, one occurrence per firing,
one incident per alert and one "resolved" line per resolve, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import requests
import sqlalchemy as sa

from incidents.alert.models import Alert, AlertStatus, Delivery
from incidents.extensions import db
from incidents.incident.models import Incident, TimelineEntry
from tests.alert.conftest import make_integration

SENDERS = 8
FINGERPRINTS = ["a0000000000000a1", "a0000000000000a2", "a0000000000000a3", "a0000000000000a4"]
STARTS = {fp: f"2026-11-30T01:0{n}:00.123456789Z" for n, fp in enumerate(FINGERPRINTS)}
NOT_SET = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's endsAt of a firing alert


def am_alert(fp: str, status: str = "firing", starts: str | None = None) -> dict:
    """One alert of a version 4 group, as Alertmanager's webhook notifier sends it."""
    host = f"node-{fp[-1]}"
    return {"status": status,
            "labels": {"alertname": "NodeDown", "instance": f"{host}:9100", "job": "node", "severity": "critical"},
            "annotations": {"summary": f"{host} is down", "description": f"{host} has not answered for 5 minutes."},
            "startsAt": starts or STARTS[fp],
            "endsAt": "2026-11-30T02:00:00Z" if status == "resolved" else NOT_SET,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0", "fingerprint": fp}


def group(*alerts: dict) -> dict:
    firing = any(a["status"] == "firing" for a in alerts)
    return {"version": "4", "groupKey": '{}/{}:{alertname="NodeDown"}', "truncatedAlerts": 0,
            "status": "firing" if firing else "resolved", "receiver": "incidents",
            "groupLabels": {"alertname": "NodeDown"}, "commonLabels": {"alertname": "NodeDown", "job": "node"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def send_at_once(base: str, token: str, body: dict, senders: int = SENDERS) -> list[dict]:
    """`senders` threads post the same notification at the same moment (Bearer token, as http_config sends it)."""
    barrier = threading.Barrier(senders)

    def sender(_n: int) -> tuple[int, dict]:
        with requests.Session() as http:
            barrier.wait()
            r = http.post(f"{base}/webhooks/alertmanager", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
            return r.status_code, r.json()

    with ThreadPoolExecutor(senders) as pool:
        answers = list(pool.map(sender, range(senders)))
    assert [code for code, _ in answers] == [200] * senders, answers
    return [answer for _, answer in answers]


FIELDS = ("id", "fingerprint", "status", "occurrence", "occurrence_count", "event_count", "incident_id", "closed_at")


def rows() -> list[SimpleNamespace]:
    """Every alert, by fingerprint then age, as plain values read in a transaction of its own: the test must not
    hold SQLite's database open between the server's writes."""
    db.session.rollback()
    found = [SimpleNamespace(**{f: getattr(a, f) for f in FIELDS})
             for a in db.session.scalars(sa.select(Alert).order_by(Alert.fingerprint, Alert.id))]
    db.session.rollback()
    return found


def count(stmt) -> int:
    db.session.rollback()
    n = db.session.scalar(stmt)
    db.session.rollback()
    return n


def open_fingerprints() -> list[str]:
    return sorted(a.fingerprint for a in rows() if a.status.is_open)


def lines(text: str, incident_id: int | None = None) -> int:
    stmt = sa.select(sa.func.count(TimelineEntry.id)).where(TimelineEntry.text == text)
    if incident_id is not None:
        stmt = stmt.where(TimelineEntry.incident_id == incident_id)
    return count(stmt)


def test_group_fires_grows_and_resolves_one_by_one_under_concurrent_senders(app, live_server):
    _, token = make_integration("alertmanager", "prod-cluster")
    a1, a2, a3, a4 = FINGERPRINTS

    send_at_once(live_server, token, group(am_alert(a1), am_alert(a2)))
    assert open_fingerprints() == [a1, a2]
    assert [(a.occurrence_count, a.event_count) for a in rows()] == [(1, SENDERS)] * 2

    # The group grows: a1 and a2 again with their startsAt (the same firing), a3 and a4 new.
    send_at_once(live_server, token, group(*(am_alert(fp) for fp in FINGERPRINTS)))
    assert open_fingerprints() == FINGERPRINTS
    assert [(a.fingerprint, a.occurrence_count, a.event_count) for a in rows()] == [
        (a1, 1, 2 * SENDERS), (a2, 1, 2 * SENDERS), (a3, 1, SENDERS), (a4, 1, SENDERS)]
    assert [a.occurrence for a in rows()] == [STARTS[fp] for fp in FINGERPRINTS]

    # Resolved one by one; a resolved alert stays in the next notification once more (the other peer's view).
    steps = [group(am_alert(a1, "resolved"), am_alert(a2), am_alert(a3), am_alert(a4)),
             group(am_alert(a1, "resolved"), am_alert(a2, "resolved"), am_alert(a3), am_alert(a4)),
             group(am_alert(a2, "resolved"), am_alert(a3, "resolved"), am_alert(a4)),
             group(am_alert(a3, "resolved"), am_alert(a4, "resolved"))]
    expected_open = [[a2, a3, a4], [a3, a4], [a4], []]
    for body, still_open in zip(steps, expected_open, strict=True):
        send_at_once(live_server, token, body)
        assert open_fingerprints() == still_open

    found = rows()
    assert [a.fingerprint for a in found] == FINGERPRINTS  # one row per alert: no resolve or re-send made another
    assert all(a.status == AlertStatus.RESOLVED and a.closed_at is not None for a in found)
    assert [a.occurrence_count for a in found] == [1, 1, 1, 1]
    # Firing deliveries each counted; of the SENDERS copies of a resolve, exactly one found the alert open.
    firing = {a1: 2, a2: 3, a3: 3, a4: 4}  # notifications each came in firing
    assert [a.event_count for a in found] == [firing[fp] * SENDERS + 1 for fp in FINGERPRINTS]

    incidents = sorted(db.session.scalars(sa.select(Incident.id)))
    db.session.rollback()
    assert len(incidents) == 4 and sorted(a.incident_id for a in found) == incidents
    for n, alert in enumerate(found, start=1):
        assert lines(f"Opened from Alertmanager alert: node-{n} is down", alert.incident_id) == 1
        assert lines("Alertmanager: alert resolved", alert.incident_id) == 1, alert.fingerprint
    # Every copy was stored (Alertmanager re-sends on purpose: identical bodies are not retries to drop).
    assert count(sa.select(sa.func.count(Delivery.id))) == 6 * SENDERS


def test_refire_after_a_resolve_is_a_new_occurrence_and_a_resend_is_not(app, live_server):
    _, token = make_integration("alertmanager", "prod-cluster")
    a1 = FINGERPRINTS[0]
    send_at_once(live_server, token, group(am_alert(a1)))
    send_at_once(live_server, token, group(am_alert(a1, "resolved")))
    assert open_fingerprints() == []

    later = "2026-11-30T03:00:00Z"
    send_at_once(live_server, token, group(am_alert(a1, starts=later)))  # fires again: a new firing episode
    send_at_once(live_server, token, group(am_alert(a1, starts=later)))  # the repeat interval re-sends it
    first, second = rows()
    assert (first.status, first.occurrence, first.occurrence_count) == (AlertStatus.RESOLVED, STARTS[a1], 1)
    assert (second.status, second.occurrence, second.occurrence_count) == (AlertStatus.OPEN, later, 1)
    assert second.event_count == 2 * SENDERS
    assert second.incident_id is not None and second.incident_id != first.incident_id
    assert count(sa.select(sa.func.count(Incident.id))) == 2

    # A new startsAt while the alert is still open (Alertmanager lost the resolve, or restarted): one more
    # occurrence on the same alert, however many copies of the notification arrive at once.
    again = "2026-11-30T04:00:00Z"
    send_at_once(live_server, token, group(am_alert(a1, starts=again)))
    first, second = rows()
    assert (second.status, second.occurrence, second.occurrence_count) == (AlertStatus.OPEN, again, 2)
    assert second.event_count == 3 * SENDERS
    assert count(sa.select(sa.func.count(Incident.id))) == 2


def test_a_lagging_peers_firing_resend_after_the_resolve_does_not_reopen(app, live_server):
    """An HA pair: one peer sends the resolve, the other (its notification log not yet gossiped) still re-sends
    the firing notification with the same startsAt. The same startsAt is the same, ended, occurrence."""
    _, token = make_integration("alertmanager", "prod-cluster")
    a1 = FINGERPRINTS[0]
    send_at_once(live_server, token, group(am_alert(a1)))
    send_at_once(live_server, token, group(am_alert(a1, "resolved")))
    send_at_once(live_server, token, group(am_alert(a1)), senders=2)  # the lagging peer's repeat
    assert open_fingerprints() == []
    assert [a.occurrence_count for a in rows()] == [1]
    assert count(sa.select(sa.func.count(Incident.id))) == 1
