"""User-stored URLs (a team's Slack webhook) never reach private, loopback or link-local addresses (issue 11,
finding 7): refused when saved, and refused again at send time before any connection is made."""

from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa

from incidents import outbound
from incidents.catalog.models import Team
from incidents.notify.models import DeliveryStatus, NotificationLog
from incidents.notify.services import Event, send_incident_notification
from tests.conftest import post_form
from tests.factories import make_incident, make_service, make_team
from tests.webhook_server import Listener


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def strict(app, monkeypatch):
    monkeypatch.setitem(app.config, "OUTBOUND_ALLOW_PRIVATE", False)
    monkeypatch.setitem(app.config, "SMTP_URL", "")
    monkeypatch.setitem(app.config, "NOTIFY_SEVERITIES", "SEV1")
    monkeypatch.setitem(app.config, "SLACK_WEBHOOK_URL", "")
    return app.config


PRIVATE = ["https://127.0.0.1/services/T/B/x", "https://169.254.169.254/latest/meta-data/", "https://10.1.2.3/hook",
           "https://[::1]/hook", "https://localhost/hook", "https://192.168.0.10/hook", "https://metadata/x",
           "https://[::ffff:127.0.0.1]/hook"]


@pytest.mark.parametrize("url", [*PRIVATE, "http://hooks.slack.com/services/T/B/x", "ftp://hooks.slack.com/x"])
def test_saving_a_private_or_plain_http_team_hook_is_422_naming_the_field(session, admin_client, strict, url):
    team = make_team(name="Payments", slug="payments")
    response = post_form(admin_client, f"/admin/teams/{team.id}/edit",
                         {"name": "Payments", "slug": "payments", "description": "", "slack_webhook_url": url})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Not a public address." in page or "Not an https:// URL." in page
    session.expire_all()
    assert session.get(Team, team.id).slack_webhook_url is None


def test_public_https_hook_is_saved(session, strict):
    assert outbound.check_user_url(" https://hooks.slack.com/services/T/B/x ", "f") == \
        "https://hooks.slack.com/services/T/B/x"


def test_private_targets_are_allowed_when_the_operator_says_so(session, app):
    assert outbound.check_user_url("http://127.0.0.1:8080/hook", "f", allow_private=True) == \
        "http://127.0.0.1:8080/hook"


@pytest.fixture
def team_with_stored_hook(session, strict):
    """A team whose hook was stored before the rule (or by any other path): the send-time check must hold."""
    def make(url: str):
        team = make_team(name="Payments")
        session.execute(sa.update(Team).where(Team.id == team.id).values(slack_webhook_url=url))
        session.commit()
        service = make_service(name="Checkout", team_id=team.id)
        return make_incident(title="Checkout down", severity="SEV1", service_id=service.id), team
    return make


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_sending_to_a_stored_loopback_hook_is_refused_before_any_connection(
        session, app, listener, team_with_stored_hook, host):
    incident, team = team_with_stored_hook(f"https://{host}:{listener.port}/services/T/B/secret")

    report = send_incident_notification(incident.id, Event.opened(incident.id).as_dict())

    assert report.rejected == [f"slack:team:{team.id}"] and report.sent == []
    row = session.scalar(sa.select(NotificationLog))
    assert row.status == DeliveryStatus.REJECTED and "refused" in row.last_error
    assert "secret" not in row.last_error
    assert listener.connections == 0


@pytest.mark.parametrize("url", ["https://169.254.169.254/latest/meta-data/", "https://10.1.2.3/hook"])
def test_metadata_and_private_addresses_are_refused_at_send(url, strict, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(outbound.RefusedURL):
        outbound.post(url, json={"text": "x"}, timeout=1)


def test_a_name_that_resolves_elsewhere_after_the_check_is_refused_on_connect(strict, listener, monkeypatch):
    """DNS rebinding: the check saw a public address, the connection reached a private one: nothing is sent."""
    monkeypatch.setattr(outbound, "check_target", lambda url, **kw: None)
    with pytest.raises(outbound.RefusedURL):
        outbound.post(f"http://127.0.0.1:{listener.port}/hook", json={"text": "x"}, timeout=2, allow_private=False)
    listener.close()
    assert listener.received == b""


def test_operator_global_hook_is_not_restricted(session, app, strict, slack_server_here):
    strict["SLACK_WEBHOOK_URL"] = slack_server_here.url("/services/G/B/global")  # restored by `strict`
    incident = make_incident(title="Checkout down", severity="SEV1")
    report = send_incident_notification(incident.id, Event.opened(incident.id).as_dict())
    assert report.sent == ["slack:global"] and len(slack_server_here.posts) == 1


@pytest.fixture
def slack_server_here():
    from tests.webhook_server import WebhookServer

    server = WebhookServer()
    yield server
    server.close()
