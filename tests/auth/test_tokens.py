"""API tokens with scopes and expiry: what a token may do is the lower of its scope and its owner's role, checked in
one place; expired and revoked tokens are refused with 401; uses are stamped with time and address; the CLI flags;
the admin list and revoke; the migration gives tokens made before it their owner's role as scope."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from incidents.auth import services as auth
from incidents.auth.models import ApiToken, TokenScope
from incidents.database import utcnow
from incidents.extensions import db
from tests.conftest import post_form
from tests.factories import make_service, make_user


def bearer(plain: str, **extra) -> dict:
    return {"Authorization": f"Bearer {plain}", **extra}


def new_token(user, **kw) -> tuple[ApiToken, str]:
    token, plain = auth.create_token(db.session, user, "t", **kw)
    db.session.commit()
    return token, plain


def test_a_token_without_scope_carries_its_owners_role(session):
    for role, scope in (("viewer", "read"), ("responder", "write"), ("admin", "admin")):
        assert new_token(make_user(role=role))[0].scope == TokenScope(scope)


def test_a_scope_above_the_owners_role_is_refused(session):
    with pytest.raises(auth.Invalid) as e:
        auth.create_token(session, make_user(role="viewer"), "t", scope="write")
    assert e.value.fields == {"scope": ["At most read for a viewer."]}
    with pytest.raises(auth.Invalid):
        auth.create_token(session, make_user(role="admin"), "t", scope="root")
    with pytest.raises(auth.Invalid):
        auth.create_token(session, make_user(role="admin"), "t", expires_in_days=0)


def test_a_read_tokens_write_is_403_with_a_clear_message(client, session):
    service = make_service()
    _, plain = new_token(make_user(role="responder"), scope="read")
    assert client.get("/api/v1/incidents", headers=bearer(plain)).status_code == 200
    r = client.post("/api/v1/incidents", json={"title": "x", "severity": "SEV2", "service": service.slug},
                    headers=bearer(plain))
    assert r.status_code == 403
    assert r.get_json()["error"] == {
        "code": "forbidden", "fields": {},
        "message": "This token's scope is read; this needs a token of scope write (the responder role)."}


def test_an_admin_only_endpoint_refuses_a_write_token(client, session):
    _, plain = new_token(make_user(role="admin"), scope="write")
    r = client.post("/api/v1/teams", json={"name": "Payments"}, headers=bearer(plain))
    assert r.status_code == 403
    assert "scope is write" in r.get_json()["error"]["message"]
    _, admin_plain = new_token(make_user(role="admin"))
    assert client.post("/api/v1/teams", json={"name": "Payments"}, headers=bearer(admin_plain)).status_code == 201


def test_the_owners_role_wins_over_a_higher_scope(client, session):
    owner = make_user(role="admin")
    make_user(role="admin")
    _, plain = new_token(owner, scope="admin")
    auth.update_user(session, owner, role="viewer")
    session.commit()
    r = client.post("/api/v1/teams", json={"name": "Payments"}, headers=bearer(plain))
    assert r.status_code == 403
    assert r.get_json()["error"]["message"] == "This needs the admin role; you are viewer."


def test_a_read_token_sees_what_a_viewer_sees(client, session):
    """A check of the role inside a view (an alert's delivery details) applies the token's scope too."""
    from tests.alert.conftest import fixture, make_integration, post

    _, webhook_token = make_integration("rollbar", "shop")
    alert_id = post(client, "rollbar", fixture("rollbar_new_item_production"), webhook_token).get_json()["alert"]
    responder = make_user(role="responder")
    _, read = new_token(responder, scope="read")
    _, write = new_token(responder)
    seen = client.get(f"/api/v1/alerts/{alert_id}", headers=bearer(read)).get_json()["deliveries"][0]
    assert set(seen) == {"id", "received_at", "event", "outcome"}
    seen = client.get(f"/api/v1/alerts/{alert_id}", headers=bearer(write)).get_json()["deliveries"][0]
    assert "headers" in seen


def test_an_expired_token_is_401_and_says_so(client, session):
    token, plain = new_token(make_user(), expires_in_days=1)
    assert client.get("/api/v1/me", headers=bearer(plain)).status_code == 200
    session.execute(sa.update(ApiToken).where(ApiToken.id == token.id)
                    .values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    r = client.get("/api/v1/me", headers=bearer(plain))
    assert r.status_code == 401
    assert r.get_json()["error"]["message"] == "This API token has expired; create a new one."


def test_a_revoked_token_is_401(client, session):
    user = make_user()
    token, plain = new_token(user)
    auth.revoke_token(session, token.id, by=user)
    session.commit()
    r = client.get("/api/v1/me", headers=bearer(plain))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_a_use_is_stamped_with_time_and_address(client, session):
    token, plain = new_token(make_user())
    r = client.get("/api/v1/me", headers=bearer(plain), environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert r.status_code == 200
    session.expire_all()
    stamped = session.get(ApiToken, token.id)
    assert stamped.last_used_address == "203.0.113.9"
    assert utcnow() - stamped.last_used_at < timedelta(seconds=30)
    # within the minute: no second write, the first address stays
    client.get("/api/v1/me", headers=bearer(plain), environ_base={"REMOTE_ADDR": "203.0.113.10"})
    session.expire_all()
    assert session.get(ApiToken, token.id).last_used_address == "203.0.113.9"


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_token_with_scope_and_expiry(app, session):
    user = make_user(role="responder", email="ci@example.com")
    result = app.test_cli_runner().invoke(args=["users", "token", "ci@example.com", "--scope", "read",
                                                "--expires", "7"])
    assert result.exit_code == 0, result.output
    plain = result.stdout.strip().splitlines()[-1]
    token = auth.find_token(session, plain)
    assert token.user_id == user.id and token.scope == TokenScope.READ
    assert timedelta(days=6, hours=23) < token.expires_at - utcnow() <= timedelta(days=7)
    assert "scope read, expires" in result.stderr


def test_cli_token_defaults_and_refusals(app, session):
    make_user(role="viewer", email="v@example.com")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "token", "v@example.com"])
    assert result.exit_code == 0
    token = auth.find_token(session, result.stdout.strip().splitlines()[-1])
    assert token.scope == TokenScope.READ and token.expires_at is None
    result = runner.invoke(args=["users", "token", "v@example.com", "--scope", "admin"])
    assert result.exit_code == 1 and "A viewer cannot have a token of scope admin." in result.output
    assert runner.invoke(args=["users", "token", "v@example.com", "--expires", "0"]).exit_code == 2
    assert runner.invoke(args=["users", "token", "v@example.com", "--scope", "root"]).exit_code == 2


# --- the web pages ------------------------------------------------------------------------------------------------


def test_the_tokens_page_makes_scoped_expiring_tokens(responder_client, responder, session):
    page = responder_client.get("/account/tokens").get_data(as_text=True)
    assert '<option value="write" selected>' in page and 'value="admin"' not in page  # no scope above the role
    r = post_form(responder_client, "/account/tokens", {"name": "deploy", "scope": "read", "expires": "30"})
    assert r.status_code == 200
    (token,) = responder.tokens
    assert token.scope == TokenScope.READ and token.expires_at is not None
    r = post_form(responder_client, "/account/tokens", {"name": "x", "scope": "admin"})
    assert r.status_code == 422 and "At most write for a responder." in r.get_data(as_text=True)
    r = post_form(responder_client, "/account/tokens", {"name": "x", "expires": "soon"})
    assert r.status_code == 422 and "A number of days." in r.get_data(as_text=True)


def test_admins_list_and_revoke_everyones_tokens(admin_client, session):
    other = make_user(email="other@example.com")
    token, plain = new_token(other)
    auth.stamp_token(session, token.id, "198.51.100.23")
    session.commit()
    page = admin_client.get("/admin/tokens").get_data(as_text=True)
    assert "other@example.com" in page and "198.51.100.23" in page and token.prefix in page
    r = post_form(admin_client, f"/account/tokens/{token.id}/revoke", {"back": "/admin/tokens"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/admin/tokens")
    session.expire_all()
    assert session.get(ApiToken, token.id).revoked_at is not None
    assert admin_client.get("/api/v1/me", headers=bearer(plain)).status_code == 401


def test_only_admins_see_everyones_tokens(responder_client, session):
    assert responder_client.get("/admin/tokens").status_code == 403


# --- the migration ------------------------------------------------------------------------------------------------


def test_migration_gives_existing_tokens_their_owners_role_as_scope(tmp_path):
    from incidents.extensions import alembic
    from tests.test_migrations import _close, _migrated_app

    app = _migrated_app(tmp_path, "0014_slack")
    with app.app_context():
        with db.engine.begin() as conn:
            for n, role in enumerate(("viewer", "responder", "admin"), 1):
                conn.execute(sa.text(
                    "INSERT INTO \"user\" (id, email, name, role, password_hash, active, created_at, session_version)"
                    " VALUES (:id, :email, 'U', :role, 'x', true, CURRENT_TIMESTAMP, 0)"),
                    {"id": n, "email": f"u{n}@example.com", "role": role})
                conn.execute(sa.text(
                    "INSERT INTO api_token (user_id, name, token_hash, prefix, created_at)"
                    " VALUES (:id, 'old', :hash, 'inc_x', CURRENT_TIMESTAMP)"), {"id": n, "hash": f"{n:064d}"})
        alembic.upgrade()
        rows = db.session.execute(sa.select(ApiToken.user_id, ApiToken.scope, ApiToken.expires_at)
                                  .order_by(ApiToken.user_id)).all()
        assert rows == [(1, TokenScope.READ, None), (2, TokenScope.WRITE, None), (3, TokenScope.ADMIN, None)]
        _close(app)
