"""The security rules every page and endpoint keeps."""

import pytest
import sqlalchemy as sa

from incidents import create_app
from incidents.alert.models import Integration
from incidents.markdown import render_markdown
from tests.conftest import csrf_token, login, post_form
from tests.factories import PASSWORD, make_token, make_user


def test_markdown_never_renders_script_or_event_handlers():
    html = str(render_markdown(
        "Hi <script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)> **bold**"
    ))
    assert "<script" not in html and "javascript:" not in html and "onerror" not in html
    assert "<strong>bold</strong>" in html


def test_form_post_without_csrf_token_is_rejected(client, admin):
    login(client, admin)
    response = client.post("/admin/users", data={"email": "x@example.com", "name": "X", "role": "viewer",
                                                  "password": "long enough pw"})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_security_headers_and_cookie_flags(client, admin):
    response = client.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    response = post_form(client, "/login", {"email": admin.email, "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def test_every_answer_carries_each_security_header_once(client, admin):
    # A webhook's JSON answer (here a refusal) as well as a page; the status page sets its own Referrer-Policy,
    # which must stay the only one.
    for response in (client.post("/webhooks/rollbar", json={}), client.get("/login"), client.get("/status/nope")):
        for name in SECURITY_HEADERS:
            assert len(response.headers.getlist(name)) == 1, (response.request.path, name)
    assert client.get("/status/nope").headers["Referrer-Policy"] == "no-referrer"


def test_secure_cookie_when_base_url_is_https():
    app = create_app({"BASE_URL": "https://incidents.example.com", "DATABASE_URL": "sqlite://",
                      "SECRET_KEY": "x"})
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_api_without_valid_token_is_401(client, responder):
    assert client.get("/api/v1/incidents").status_code == 401
    bad = client.get("/api/v1/incidents", headers={"Authorization": "Bearer inc_nope"})
    assert bad.status_code == 401
    assert bad.get_json()["error"]["code"] == "unauthorized"


def test_api_ignores_session_cookie(client, responder):
    login(client, responder)
    assert client.get("/api/v1/incidents").status_code == 401


def test_revoked_token_stops_working(client, responder):
    token = make_token(responder)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/incidents", headers=headers).status_code == 200
    login(client, responder)
    token_id = responder.tokens[-1].id
    assert post_form(client, f"/account/tokens/{token_id}/revoke").status_code == 302
    assert client.get("/api/v1/incidents", headers=headers).status_code == 401


def test_login_throttled_per_account(app, client):
    user = make_user(email="slow@example.com")
    app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] = 3
    try:
        for _ in range(3):
            assert post_form(client, "/login", {"email": user.email, "password": "wrong"}).status_code == 401
        blocked = post_form(client, "/login", {"email": user.email, "password": PASSWORD})
        assert blocked.status_code == 429
        assert "Too many failed sign-in attempts" in blocked.get_data(as_text=True)
    finally:
        app.config["LOGIN_MAX_FAILURES_PER_ACCOUNT"] = 5


def test_first_visit_leads_to_setup_then_setup_disappears(client):
    assert client.get("/").headers["Location"].endswith("/setup")
    token = csrf_token(client)
    response = client.post("/setup", data={"csrf_token": token, "name": "First Admin", "email": "first@example.com",
                                          "password": "a long password", "password2": "a long password"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200  # signed in as the new admin
    assert client.get("/setup").headers["Location"].endswith("/login")


def test_nul_characters_are_a_422_on_every_database(api, responder_client):
    created = api.post("/api/v1/incidents", json={"title": "a\x00b", "severity": "SEV2"})
    assert created.status_code == 422
    assert "title" in created.get_json()["error"]["fields"]
    ok = api.post("/api/v1/incidents", json={"title": "Fine", "severity": "SEV2"}).get_json()
    patched = api.patch(f"/api/v1/incidents/{ok['ref']}", json={"summary": "x\x00y"})
    assert patched.status_code == 422
    note = api.post(f"/api/v1/incidents/{ok['ref']}/timeline", json={"body": "\x00"})
    assert note.status_code == 422
    form = post_form(responder_client, "/incidents/new", {"title": "t\x00", "severity": "SEV3"})
    assert form.status_code == 422


# --- issue 11, finding 11: redirects stay on the site, images come from allowed hosts, new secrets are not stored


OFFSITE = ["https://evil.example/x", "//evil.example/x", "/\\evil.example/x", "/\t/evil.example", "javascript:alert(1)",
           "http:/evil.example", "/\x00x"]


def test_safe_next_keeps_only_paths_on_this_site():
    from incidents.responses import safe_next  # here: a module that did not exist before (the tests above run)

    for target in OFFSITE + ["", None, "relative/path"]:
        assert safe_next(target, "/fallback") == "/fallback", target
    assert safe_next("/incidents/7?tab=timeline#x", "/fallback") == "/incidents/7?tab=timeline#x"


def test_token_revoke_back_parameter_never_leaves_the_site(client, responder):
    login(client, responder)

    def revoke(back: str) -> str:
        make_token(responder)
        response = post_form(client, f"/account/tokens/{responder.tokens[-1].id}/revoke", {"back": back})
        assert response.status_code == 302
        return response.headers["Location"]

    for back in OFFSITE:
        assert revoke(back) in ("/account/tokens", "http://localhost/account/tokens"), back
    assert revoke("/incidents/new").endswith("/incidents/new")


def test_login_next_parameter_never_leaves_the_site(client, responder):
    for target in OFFSITE:
        response = post_form(client, "/login", {"email": responder.email, "password": PASSWORD},
                             query_string={"next": target})
        assert response.status_code == 302
        assert response.headers["Location"] in ("/", "http://localhost/"), target
        post_form(client, "/logout")


def test_markdown_images_load_only_from_this_site_or_configured_hosts(app):
    app.config["MARKDOWN_IMAGE_HOSTS"] = ["img.example.com"]
    try:
        def src_kept(markdown: str) -> bool:
            html = str(render_markdown(markdown))
            assert "<img" in html, html
            return "src=" in html

        assert src_kept("![graph](/static/graph.png)")
        assert src_kept("![graph](graph.png)")
        assert src_kept("![graph](https://img.example.com/graph.png)")
        assert src_kept("![self](http://localhost/static/x.png)")  # BASE_URL is this site
        assert not src_kept("![pixel](https://tracker.example/p.gif)")
        assert not src_kept("![pixel](http://img.example.com/p.gif)")  # allowed host, but not over https
        assert not src_kept("![pixel](https://img.example.com@tracker.example/p.gif)")
        assert not src_kept('<img src="//tracker.example/p.gif">')
        assert not src_kept('<img src="/\\tracker.example/p.gif">')
        assert not src_kept('<img src="HTTPS://tracker.example/p.gif">')
    finally:
        app.config["MARKDOWN_IMAGE_HOSTS"] = []


def test_csp_allows_images_only_from_this_site_and_configured_hosts(client):
    csp = client.get("/login").headers["Content-Security-Policy"]
    assert "img-src 'self' data:;" in csp
    configured = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x",
                             "MARKDOWN_IMAGE_HOSTS": ["img.example.com", "grafana.example.com:8443"]})
    csp = configured.test_client().get("/static/app.css").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://img.example.com https://grafana.example.com:8443;" in csp


def test_an_image_host_that_is_not_a_host_is_refused_at_start():
    with pytest.raises(ValueError, match="MARKDOWN_IMAGE_HOSTS"):
        create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "MARKDOWN_IMAGE_HOSTS": ["x; script-src *"]})


def test_pages_showing_a_new_token_are_never_stored(client, session, admin):
    login(client, admin)
    response = post_form(client, "/account/tokens", {"name": "deploy"})
    assert response.status_code == 200 and "inc_" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    created = post_form(client, "/admin/integrations", {"source": "opsgenie", "name": "Ops"})
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    integration_id = session.scalar(sa.select(Integration.id))
    rotated = post_form(client, f"/admin/integrations/{integration_id}/rotate")
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
