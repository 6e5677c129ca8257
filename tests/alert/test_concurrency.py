"""Many deliveries for one fingerprint at the same moment, on different gunicorn workers: the database
constraint (not timing) keeps one alert, one incident and the exact count, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa

from incidents.alert.models import Alert, Delivery
from incidents.extensions import db
from incidents.incident.models import Incident, TimelineEntry
from tests.alert.conftest import fixture, make_integration

THREADS = 48
PER_THREAD = 4


def _occurrence(n: int, event: str) -> dict:
    payload = copy.deepcopy(fixture("rollbar_new_item_production"))
    payload["event_name"] = event
    payload["data"]["item"]["last_occurrence"]["uuid"] = f"00000000-0000-4000-8000-{n:012d}"
    return payload


def _storm(base: str, token: str, payloads: list[dict]) -> list[int]:
    barrier = threading.Barrier(THREADS)
    chunks = [payloads[i::THREADS] for i in range(THREADS)]

    def sender(chunk: list[dict]) -> list[int]:
        with requests.Session() as http:
            barrier.wait()  # everyone starts at once
            return [http.post(f"{base}/webhooks/rollbar", json=p, headers={"X-Incidents-Token": token},
                              timeout=60).status_code for p in chunk]

    with ThreadPoolExecutor(THREADS) as pool:
        return [code for codes in pool.map(sender, chunks) for code in codes]


def test_concurrent_deliveries_of_one_fingerprint(app, live_server):
    _, token = make_integration("rollbar", "storm")
    distinct = THREADS * PER_THREAD
    # Half are new_item (the race to insert the alert and open its incident), half occurrence events;
    # and every tenth delivery is sent twice (Rollbar retrying), which must change nothing.
    payloads = [_occurrence(n, "new_item" if n % 2 else "occurrence") for n in range(distinct)]
    payloads += [copy.deepcopy(payloads[n]) for n in range(0, distinct, 10)]
    codes = _storm(live_server, token, payloads)
    assert codes.count(200) == len(payloads), sorted(set(codes))

    db.session.expire_all()
    alerts = list(db.session.scalars(sa.select(Alert)))
    assert len(alerts) == 1
    assert alerts[0].occurrence_count == distinct and alerts[0].event_count == distinct
    incidents = list(db.session.scalars(sa.select(Incident)))
    assert len(incidents) == 1 and alerts[0].incident_id == incidents[0].id
    assert db.session.scalar(sa.select(sa.func.count(Delivery.id))) == distinct
    opened = db.session.scalar(sa.select(sa.func.count(TimelineEntry.id)).where(
        TimelineEntry.text.like("Opened from%")))
    assert opened == 1


def test_query_token_never_reaches_the_access_log(app, live_server, tmp_path):
    _, token = make_integration("rollbar", "logged")
    response = requests.post(f"{live_server}/webhooks/rollbar?token={token}",
                             json=fixture("rollbar_new_item_production"), timeout=30)
    assert response.status_code == 200 and token not in response.text
    refused = requests.post(f"{live_server}/webhooks/rollbar?token=whk_guessed-token-12345", json={}, timeout=30)
    assert refused.status_code == 401
    deadline = time.monotonic() + 10  # gunicorn writes a request's line just after sending its response
    while (log := (tmp_path / "access.log").read_text()).count("POST /webhooks/rollbar") < 2:
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    assert "/webhooks/rollbar?token=[redacted]" in log
    assert token not in log and "whk_guessed-token-12345" not in log
    # Every request, not only the matched webhook route: a 404, a 405, a trailing slash, a percent-encoded name.
    for method, url in (("POST", "/webhooks/OpsGenie?token=whk_s3cret-1"),
                        ("GET", "/webhooks/rollbar?token=whk_s3cret-2"),
                        ("POST", "/webhooks/rollbar/?token=whk_s3cret-3"),
                        ("POST", "/webhooks/rollbar?tok%65n=whk_s3cret-4")):
        answer = requests.request(method, live_server + url, json={}, timeout=30, allow_redirects=False)
        assert answer.status_code in (302, 401, 404, 405)  # 302: no user yet, a page leads to the setup form
    deadline = time.monotonic() + 10
    while (log := (tmp_path / "access.log").read_text()).lower().count(" /webhooks/") < 6:
        assert time.monotonic() < deadline, log
        time.sleep(0.05)
    assert "whk_s3cret" not in log and log.count("[redacted]") >= 6, log
