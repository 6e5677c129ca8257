"""Password reset and invitations by e-mail (signed, single use, short-lived, through the loopback SMTP server);
deactivation, reactivation and role changes taking effect at the very next request."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous.timed import TimestampSigner

from incidents.auth import services
from incidents.auth.models import Invitation, Role
from incidents.database import utcnow
from incidents.events import AFTER_COMMIT, subscribe
from tests.conftest import login, post_form
from tests.factories import PASSWORD, make_token, make_user

NEW_PASSWORD = "a brand new passphrase"
LINK = re.compile(r"http://localhost(/\S+)")


@pytest.fixture
def mail(app, smtp_server):
    saved = app.config["SMTP_URL"]
    app.config["SMTP_URL"] = smtp_server.url
    yield smtp_server
    app.config["SMTP_URL"] = saved


@pytest.fixture
def seen(app):
    """Every auth event that was committed, in order."""
    got = []
    for name in ("auth.user_created", "auth.user_updated", "auth.token_revoked"):
        subscribe(app, name, AFTER_COMMIT, got.append)
    yield got
    for subs in app.extensions["incidents.events"].subscribers.values():
        subs[:] = [s for s in subs if s.handler != got.append]


def link_in(message) -> str:
    match = LINK.search(message.text)
    assert match, message.text
    return match.group(1)


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


# --- password reset -----------------------------------------------------------------------------------

def test_reset_link_sets_a_new_password_once_and_ends_every_session(app, client, admin, mail, seen):
    user = make_user(email="sam@example.com", name="Sam")
    other_browser = app.test_client()
    login(other_browser, user)
    page = post_form(client, "/password/reset", {"email": "SAM@example.com"})
    assert page.status_code == 200 and "is on its way" in page.get_data(as_text=True)
    [message] = mail.to("sam@example.com")
    assert message.message["Subject"] == "Choose a new password"
    link = link_in(message)
    assert client.get(link).status_code == 200

    mismatch = post_form(client, link, {"password": NEW_PASSWORD, "password2": "something else"})
    assert mismatch.status_code == 422
    short = post_form(client, link, {"password": "short", "password2": "short"})
    assert short.status_code == 422 and "At least 10 characters" in short.get_data(as_text=True)
    assert post_form(client, link, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}).status_code == 302
    assert services.authenticate(_session(), "sam@example.com", NEW_PASSWORD, "192.0.2.9",
                                 services.LoginLimits()) is not None
    assert not signed_in(other_browser)  # a new password ends every session
    assert [e.data for e in seen if e.name == "auth.user_updated"] == [
        {"user_id": user.id, "changes": {"password": ["(set)", "(changed)"]}, "via": "reset"}]

    used = post_form(client, link, {"password": "yet another passphrase", "password2": "yet another passphrase"})
    assert used.status_code == 404  # single use: the link died with the old password
    assert "invalid, used or expired" in used.get_data(as_text=True)


def _without_csrf(response) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True))


def _session():
    from incidents.extensions import db

    return db.session


def test_reset_request_answers_the_same_for_unknown_and_inactive_accounts(app, client, mail):
    make_user(email="gone@example.com", active=False)
    answers = [post_form(client, "/password/reset", {"email": email}) for email in
               ("nobody@example.com", "gone@example.com")]
    assert {a.status_code for a in answers} == {200}
    assert _without_csrf(answers[0]) == _without_csrf(answers[1])
    assert "is on its way" in answers[0].get_data(as_text=True)
    assert mail.messages == []


def test_reset_requests_are_throttled(app, client, mail):
    make_user(email="sam@example.com")
    for _ in range(5):
        assert post_form(client, "/password/reset", {"email": "sam@example.com"}).status_code == 200
    throttled = post_form(client, "/password/reset", {"email": "sam@example.com"})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"]
    assert len(mail.to("sam@example.com")) == 5
    for _ in range(5):
        post_form(client, "/password/reset", {"email": "nobody@example.com"})
    assert post_form(client, "/password/reset", {"email": "nobody@example.com"}).status_code == 429  # the same


def test_reset_link_expires_after_an_hour(app, client, monkeypatch):
    user = make_user(email="sam@example.com")
    token = services.password_reset_token(user, app.config["SECRET_KEY"])
    assert client.get(f"/password/reset/{token}").status_code == 200
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) + 3601)
    assert client.get(f"/password/reset/{token}").status_code == 404


def test_a_forged_or_foreign_reset_link_is_refused(app, client):
    user = make_user(email="sam@example.com")
    assert client.get("/password/reset/not-a-token").status_code == 404
    other_key = services.password_reset_token(user, "another secret")
    assert client.get(f"/password/reset/{other_key}").status_code == 404
    invitation_token = services._serializer(app.config["SECRET_KEY"], "invitation").dumps({"u": user.id})
    assert client.get(f"/password/reset/{invitation_token}").status_code == 404  # purposes do not mix


def test_reset_needs_csrf(app, client):
    make_user(email="sam@example.com")
    assert client.post("/password/reset", data={"email": "sam@example.com"}).status_code == 400


# --- invitations -----------------------------------------------------------------------------------------

def test_admin_invites_and_the_invitee_sets_name_and_password(app, admin_client, mail, seen):
    assert post_form(admin_client, "/admin/invitations", {"email": "New@Example.com", "role": "responder"}
                     ).status_code == 302
    assert "new@example.com (responder)" in admin_client.get("/admin/users").get_data(as_text=True)
    [message] = mail.to("new@example.com")
    link = link_in(message)
    assert "Ada Admin invites you" in message.text

    invitee = app.test_client()
    page = invitee.get(link)
    assert page.status_code == 200 and "new@example.com" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    response = post_form(invitee, link, {"name": "Nina New", "password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert signed_in(invitee)
    user = services.get_user_by_email(_session(), "new@example.com")
    assert (user.name, user.role) == ("Nina New", Role.RESPONDER)
    assert [e.data for e in seen if e.name == "auth.user_created"] == [
        {"user_id": user.id, "role": "responder", "via": "invitation"}]

    again = post_form(app.test_client(), link, {"name": "Eve", "password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert again.status_code == 404  # single use


def test_a_newer_invitation_replaces_the_older_link(app, admin_client, mail):
    post_form(admin_client, "/admin/invitations", {"email": "new@example.com", "role": "viewer"})
    post_form(admin_client, "/admin/invitations", {"email": "new@example.com", "role": "admin"})
    first, second = (link_in(m) for m in mail.to("new@example.com"))
    assert app.test_client().get(first).status_code == 404
    assert app.test_client().get(second).status_code == 200


def test_an_invitation_expires_after_seven_days(app, admin_client, mail):
    post_form(admin_client, "/admin/invitations", {"email": "late@example.com", "role": "viewer"})
    link = link_in(mail.to("late@example.com")[0])
    invitation = _session().query(Invitation).one()
    invitation.expires_at = utcnow()
    _session().commit()
    assert app.test_client().get(link).status_code == 404


def test_invitation_form_errors_and_permissions(app, admin_client, responder, mail):
    bad = post_form(admin_client, "/admin/invitations", {"email": "not-an-email", "role": "viewer"})
    assert bad.status_code == 422 and "Not a valid e-mail address" in bad.get_data(as_text=True)
    taken = post_form(admin_client, "/admin/invitations", {"email": "responder@example.com", "role": "viewer"})
    assert taken.status_code == 422 and "Already in use" in taken.get_data(as_text=True)
    assert post_form(admin_client, "/admin/invitations", {"email": "x@example.com", "role": "owner"}
                     ).status_code == 422
    assert admin_client.post("/admin/invitations", data={"email": "x@example.com", "role": "viewer"}
                             ).status_code == 400  # no CSRF token
    other = app.test_client()
    login(other, responder)
    assert post_form(other, "/admin/invitations", {"email": "x@example.com", "role": "admin"}).status_code == 403
    assert mail.messages == []


# --- deactivation, reactivation and role changes: at the next request ---------------------------------

def test_deactivation_ends_the_session_and_tokens_and_reactivation_revives_neither(app, client, admin, seen):
    user = make_user(email="sam@example.com", role="responder")
    login(client, user)
    token = make_token(user)
    auth = {"Authorization": f"Bearer {token}"}
    api = app.test_client()
    assert signed_in(client) and api.get("/api/v1/incidents", headers=auth).status_code == 200

    services.update_user(_session(), user, active=False)
    _session().commit()
    assert not signed_in(client)
    assert api.get("/api/v1/incidents", headers=auth).status_code == 401
    assert [e.name for e in seen][-2:] == ["auth.token_revoked", "auth.user_updated"]

    services.update_user(_session(), user, active=True)
    _session().commit()
    assert not signed_in(client)  # the old cookie carries the old session version
    assert api.get("/api/v1/incidents", headers=auth).status_code == 401  # revoked stays revoked
    assert post_form(client, "/login", {"email": "sam@example.com", "password": PASSWORD}).status_code == 302


def test_a_role_change_applies_at_the_next_request(app, client, admin):
    second = make_user(email="second@example.com", role="admin")
    login(client, second)
    assert client.get("/admin/users").status_code == 200
    services.update_user(_session(), second, role="viewer")
    _session().commit()
    assert client.get("/admin/users").status_code == 403  # same session, new role
    assert signed_in(client)
