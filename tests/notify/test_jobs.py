"""The automatic path: a committed declaration or status change reaches Slack and subscribers through a job."""

from __future__ import annotations

import pytest

from incidents.incident import services as incidents
from incidents.jobs import get_queue
from incidents.notify import services as notify
from tests.conftest import post_form
from tests.factories import make_service, make_user
from tests.notify.conftest import GLOBAL_HOOK


@pytest.fixture
def automatic(app, notify_config):
    app.config["NOTIFY_ON_COMMIT"] = True
    yield
    app.config["NOTIFY_ON_COMMIT"] = False


def test_declaring_and_resolving_in_the_web_ui_notifies_after_commit(automatic, app, session, client, slack_server,
                                                                      smtp_server):
    service = make_service(name="Checkout API")
    rita = make_user(email="rita@example.com", name="Rita Responder")
    notify.subscribe(session, rita, team_id=None, severities=["SEV1"])
    session.commit()
    from tests.conftest import login

    login(client, rita)
    response = post_form(client, "/incidents/new", {"title": "Checkout returns 502", "severity": "SEV1",
                                                    "service_id": str(service.id)})
    assert response.status_code == 302
    ref = response.headers["Location"].rsplit("/", 1)[-1]
    resolve = {"status": "resolved", "resolution": "Fixed"}
    assert post_form(client, f"/incidents/{ref}/status", resolve).status_code == 302

    posts = slack_server.to(GLOBAL_HOOK)
    assert len(posts) == 2
    assert "Checkout returns 502" in posts[0]["text"] and "resolved" in posts[1]["text"].lower()
    subjects = [m.message["Subject"] for m in smtp_server.messages]
    assert len(subjects) == 2 and all(ref in s for s in subjects)
    assert get_queue().failures == []


def test_rolled_back_change_announces_nothing(automatic, session, slack_server):
    service = make_service(name="Search")
    incident = incidents.create_incident(session, title="Never committed", severity="SEV1", service_id=service.id)
    assert incident.id
    session.rollback()
    session.commit()
    assert slack_server.to(GLOBAL_HOOK) == []


def test_low_severity_is_not_announced_to_slack(automatic, session, slack_server):
    service = make_service(name="Search")
    incidents.create_incident(session, title="Minor glitch", severity="SEV4", service_id=service.id)
    session.commit()
    assert slack_server.to(GLOBAL_HOOK) == []


def test_an_update_posted_through_the_api_is_announced_after_commit(automatic, app, session, client, slack_server,
                                                                     smtp_server):
    from tests.conftest import login
    from tests.factories import ApiClient, make_incident, make_token

    watcher = make_user(email="watcher@example.com", name="Will Watcher", role="viewer")
    incident = make_incident(severity="SEV4")  # below NOTIFY_SEVERITIES: only the update is announced
    login(client, watcher)
    assert post_form(client, f"/incidents/{incident.ref}/subscribe").status_code == 302
    page = client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
    assert "Unsubscribe" in page and "1 following" in page
    api = ApiClient(client, make_token(make_user()))
    response = api.post(f"/api/v1/incidents/{incident.ref}/updates",
                        json={"impact": "Search results stale", "actions": "Reindexing"})
    assert response.status_code == 201
    post, = slack_server.to(GLOBAL_HOOK)
    assert "update" in post["text"] and incident.ref in post["text"]
    mail, = smtp_server.to("watcher@example.com")
    assert "Reindexing" in mail.text
    assert post_form(client, f"/incidents/{incident.ref}/subscribe", {"subscribe": "0"}).status_code == 302
    assert notify.followers(session, incident) == []
    assert get_queue().failures == []
