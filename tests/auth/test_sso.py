"""Single sign-on against a real OpenID provider process on loopback (tests/oidc_provider.py): the full redirect
dance, role mapping at every sign-in, and every way a provider's answer can be wrong (tampered, wrong audience,
expired, replayed state), each a friendly 4xx and an `auth.sign_in_failed` event, never a 500."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from incidents import create_app, events
from incidents.auth import services
from incidents.auth.models import Role
from incidents.auth.sso import parse_settings
from incidents.extensions import db
from tests.conftest import Client, empty_tables, post_form
from tests.factories import PASSWORD, make_token, make_user

ROOT = Path(__file__).resolve().parents[2]
ROLE_MAP = {"incident-admins": "admin", "sre": "responder"}


@pytest.fixture(scope="session")
def provider():
    """The provider process: started once, its discovery document answering before any test uses it."""
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "tests.oidc_provider"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        port = int(proc.stdout.readline())
        issuer = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield Provider(issuer)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclasses.dataclass
class Provider:
    issuer: str

    def user(self, sub: str, **claims) -> None:
        """Set what the provider says about `sub` (its ID token claims)."""
        requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=5).raise_for_status()

    def fault(self, mode: str | None) -> None:
        requests.put(f"{self.issuer}/_fault", json={"mode": mode}, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def _sso_app(_app, provider):
    keys = ("TESTING", "DATABASE_URL", "SECRET_KEY", "SERVER_NAME", "BASE_URL", "NOTIFY_ON_COMMIT")
    app = create_app({**{k: _app.config[k] for k in keys}, "OIDC_ISSUER": provider.issuer,
                      "OIDC_CLIENT_ID": "incidents", "OIDC_CLIENT_SECRET": "s3cret-client",
                      "OIDC_ROLE_MAP": ROLE_MAP, "BREAK_GLASS_ADMINS": "glass@example.com"})
    app.test_client_class = Client
    seen: list[events.Event] = []
    for name in ("auth.signed_in", "auth.sign_in_failed", "auth.user_created", "auth.user_updated"):
        events.subscribe(app, name, events.AFTER_COMMIT, seen.append)
    app.extensions["test.events"] = seen
    return app


@pytest.fixture
def app(_sso_app, provider):
    with _sso_app.app_context():
        _sso_app.extensions["test.events"].clear()
        settings = _sso_app.extensions["incidents.sso"]
        make_user(email="first-admin@example.com", role="admin")  # past the first-run setup
        yield _sso_app
        _sso_app.extensions["incidents.sso"] = settings
        provider.fault(None)
        db.session.rollback()
        db.session.close()
        empty_tables()


@pytest.fixture
def client(app):
    return app.test_client()


def configure(app, **changes) -> None:
    app.extensions["incidents.sso"] = dataclasses.replace(app.extensions["incidents.sso"], **changes)


def emitted(app, name: str) -> list[dict]:
    return [e.data for e in app.extensions["test.events"] if e.name == name]


def start(client) -> str:
    """GET /login/oidc: the provider's authorize URL it redirects to."""
    response = client.get("/login/oidc")
    assert response.status_code == 302
    return response.headers["Location"]


def consent(authorize_url: str, sub: str) -> str:
    """The person picks `sub` on the provider's form: the callback path (with code and state) it sends them to."""
    response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    parts = urlsplit(response.headers["Location"])
    assert parts.path == "/login/oidc/callback"
    return f"{parts.path}?{parts.query}"


def sso(client, sub: str):
    return client.get(consent(start(client), sub))


def test_first_sign_in_creates_the_user_with_the_mapped_role(app, client, provider):
    provider.user("alice-sub", email="Alice@Example.com", email_verified=True, name="Alice Liddell",
                  groups=["sre", "other"])
    authorize = start(client)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(provider.issuer + "/oauth2/authorize")
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]  # PKCE
    assert query["nonce"][0] and query["state"][0]
    assert query["redirect_uri"] == ["http://localhost/login/oidc/callback"]

    response = client.get(consent(authorize, "alice-sub"))
    assert response.status_code == 302, response.get_data(as_text=True)
    user = services.get_user_by_email(db.session, "alice@example.com")
    assert user is not None
    assert (user.name, user.role, user.oidc_issuer, user.oidc_subject) == (
        "Alice Liddell", Role.RESPONDER, provider.issuer, "alice-sub")
    assert user.password_hash == services.NO_PASSWORD
    assert client.get("/").status_code == 200  # signed in
    assert emitted(app, "auth.user_created") == [{"user_id": user.id, "role": "responder", "via": "sso"}]
    assert emitted(app, "auth.signed_in")[-1] == {"user_id": user.id, "method": "oidc", "address": "127.0.0.1"}


def test_role_follows_the_groups_at_every_sign_in(app, client, provider):
    provider.user("bob-sub", email="bob@example.com", email_verified=True, name="Bob", groups=["sre"])
    assert sso(client, "bob-sub").status_code == 302
    bob = services.get_user_by_email(db.session, "bob@example.com")
    assert bob.role == Role.RESPONDER

    provider.user("bob-sub", email="bob@example.com", email_verified=True, name="Bob",
                  groups=["sre", "incident-admins"])  # the highest mapped role wins
    assert sso(app.test_client(), "bob-sub").status_code == 302
    db.session.refresh(bob)
    assert bob.role == Role.ADMIN
    assert emitted(app, "auth.user_updated")[-1] == {"user_id": bob.id, "changes": {"role": ["responder", "admin"]},
                                                     "via": "sso"}

    provider.user("bob-sub", email="bob@example.com", email_verified=True, name="Bob", groups="nobody-knows")
    assert sso(app.test_client(), "bob-sub").status_code == 302  # unmapped: the default role
    db.session.refresh(bob)
    assert bob.role == Role.VIEWER


def test_role_claim_as_a_single_string(app, client, provider):
    provider.user("carol-sub", email="carol@example.com", email_verified=True, groups="incident-admins")
    assert sso(client, "carol-sub").status_code == 302
    assert services.get_user_by_email(db.session, "carol@example.com").role == Role.ADMIN


def test_default_role_none_refuses_the_unmapped(app, client, provider):
    configure(app, default_role=None)
    provider.user("dave-sub", email="dave@example.com", email_verified=True, groups=["marketing"])
    response = sso(client, "dave-sub")
    assert response.status_code == 403
    assert "has no access to this site" in response.get_data(as_text=True)
    assert services.get_user_by_email(db.session, "dave@example.com") is None
    assert emitted(app, "auth.sign_in_failed")[-1]["reason"] == "oidc_unmapped"


def test_first_sign_in_links_an_existing_account_only_by_verified_email(app, client, provider):
    existing = make_user(email="erin@example.com", role="viewer")
    provider.user("erin-unverified", email="erin@example.com", email_verified=False, groups=["sre"])
    assert sso(client, "erin-unverified").status_code == 403  # an unverified address never claims an account
    db.session.refresh(existing)
    assert existing.oidc_subject is None

    provider.user("erin-sub", email="erin@example.com", email_verified=True, groups=["sre"])
    assert sso(app.test_client(), "erin-sub").status_code == 302
    db.session.refresh(existing)
    assert (existing.oidc_subject, existing.role) == ("erin-sub", Role.RESPONDER)

    # Later the subject alone finds the account, whatever e-mail the provider now says.
    provider.user("erin-sub", email="erin.new@example.com", email_verified=True, groups=["sre"])
    assert sso(app.test_client(), "erin-sub").status_code == 302
    assert services.get_user_by_email(db.session, "erin.new@example.com") is None


def test_a_deactivated_user_cannot_sign_in_by_sso(app, client, provider):
    make_user(email="frank@example.com", role="responder", active=False)
    provider.user("frank-sub", email="frank@example.com", email_verified=True, groups=["sre"])
    response = sso(client, "frank-sub")
    assert response.status_code == 403
    assert "deactivated" in response.get_data(as_text=True)
    assert emitted(app, "auth.sign_in_failed")[-1]["reason"] == "inactive"


@pytest.mark.parametrize(("fault", "error"), [("tamper", "BadSignatureError"), ("wrong_aud", "InvalidClaimError"),
                                              ("expired", "ExpiredTokenError")])
def test_a_bad_id_token_is_refused(app, client, provider, fault, error, caplog):
    provider.user("mallory-sub", email="mallory@example.com", email_verified=True, groups=["incident-admins"])
    provider.fault(fault)
    response = sso(client, "mallory-sub")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "answer from the sign-in provider was not valid" in page
    assert services.get_user_by_email(db.session, "mallory@example.com") is None
    assert client.get("/").status_code == 302  # not signed in
    assert emitted(app, "auth.sign_in_failed")[-1]["reason"] == "oidc_invalid"
    assert f"OpenID sign-in refused: {error}" in caplog.text  # refused for the fault injected, not another reason
    assert "s3cret-client" not in caplog.text and "eyJ" not in caplog.text  # no secret, no token in the logs


def test_a_replayed_state_is_refused(app, client, provider):
    provider.user("grace-sub", email="grace@example.com", email_verified=True, groups=["sre"])
    callback = consent(start(client), "grace-sub")
    assert client.get(callback).status_code == 302
    assert client.get(callback).status_code == 400  # the same callback again: its state is spent
    thief = app.test_client()
    assert thief.get(callback).status_code == 400  # and no other browser can use it
    assert thief.get("/").status_code == 302
    assert [e["reason"] for e in emitted(app, "auth.sign_in_failed")] == ["oidc_invalid", "oidc_invalid"]


def test_a_callback_without_the_pkce_verifier_fails(app, client, provider):
    """The provider enforces PKCE: a code stolen from the redirect is useless without this browser's verifier."""
    provider.user("heidi-sub", email="heidi@example.com", email_verified=True, groups=["sre"])
    callback = consent(start(client), "heidi-sub")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    response = requests.post(f"{provider.issuer}/oauth2/token", timeout=5, data={
        "grant_type": "authorization_code", "code": code, "client_id": "incidents", "client_secret": "x",
        "redirect_uri": "http://localhost/login/oidc/callback"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_the_provider_cancelling_is_a_friendly_error(app, client):
    start(client)
    response = client.get("/login/oidc/callback?error=access_denied&state=x")
    assert response.status_code == 401
    assert "did not sign you in" in response.get_data(as_text=True)


def test_sign_in_page_links_to_sso(client):
    page = client.get("/login").get_data(as_text=True)
    assert 'href="/login/oidc"' in page
    assert 'name="password"' in page and "Forgot your password?" in page


def test_sso_only_turns_the_password_form_off_but_for_break_glass_admins(app, client):
    configure(app, only=True)
    page = client.get("/login").get_data(as_text=True)
    assert "Break-glass admin sign-in" in page and "Forgot your password?" not in page
    make_user(email="worker@example.com", role="admin")
    make_user(email="glass@example.com", role="admin")
    refused = post_form(client, "/login", {"email": "worker@example.com", "password": PASSWORD})
    assert refused.status_code == 403
    assert "Password sign-in is off" in refused.get_data(as_text=True)
    assert emitted(app, "auth.sign_in_failed")[-1] == {"email": "worker@example.com", "address": "127.0.0.1",
                                                       "reason": "sso_only"}
    assert post_form(client, "/login", {"email": "glass@example.com", "password": PASSWORD}).status_code == 302


def test_sso_only_break_glass_must_be_an_admin(app, client):
    configure(app, only=True)
    make_user(email="glass@example.com", role="responder")
    assert post_form(client, "/login", {"email": "glass@example.com", "password": PASSWORD}).status_code == 403


def test_deactivation_ends_sso_sessions_and_tokens_at_the_next_request(app, client, provider):
    provider.user("ivan-sub", email="ivan@example.com", email_verified=True, groups=["sre"])
    assert sso(client, "ivan-sub").status_code == 302
    ivan = services.get_user_by_email(db.session, "ivan@example.com")
    token = make_token(ivan)
    api = app.test_client()
    assert api.get("/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    services.update_user(db.session, ivan, active=False)
    db.session.commit()
    assert client.get("/").status_code == 302
    assert api.get("/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_settings_are_checked_at_start_up():
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_settings({"OIDC_ROLE_MAP": "{sre: responder"})
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        parse_settings({"OIDC_ROLE_MAP": {"sre": "owner"}})
    with pytest.raises(ValueError, match="OIDC_DEFAULT_ROLE"):
        parse_settings({"OIDC_DEFAULT_ROLE": "superuser"})
    with pytest.raises(ValueError, match="SSO_ONLY"):
        parse_settings({"SSO_ONLY": True})
    settings = parse_settings({"OIDC_ISSUER": "https://id.example.com/", "OIDC_CLIENT_ID": "c",
                               "OIDC_ROLE_MAP": '{"sre": "responder"}', "OIDC_DEFAULT_ROLE": "none",
                               "SSO_ONLY": "true", "BREAK_GLASS_ADMINS": "Root@Example.com, b@example.com"})
    assert settings.issuer == "https://id.example.com" and settings.role_map == {"sre": Role.RESPONDER}
    assert settings.default_role is None and settings.only
    assert settings.break_glass == {"root@example.com", "b@example.com"}


def test_a_bad_role_map_stops_create_app(tmp_path):
    with pytest.raises(ValueError, match="INCIDENTS_OIDC_ROLE_MAP"):
        create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "SECRET_KEY": "k",
                    "OIDC_ROLE_MAP": "not json"})


def test_role_from_claim():
    role_map = {"a": Role.VIEWER, "b": Role.ADMIN}
    assert services.role_from_claim(["a", "b"], role_map, None) == Role.ADMIN
    assert services.role_from_claim("a", role_map, None) == Role.VIEWER
    assert services.role_from_claim(["zzz"], role_map, Role.RESPONDER) == Role.RESPONDER
    assert services.role_from_claim(None, role_map, None) is None
    assert services.role_from_claim({"b": 1}, role_map, None) is None


def test_without_a_role_claim_an_existing_account_keeps_its_role(app, client, provider):
    """Google sends no groups: an admin's choice of role survives the next sign-in; a new account gets the default."""
    provider.user("gina-sub", email="gina@example.com", email_verified=True)
    assert sso(client, "gina-sub").status_code == 302
    gina = services.get_user_by_email(db.session, "gina@example.com")
    assert gina.role == Role.VIEWER
    services.update_user(db.session, gina, role="responder")
    db.session.commit()
    assert sso(app.test_client(), "gina-sub").status_code == 302
    db.session.refresh(gina)
    assert gina.role == Role.RESPONDER

    configure(app, default_role=None)  # nobody new without a mapped group, but the known keep signing in
    assert sso(app.test_client(), "gina-sub").status_code == 302
    provider.user("stranger-sub", email="stranger@example.com", email_verified=True)
    assert sso(app.test_client(), "stranger-sub").status_code == 403


def test_a_callback_with_no_state_or_code_is_a_400(app, client):
    assert client.get("/login/oidc/callback").status_code == 400
    assert client.get("/login/oidc/callback?code=abc&state=" + "x" * 5000).status_code == 400


def test_without_an_issuer_there_is_no_sso(_app):
    with _app.app_context():
        _app.extensions["incidents.has_users"] = True  # past the first-run setup without making a user
        try:
            client = _app.test_client()
            assert client.get("/login/oidc").status_code == 404
            assert client.get("/login/oidc/callback?code=a&state=b").status_code == 404
            page = client.get("/login").get_data(as_text=True)
            assert "/login/oidc" not in page and 'name="password"' in page
        finally:
            _app.extensions.pop("incidents.has_users", None)


def test_sso_only_refusal_records_an_email_with_a_nul_safely(app, client):
    configure(app, only=True)
    response = post_form(client, "/login", {"email": "x\x00@example.com", "password": PASSWORD})
    assert response.status_code == 403
    assert emitted(app, "auth.sign_in_failed")[-1]["email"] == "x@example.com"
