"""Behind a reverse proxy: the client's address for the sign-in throttle and the logs, https for Secure cookies,
the request's host for links (INCIDENTS_TRUSTED_PROXIES); and links that name the port `serve` listens on."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from incidents import create_app
from incidents.urls import public_base_url, serve_url
from tests.conftest import login, post_form
from tests.factories import PASSWORD, make_incident, make_token, make_user
from tests.proxy import ReverseProxy, client_at
from tests.test_serve import Server, _free_port, _post

ROOT = Path(__file__).resolve().parent.parent
serve_only = pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                                reason="`incidents serve` runs on its own SQLite instance; one run is enough")


@pytest.fixture(scope="module")
def behind(_app):
    """The app as deployed behind one trusted proxy, on the test database, with BASE_URL unset."""
    return create_app({"TESTING": True, "DATABASE_URL": _app.config["DATABASE_URL"], "SECRET_KEY": "test-secret",
                       "TRUSTED_PROXIES": 1, "NOTIFY_ON_COMMIT": False})


def _fail_login(client, n: int, forwarded_for: str):
    return post_form(client, "/login", {"email": f"nobody{n}@example.com", "password": "wrong"},
                     headers={"X-Forwarded-For": forwarded_for}).status_code


def test_behind_a_trusted_proxy_failures_count_per_client(app, behind, monkeypatch):
    make_user(email="ada@example.com")
    monkeypatch.setitem(behind.config, "LOGIN_MAX_FAILURES_PER_ADDRESS", 3)  # 20 in the serve test below
    attacker = behind.test_client()
    # The attacker forges the first X-Forwarded-For entries; the proxy appends the address it saw, which wins.
    statuses = [_fail_login(attacker, n, f"10.0.0.{n}, 203.0.113.7") for n in range(5)]
    assert statuses == [401] * 3 + [429] * 2

    colleague = behind.test_client()  # same proxy (REMOTE_ADDR), another client behind it
    signed_in = post_form(colleague, "/login", {"email": "ada@example.com", "password": PASSWORD},
                          headers={"X-Forwarded-For": "198.51.100.2"})
    assert signed_in.status_code == 302


def test_without_trusted_proxies_forwarded_headers_are_ignored(app, client, monkeypatch):
    make_user(email="ada@example.com")
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_PER_ADDRESS", 3)
    statuses = [_fail_login(client, n, f"10.0.0.{n}") for n in range(4)]
    assert statuses == [401, 401, 401, 429]  # a fresh forged address each time changes nothing

    page = app.test_client().get("/login", headers={"X-Forwarded-Proto": "https"})  # a new visitor
    assert "Secure" not in page.headers["Set-Cookie"] and "Strict-Transport-Security" not in page.headers


def test_https_at_a_trusted_proxy_makes_every_cookie_secure(app, behind):
    make_user(email="ada@example.com")
    plain = behind.test_client().get("/login", headers={"X-Forwarded-Proto": "http"})
    assert "Secure" not in plain.headers["Set-Cookie"] and "Strict-Transport-Security" not in plain.headers

    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.2"}
    browser = behind.test_client()
    page = browser.get("/login", headers=https)
    assert "; Secure" in page.headers["Set-Cookie"]
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    # Over https, Flask-WTF also wants a same-origin Referer (browsers send one: Referrer-Policy same-origin).
    signed_in = browser.post("/login", headers=https | {"Referer": "https://localhost/login"}, data={
        "csrf_token": token, "email": "ada@example.com", "password": PASSWORD, "remember": "on"})
    cookies = signed_in.headers.getlist("Set-Cookie")
    assert signed_in.status_code == 302 and {c.split("=")[0] for c in cookies} >= {"session", "remember_token"}
    assert all("; Secure" in c for c in cookies)  # Flask-Login's remember cookie too


def test_links_name_the_host_the_proxy_was_asked_for(app, behind, admin):
    forwarded = {"X-Forwarded-Host": "incidents.example.org", "X-Forwarded-Proto": "https"}
    browser = behind.test_client()
    login(browser, admin)
    page = browser.get("/admin/integrations", headers=forwarded).get_data(as_text=True)
    assert "https://incidents.example.org/webhooks/opsgenie" in page

    incident = make_incident()
    shown = behind.test_client().get(f"/api/v1/incidents/{incident.ref}", headers=forwarded | {
        "Authorization": f"Bearer {make_token(admin)}"})
    assert shown.get_json()["url"] == f"https://incidents.example.org/incidents/{incident.ref}"


def test_base_url_when_set_wins_over_the_request_host(app, admin_client):
    page = admin_client.get("/admin/integrations", headers={"X-Forwarded-Host": "elsewhere.example"})
    assert f"{app.config['BASE_URL']}/webhooks/opsgenie" in page.get_data(as_text=True)


def test_public_base_url_order(app):
    served = {"SERVE_URL": "http://ops-1:8000"}
    assert public_base_url({"BASE_URL": "https://incidents.example.com/"} | served) == "https://incidents.example.com"
    assert public_base_url(served) == "http://ops-1:8000"  # CLI, jobs, e-mails: where serve listens
    assert public_base_url({}) == "http://127.0.0.1:5000"  # serve's defaults
    with app.test_request_context("/x", base_url="http://10.1.2.3:8080/prefix"):
        assert public_base_url(served) == "http://10.1.2.3:8080/prefix"


def test_cli_links_use_the_address_serve_listens_on(app, monkeypatch):
    monkeypatch.setitem(app.config, "BASE_URL", "")
    monkeypatch.setitem(app.config, "SERVE_URL", "http://ops-1:8000")  # as serve hands it to its workers
    result = app.test_cli_runner().invoke(args=["integrations", "add", "opsgenie", "prod"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith("http://ops-1:8000/webhooks/opsgenie?token=")
    assert "INCIDENTS_BASE_URL is not set" in result.stderr


def test_serve_url_names_a_wildcard_bind_by_the_host_name():
    assert serve_url("127.0.0.1", 5001) == "http://127.0.0.1:5001"
    assert serve_url("0.0.0.0", 8000) == f"http://{socket.gethostname()}:8000"  # noqa: S104
    assert serve_url("::1", 8000) == "http://[::1]:8000"


def test_shown_once_url_and_token_have_copy_buttons(admin_client):
    created = post_form(admin_client, "/admin/integrations", {"source": "opsgenie", "name": "Prod"})
    assert created.status_code == 201
    page = created.get_data(as_text=True)
    url = re.search(r'<code class="token" id="created-url">([^<]+)</code>', page).group(1)
    assert url.startswith("http://localhost/webhooks/opsgenie?token=")
    assert 'data-copy="created-url" aria-label="Copy the webhook URL"' in page
    assert 'id="created-token"' in page and 'data-copy="created-token" aria-label="Copy the token"' in page
    assert '<script src="/static/copy.js" defer></script>' in page  # no inline script: CSP script-src 'self'
    script = admin_client.get("/static/copy.js")
    assert script.status_code == 200 and b"navigator.clipboard" in script.data


def test_deploy_examples_match_the_app():
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    limit = re.search(r"^\s*client_max_body_size\s+(\d+)([km]?);", nginx, re.M)
    assert int(limit.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[limit.group(2)] == \
        create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"}).config["MAX_CONTENT_LENGTH"]
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-ID"):
        assert re.search(rf"^\s*proxy_set_header\s+{header}\s", nginx, re.M), header
    for unit, command in (("incidents-web.service", "incidents serve --no-worker"),
                          ("incidents-worker.service", "incidents worker")):
        text = (ROOT / "deploy" / unit).read_text()
        assert re.search(rf"^ExecStart=\S*{command}", text, re.M), unit
        assert "EnvironmentFile=/etc/incidents/incidents.env" in text and "Restart=on-failure" in text
        assert re.search(r"^User=(?!root)\w+", text, re.M), unit


# --- the real thing: `incidents serve` behind a loopback proxy ------------------------------------------------

ADMIN = {"name": "Ada", "email": "ada@example.com", "password": "a long password", "password2": "a long password"}


@serve_only
def test_serve_behind_a_proxy_throttles_and_logs_each_client(tmp_path):
    server = Server(tmp_path / "instance", env={"INCIDENTS_TRUSTED_PROXIES": "1"})
    server.start()
    try:
        with ReverseProxy(server.url) as proxy, ReverseProxy(server.url, proto="https") as tls:
            admin = client_at("127.0.0.4")
            assert "Sign out" in _post(admin, proxy.url + "/setup", proxy.url + "/setup", ADMIN).text
            attacker = client_at("127.0.0.2")
            statuses = []
            for n in range(25):
                attacker.headers["X-Forwarded-For"] = f"10.0.0.{n}"  # forged; the proxy appends the real peer
                statuses.append(_post(attacker, proxy.url + "/login", proxy.url + "/login",
                                      {"email": f"nobody{n}@example.com", "password": "wrong"}).status_code)
            assert statuses == [401] * 20 + [429] * 5

            colleague = client_at("127.0.0.3")
            signed_in = _post(colleague, proxy.url + "/login", proxy.url + "/login",
                              {"email": ADMIN["email"], "password": ADMIN["password"]})
            assert signed_in.status_code == 200 and "Sign out" in signed_in.text

            page = admin.get(proxy.url + "/admin/integrations").text
            assert f"{proxy.url}/webhooks/opsgenie" in page  # the host the proxy was asked for

            plain, secure = (requests.get(p.url + "/login", timeout=30) for p in (proxy, tls))
            assert "Secure" not in plain.headers["Set-Cookie"] and "Strict-Transport-Security" not in plain.headers
            assert "; Secure" in secure.headers["Set-Cookie"] and "Strict-Transport-Security" in secure.headers
    finally:
        log = server.stop()
    # gunicorn's access log names the client, not the proxy (127.0.0.1).
    assert len(re.findall(r'^127\.0\.0\.2 .*"POST /login HTTP/1\.1" 401 ', log, re.M)) == 20, log[-3000:]
    assert re.search(r'^127\.0\.0\.3 .*"POST /login HTTP/1\.1" 302 ', log, re.M), log[-3000:]
    assert not re.search(r'^127\.0\.0\.1 .*"POST /login', log, re.M)


@serve_only
def test_serve_links_name_the_port_it_serves_unless_base_url_is_set(tmp_path):
    # No proxy, no BASE_URL.
    server = Server(tmp_path / "instance", env={"INCIDENTS_LOGIN_MAX_FAILURES_PER_ADDRESS": "3"})
    server.start()
    try:
        http = requests.Session()
        _post(http, server.url + "/setup", server.url + "/setup", ADMIN)
        created = _post(http, server.url + "/admin/integrations", server.url + "/admin/integrations",
                        {"source": "opsgenie", "name": "Prod"})
        assert created.status_code == 201
        assert f"{server.url}/webhooks/opsgenie?token=" in created.text
        assert "127.0.0.1:5000" not in created.text

        # A client talking to gunicorn directly cannot claim https, another host or another address.
        forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
        page = http.get(server.url + "/admin/integrations", headers=forged)
        assert "evil.example" not in page.text and "Strict-Transport-Security" not in page.headers
        attacker = requests.Session()
        statuses = []
        for n in range(4):
            attacker.headers["X-Forwarded-For"] = f"10.0.0.{n}"
            statuses.append(_post(attacker, server.url + "/login", server.url + "/login",
                                  {"email": f"nobody{n}@example.com", "password": "wrong"}).status_code)
        assert statuses == [401] * 3 + [429]
    finally:
        log = server.stop()
    assert f"Warning: INCIDENTS_BASE_URL is not set, so links in e-mails and Shortcut cards use {server.url}" in log

    public = Server(tmp_path / "instance", env={"INCIDENTS_BASE_URL": "https://incidents.example.org"})
    public.start()
    try:
        page = http.get(public.url + "/admin/integrations")  # same instance: the session is still valid
        assert "https://incidents.example.org/webhooks/opsgenie" in page.text
    finally:
        log = public.stop()
    assert "INCIDENTS_BASE_URL is not set" not in log


def _nginx_site(tmp_path: Path, upstream_port: int) -> tuple[Path, str]:
    """deploy/nginx.conf as shipped, moved to free loopback ports and a throwaway certificate."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    http_port, https_port = _free_port(), _free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{http_port};"), ("listen [::]:80;", ""),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"), ("listen [::]:443 ssl;", ""),
                     ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
                     ("/etc/letsencrypt/live/incidents.example.com/fullchain.pem", str(cert)),
                     ("/etc/letsencrypt/live/incidents.example.com/privkey.pem", str(key))):
        assert old in site, old
        site = site.replace(old, new)
    site = re.sub(r"^\s*http2 on;.*$", "", site, flags=re.M)  # needs nginx 1.25.1; not what this test is about
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;\n"
        f"       include {tmp_path}/site.conf; }}\n")
    return cert, f"https://127.0.0.1:{https_port}"


@serve_only
@pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("openssl")), reason="needs nginx and openssl")
def test_deploy_nginx_example_in_front_of_serve(tmp_path):
    server = Server(tmp_path / "instance", env={"INCIDENTS_TRUSTED_PROXIES": "1",
                                               "INCIDENTS_LOGIN_MAX_FAILURES_PER_ADDRESS": "3"})
    cert, base = _nginx_site(tmp_path, server.port)
    nginx = subprocess.Popen(["nginx", "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server.start()
    try:
        def browser(address: str) -> requests.Session:
            http = client_at(address)
            http.trust_env = False  # else REQUESTS_CA_BUNDLE would replace our certificate
            http.verify, http.headers["Referer"] = str(cert), base + "/"  # browsers send it; Flask-WTF checks it
            return http

        admin = browser("127.0.0.4")
        first = _post(admin, base + "/setup", base + "/setup", ADMIN)
        assert "Sign out" in first.text and first.history[0].headers["Strict-Transport-Security"]
        assert all(c.secure for c in admin.cookies)  # https at nginx: Secure without any BASE_URL
        assert f"{base}/webhooks/opsgenie" in admin.get(base + "/admin/integrations").text

        attacker = browser("127.0.0.2")
        statuses = [_post(attacker, base + "/login", base + "/login",
                          {"email": f"nobody{n}@example.com", "password": "wrong"}).status_code for n in range(4)]
        assert statuses == [401] * 3 + [429]
        signed_in = _post(browser("127.0.0.3"), base + "/login", base + "/login",
                          {"email": ADMIN["email"], "password": ADMIN["password"]})
        assert "Sign out" in signed_in.text

        too_big = browser("127.0.0.5").post(base + "/webhooks/opsgenie", data=b"x" * (1024 * 1024 + 1), timeout=30)
        assert too_big.status_code == 413 and "nginx" in too_big.text  # refused at the proxy already
    finally:
        nginx.terminate()
        nginx.communicate(timeout=30)
        log = server.stop()
    assert re.search(r'^127\.0\.0\.3 .*"POST /login HTTP/1\.0" 302 ', log, re.M), log[-3000:]
