"""The subscriptions page and the team's Slack webhook field."""

from __future__ import annotations

import re

import sqlalchemy as sa

from incidents.notify.models import Subscription
from tests.conftest import login, post_form
from tests.factories import make_team, make_user


def subs(session, user):
    session.expire_all()
    return [(s.team_id, s.severities) for s in
            session.scalars(sa.select(Subscription).where(Subscription.user_id == user.id).order_by(Subscription.id))]


def test_page_needs_sign_in(client, admin):
    response = client.get("/account/notifications")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_new_form_defaults_to_the_configured_severities(viewer_client):
    page = viewer_client.get("/account/notifications").get_data(as_text=True)
    assert "You get no incident e-mail yet." in page
    checked = re.findall(r'name="severities" value="(SEV\d)" checked', page)
    assert checked == ["SEV1", "SEV2"]


def test_subscribe_replace_and_unsubscribe(session, viewer_client, viewer):
    team = make_team(name="Payments")
    response = post_form(viewer_client, "/account/notifications", {"team_id": str(team.id),
                                                                     "severities": ["SEV1", "SEV3"]})
    assert response.status_code == 302
    post_form(viewer_client, "/account/notifications", {"team_id": "", "severities": ["SEV1"]})
    assert subs(session, viewer) == [(team.id, "SEV1,SEV3"), (None, "SEV1")]

    page = viewer_client.get("/account/notifications").get_data(as_text=True)
    assert "You will get e-mail about all incidents (SEV1)." in page
    assert re.search(r"<td>Payments</td>\s*<td>SEV1, SEV3</td>", page)
    assert re.search(r"<td>All teams</td>\s*<td>SEV1</td>", page)

    # The same team again replaces its severities rather than adding a second row.
    post_form(viewer_client, "/account/notifications", {"team_id": str(team.id), "severities": ["SEV4", "SEV2"]})
    assert subs(session, viewer) == [(team.id, "SEV2,SEV4"), (None, "SEV1")]

    sub_id = session.scalar(sa.select(Subscription.id).where(Subscription.team_id == team.id))
    assert post_form(viewer_client, f"/account/notifications/{sub_id}/delete").status_code == 302
    assert subs(session, viewer) == [(None, "SEV1")]


def test_refuses_no_or_unknown_severities_and_unknown_teams(session, viewer_client, viewer):
    response = post_form(viewer_client, "/account/notifications", {"team_id": ""})
    assert response.status_code == 422
    assert "Choose one or more of SEV1-SEV4." in response.get_data(as_text=True)
    assert post_form(viewer_client, "/account/notifications", {"severities": ["SEV9"]}).status_code == 422
    response = post_form(viewer_client, "/account/notifications", {"team_id": "999999", "severities": ["SEV1"]})
    assert response.status_code == 422 and "Unknown team." in response.get_data(as_text=True)
    assert subs(session, viewer) == []


def test_form_needs_csrf(viewer_client, viewer, session):
    response = viewer_client.post("/account/notifications", data={"severities": ["SEV1"]})
    assert response.status_code == 400
    assert subs(session, viewer) == []


def test_cannot_remove_someone_elses_subscription(session, client, viewer):
    other = make_user()
    login(client, other)
    post_form(client, "/account/notifications", {"severities": ["SEV1"]})
    sub_id = session.scalar(sa.select(Subscription.id))
    login(client, viewer)
    assert post_form(client, f"/account/notifications/{sub_id}/delete").status_code == 404
    assert subs(session, other) == [(None, "SEV1")]


def test_admin_sets_keeps_and_clears_a_team_webhook_without_ever_showing_it(session, admin_client):
    team = make_team(name="Payments", slug="payments")
    url = f"/admin/teams/{team.id}/edit"
    hook = "https://hooks.slack.com/services/T1/B2/s3cr3t"
    base = {"name": "Payments", "slug": "payments", "description": ""}
    assert "none set" in admin_client.get(url).get_data(as_text=True)

    assert post_form(admin_client, url, base | {"slack_webhook_url": hook}).status_code == 302
    session.refresh(team)
    assert team.slack_webhook_url == hook
    page = admin_client.get(url).get_data(as_text=True)
    assert "s3cr3t" not in page and "one is set and kept hidden" in page

    post_form(admin_client, url, base | {"name": "Payments & Billing", "slack_webhook_url": ""})
    session.refresh(team)
    assert (team.name, team.slack_webhook_url) == ("Payments & Billing", hook)

    response = post_form(admin_client, url, base | {"slack_webhook_url": "javascript:alert(1)"})
    assert response.status_code == 422 and "Not an https:// URL." in response.get_data(as_text=True)

    post_form(admin_client, url, base | {"clear_slack_webhook": "1"})
    session.refresh(team)
    assert team.slack_webhook_url is None
