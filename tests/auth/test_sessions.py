"""Sessions end when they should: sign out everywhere, a new password, deactivation; cookies live 14 days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest

from tests.conftest import Client, csrf_token, login, post_form
from tests.factories import PASSWORD, make_user

REMEMBER = "remember_token"


def sign_in(client, user, *, remember: bool = True):
    """Sign in through the real form; returns the response."""
    data = {"email": user.email, "password": PASSWORD}
    if remember:
        data["remember"] = "on"
    response = post_form(client, "/login", data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def copy_of(app, client, *names: str):
    """Another browser holding copies of `client`'s cookies (a stolen laptop, a shared computer)."""
    app.test_client_class = Client
    thief = app.test_client()
    for name in names:
        cookie = client.get_cookie(name)
        assert cookie is not None, f"no {name} cookie"
        thief.set_cookie(name, cookie.value, domain=cookie.domain)
    return thief


def signed_in(client) -> bool:
    response = client.get("/")
    return response.status_code == 200


@pytest.fixture
def user(session):
    return make_user(email="sam@example.com", role="responder")


def test_copied_session_and_remember_cookies_work_until_revoked(app, client, user):
    """The baseline the other tests rely on: copies of the cookies are a signed-in browser."""
    sign_in(client, user)
    assert signed_in(copy_of(app, client, "session", REMEMBER))
    assert signed_in(copy_of(app, client, REMEMBER))  # the remember cookie alone signs in again


def test_sign_out_everywhere_ends_every_session_and_remember_cookie(app, client, user):
    sign_in(client, user)
    other_browser = copy_of(app, client, "session", REMEMBER)
    remembered = copy_of(app, client, REMEMBER)
    response = post_form(client, "/logout/everywhere")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert not signed_in(client)
    assert not signed_in(other_browser)
    assert not signed_in(remembered)
    sign_in(client, user)  # signing in again works, with a new version
    assert signed_in(client)


def test_sign_out_everywhere_is_in_the_menu_and_needs_csrf(client, user):
    sign_in(client, user)
    page = client.get("/").get_data(as_text=True)
    assert "/logout/everywhere" in page
    assert client.post("/logout/everywhere").status_code == 400  # no CSRF token
    assert signed_in(client)


def test_admin_password_reset_ends_the_users_sessions(app, client, user, admin):
    sign_in(client, user)
    stolen = copy_of(app, client, "session", REMEMBER)
    remembered = copy_of(app, client, REMEMBER)
    admin_browser = app.test_client()
    login(admin_browser, admin)
    response = post_form(admin_browser, f"/admin/users/{user.id}",
                         {"name": user.name, "role": "responder", "active": "on", "password": "a brand new password"})
    assert response.status_code == 302
    assert not signed_in(client) and not signed_in(stolen) and not signed_in(remembered)
    assert signed_in(admin_browser)


def test_admin_can_sign_a_user_out_everywhere(app, client, user, admin):
    sign_in(client, user)
    admin_browser = app.test_client()
    login(admin_browser, admin)
    assert post_form(admin_browser, f"/admin/users/{user.id}/sign-out").status_code == 302
    assert not signed_in(client)


def test_reactivation_does_not_revive_old_sessions(app, client, user, admin):
    sign_in(client, user)
    stolen = copy_of(app, client, "session", REMEMBER)
    admin_browser = app.test_client()
    login(admin_browser, admin)
    fields = {"name": user.name, "role": "responder"}
    assert post_form(admin_browser, f"/admin/users/{user.id}", fields).status_code == 302  # deactivated
    assert post_form(admin_browser, f"/admin/users/{user.id}", fields | {"active": "on"}).status_code == 302
    assert not signed_in(client)
    assert not signed_in(stolen)
    sign_in(client, user)
    assert signed_in(client)


def test_own_new_password_keeps_this_browser_signed_in(app, client, admin):
    login(client, admin)
    other = copy_of(app, client, "session")
    response = post_form(client, f"/admin/users/{admin.id}", {"name": admin.name, "role": "admin", "active": "on",
                                                              "password": "another long password"})
    assert response.status_code == 302
    assert signed_in(client)
    assert not signed_in(other)


def test_a_session_without_version_is_refused(client, user):
    """Cookies signed before session versions existed name the bare id: they sign in again once."""
    with client.session_transaction() as s:
        s["_user_id"] = str(user.id)
        s["_fresh"] = True
    assert not signed_in(client)


def test_remember_cookie_lasts_the_session_lifetime(app, client, user):
    response = sign_in(client, user)
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(REMEMBER + "="))
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0])
    lifetime = app.permanent_session_lifetime
    assert lifetime == timedelta(days=14)
    assert abs(expires - (datetime.now(UTC) + lifetime)) < timedelta(minutes=5)


def test_sign_in_starts_a_fresh_session(client, user):
    """No session fixation: nothing planted in the cookie before sign-in survives it, the CSRF token included."""
    before = csrf_token(client)
    with client.session_transaction() as s:
        s["planted"] = "by someone else"
    sign_in(client, user, remember=False)
    with client.session_transaction() as s:
        assert "planted" not in s
        assert s["_user_id"] == user.get_id()
    assert csrf_token(client) != before

