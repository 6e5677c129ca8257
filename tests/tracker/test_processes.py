"""Real processes against the fake Shortcut: a worker killed between the create and our commit, and the
quickstart path (`incidents serve` alone, with its built-in worker, creates the card)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from incidents import create_app
from incidents.action_item import services as items
from incidents.database import utcnow
from incidents.extensions import alembic, db
from incidents.jobs import get_queue
from incidents.tracker import jobs
from incidents.tracker.models import ExportStatus
from tests.factories import make_token, make_user
from tests.tracker.fake_shortcut import Fault
from tests.tracker.helpers import make_exportable_item

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                                reason="these processes run on their own SQLite instance; one run is enough")


def shortcut_env(fake) -> dict[str, str]:
    return {"SHORTCUT_API_URL": fake.url, "SHORTCUT_API_TOKEN": fake.token,
            "SHORTCUT_WORKFLOW_STATE_ID": str(fake.state_id("unstarted"))}


def process_env(instance: Path, fake, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env.update({f"INCIDENTS_{k}": v for k, v in (shortcut_env(fake) | extra).items()})
    env.update(INCIDENTS_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    return env


def producer(instance: Path, fake, monkeypatch):
    """An app on the instance folder's SQLite database and queue, as `serve` and `worker` will see them."""
    monkeypatch.setenv("INCIDENTS_INSTANCE_PATH", str(instance))
    app = create_app(shortcut_env(fake) | {"QUEUE_IMMEDIATE": False, "NOTIFY_ON_COMMIT": False})
    with app.app_context():
        alembic.upgrade()
    return app


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def test_worker_killed_between_create_and_commit_and_the_next_run_adopts(tmp_path, fake_shortcut, monkeypatch):
    app = producer(tmp_path, fake_shortcut, monkeypatch)
    with app.app_context():
        item = make_exportable_item()
        export = jobs.queue_export(db.session, item, app.config)
        db.session.commit()
        export_id, item_id = export.id, item.id
        assert len(get_queue().huey) == 1  # queued for the worker, nothing sent yet
    xid = f"incidents:action-item:{item_id}"

    # Shortcut creates the story, then holds its answer: the worker sits between the call and its commit.
    fake_shortcut.inject("createStory", Fault.process_then_delay(60))
    worker = subprocess.Popen([sys.executable, "-m", "incidents", "worker", "--burst"], cwd=ROOT,
                              env=process_env(tmp_path, fake_shortcut, SHORTCUT_TIMEOUT="120"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: fake_shortcut.stories_with_external_id(xid), "the fake to record the create")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    [story] = fake_shortcut.stories_with_external_id(xid)

    with app.app_context():
        export = items.get_action_item(db.session, item_id).export
        assert export.status == ExportStatus.PENDING and export.story_id is None  # our commit never happened
        assert export.attempts == 1 and export.claimed_until > utcnow()
        db.session.commit()
        assert jobs.send_export(export_id) == "skipped"  # the dead worker's lease still holds the row
        after_lease = utcnow() + timedelta(seconds=app.config["SHORTCUT_EXPORT_LEASE"] + 1)
        assert jobs.send_export(export_id, now=after_lease) == "adopted"
        export = items.get_action_item(db.session, item_id).export
        assert export.status == ExportStatus.SENT and export.story_id == story["id"]
        assert export.story_url == story["app_url"]
    assert len(fake_shortcut.stories_with_external_id(xid)) == 1
    assert len(fake_shortcut.calls("createStory")) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart_serve_alone_creates_the_card(tmp_path, fake_shortcut, monkeypatch):
    app = producer(tmp_path, fake_shortcut, monkeypatch)
    with app.app_context():
        token = make_token(make_user(email="lead@example.com", role="responder"))
        item_id = make_exportable_item().id

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "incidents", "serve", "--port", str(port), "--workers", "1"],
                              cwd=ROOT, env=process_env(tmp_path, fake_shortcut), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        def up():
            try:
                return requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:  # refused, or accepted while the worker still boots (a busy host)
                assert server.poll() is None, "incidents serve exited"
                return False

        wait_for(up, "incidents serve to answer")
        response = requests.post(f"{url}/api/v1/action-items/{item_id}/export", timeout=10,
                                 headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 202, response.text
        assert response.json()["export"]["status"] == "pending"  # recorded; the worker sends it
        [story] = wait_for(lambda: fake_shortcut.stories_with_external_id(f"incidents:action-item:{item_id}"),
                           "the story to appear in the fake Shortcut")
        shown = wait_for(lambda: (r := requests.get(f"{url}/api/v1/action-items/{item_id}", timeout=10,
                                                    headers={"Authorization": f"Bearer {token}"}).json())
                         ["export"]["status"] == "sent" and r, "the export to be recorded as sent")
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=60)[0]
    assert "Starting a background-job worker" in output
    assert shown["export"]["story_id"] == story["id"] and shown["export"]["story_url"] == story["app_url"]
    assert story["name"] == "Add a circuit breaker to the payments client"
    assert f"]({url}/incidents/" in story["description"]  # serve handed its worker the address it listens on
    assert story["workflow_state_id"] == fake_shortcut.state_id("unstarted")
    assert len(fake_shortcut.calls("createStory")) == 1
