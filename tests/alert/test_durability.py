"""Nothing acknowledged is lost: `incidents serve` killed with SIGKILL (its master, web workers and job worker at
once) in the middle of a stream of deliveries. Every delivery answered 2xx before the kill is stored; after a
restart the senders' retries of the rest are applied exactly once (their dedup keys), so the alert counts come
out exact. On SQLite and PostgreSQL (the suite runs on both)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
import sqlalchemy as sa

from incidents.alert.models import Alert, Delivery
from incidents.extensions import db
from tests.alert.conftest import fixture, free_port, make_integration

ROOT = Path(__file__).resolve().parents[2]
ITEMS, PER_ITEM, SENDERS = 4, 60, 8
KILL_AFTER = 80  # acknowledged deliveries before the kill


def _occurrence(item: int, n: int) -> dict:
    payload = copy.deepcopy(fixture("rollbar_new_item_production"))
    payload["event_name"] = "occurrence"
    payload["data"]["item"]["id"] = 7000 + item
    payload["data"]["item"]["title"] = f"Error {item}"
    payload["data"]["item"]["last_occurrence"]["uuid"] = f"00000000-0000-4000-8000-{item:04d}{n:08d}"
    return payload


class Serve:
    """`incidents serve` in a session of its own, so that one killpg takes the master and all its children."""

    def __init__(self, db_url: str, instance: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env |= {"INCIDENTS_DATABASE_URL": db_url, "INCIDENTS_SECRET_KEY": "test-secret",
                "INCIDENTS_INSTANCE_PATH": str(instance), "PYTHONPATH": str(ROOT)}
        self.log = (instance.parent / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "incidents", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "2", "--threads", "4"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()


def _send(url: str, token: str, payloads: dict[int, dict], stop_after: int | None, on_enough) -> dict[int, dict]:
    """POST each payload once from SENDERS threads; returns {index: answer} of those answered 2xx. Once
    `stop_after` are answered, `on_enough` is called (once); deliveries that then fail are simply not answered."""
    answered: dict[int, dict] = {}
    lock = threading.Lock()
    fired = threading.Event()
    keys = sorted(payloads)

    def sender(mine: list[int]) -> None:
        with requests.Session() as http:
            for i in mine:
                try:
                    r = http.post(f"{url}/webhooks/rollbar", json=payloads[i],
                                  headers={"X-Incidents-Token": token}, timeout=30)
                except requests.RequestException:
                    continue
                if 200 <= r.status_code < 300:
                    with lock:
                        answered[i] = r.json()
                        enough = stop_after is not None and len(answered) >= stop_after and not fired.is_set()
                        if enough:
                            fired.set()
                    if enough:
                        on_enough()

    threads = [threading.Thread(target=sender, args=(keys[k::SENDERS],)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered


def test_a_server_killed_mid_stream_lost_nothing_it_acknowledged(app, db_url, tmp_path):
    _, token = make_integration("rollbar", "durable")
    db.session.commit()
    instance = tmp_path / "instance"
    payloads = {item * PER_ITEM + n: _occurrence(item, n) for item in range(ITEMS) for n in range(PER_ITEM)}

    server = Serve(db_url, instance)
    try:
        before = _send(server.url, token, payloads, KILL_AFTER, server.kill)
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert KILL_AFTER <= len(before) < len(payloads), len(before)  # killed mid-stream

    # Every acknowledged delivery is committed: its row is there, processed.
    db.session.expire_all()
    stored = dict(db.session.execute(sa.select(Delivery.id, Delivery.outcome)).all())
    db.session.rollback()
    acknowledged = {answer["delivery"] for answer in before.values()}
    assert acknowledged <= stored.keys(), sorted(acknowledged - stored.keys())[:5]
    assert {str(getattr(stored[d], "value", stored[d])) for d in acknowledged} == {"processed"}

    # The senders retry what was not acknowledged: each is applied once, whether or not it had been committed.
    server = Serve(db_url, instance)
    try:
        rest = {i: p for i, p in payloads.items() if i not in before}
        after = _send(server.url, token, rest, None, None)
    finally:
        server.stop()
    assert after.keys() == rest.keys()
    assert {answer["outcome"] for answer in after.values()} <= {"processed", "duplicate"}

    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count(Delivery.id))) == len(payloads)
    counts = sorted(db.session.execute(sa.select(Alert.fingerprint, Alert.occurrence_count)).all())
    assert counts == [(str(7000 + item), PER_ITEM) for item in range(ITEMS)]
