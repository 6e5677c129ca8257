"""Fixtures of the notification tests: a local Slack webhook receiver and the app pointed at it and at SMTP."""

from __future__ import annotations

import pytest

from tests.webhook_server import WebhookServer

GLOBAL_HOOK = "/services/T000/B000/global-secret"
TEAM_HOOK = "/services/T000/B001/team-secret"


@pytest.fixture(scope="session")
def _slack_server():
    server = WebhookServer()
    yield server
    server.close()


@pytest.fixture
def slack_server(_slack_server):
    _slack_server.reset()
    yield _slack_server
    _slack_server.release()


@pytest.fixture
def notify_config(app, smtp_server, slack_server):
    """SMTP on loopback, the global Slack hook on the local receiver; restored afterwards."""
    changes = {
        "SMTP_URL": smtp_server.url, "SMTP_TIMEOUT": 5, "MAIL_FROM": "Incidents <incidents@example.org>",
        "SLACK_WEBHOOK_URL": slack_server.url(GLOBAL_HOOK), "SLACK_TIMEOUT": 5, "NOTIFY_SEVERITIES": "SEV1,SEV2",
        "BASE_URL": "https://incidents.example.org",
        "OUTBOUND_ALLOW_PRIVATE": True,  # the team hooks post to the local receiver
    }
    saved = {k: app.config.get(k) for k in changes}
    app.config.update(changes)
    yield app.config
    app.config.update(saved)
