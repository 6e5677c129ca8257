"""A real worker process killed with SIGKILL between Slack creating the channel and our recording it: the next run
finds the channel its earlier attempt made, so the incident still has exactly one channel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from incidents import create_app
from incidents.extensions import alembic, db
from incidents.jobs import get_queue
from incidents.slack import jobs, services
from incidents.slack.models import OutboxState, SlackOutbox
from tests.factories import make_incident
from tests.slack.fake_slack import FakeSlack
from tests.tracker.test_processes import wait_for

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                                reason="these processes run on their own SQLite instance; one run is enough")


def test_worker_killed_after_the_channel_was_made_still_ends_with_one_channel(tmp_path, slack_spec, monkeypatch):
    fake = FakeSlack(slack_spec).start()
    settings = {"SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": fake.token, "SLACK_TIMEOUT": "120"}
    monkeypatch.setenv("INCIDENTS_INSTANCE_PATH", str(tmp_path))
    app = create_app(settings | {"QUEUE_IMMEDIATE": False, "NOTIFY_ON_COMMIT": False})
    with app.app_context():
        alembic.upgrade()
        incident_id = make_incident(title="Killed worker").id
        assert len(get_queue().huey) == 1  # the channel's setup waits for the worker
    fake.fail("conversations.create", hold=60)  # Slack makes the channel, the answer never comes in time
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env |= {f"INCIDENTS_{k}": v for k, v in settings.items()}
    env |= {"INCIDENTS_INSTANCE_PATH": str(tmp_path), "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "incidents", "worker", "--burst"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    prefix = f"inc-{incident_id}-"
    try:
        wait_for(lambda: any(c["name"].startswith(prefix) for c in fake.channels.values()), "the channel")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    try:
        with app.app_context():
            assert services.channel_of(db.session, incident_id) is None  # never recorded
            row = db.session.query(SlackOutbox).filter_by(key=f"incident:{incident_id}:create").one()
            assert row.state == OutboxState.SENDING
            db.session.commit()
            jobs.setup_channel.run_now(incident_id)  # the retry
            link = services.channel_of(db.session, incident_id)
        ours = [c for c in fake.channels.values() if c["name"].startswith(prefix)]
        assert len(ours) == 1 and link.channel_id == ours[0]["id"]
        # The resumed step looked for the channel its earlier attempt made (ours: created by our bot) first.
        assert len(fake.called("conversations.create")) == 1 and fake.called("conversations.list")
        assert fake.summary(link.channel_id) is not None
        assert fake.violations == []
    finally:
        fake.stop()
