"""What every domain's routes get from the /api/v1 parent blueprint they are mounted on: bearer tokens only (a
session cookie is refused), no CSRF demanded, JSON errors, no redirect to the first-run setup."""

from __future__ import annotations

import re

import pytest

from incidents.api import DOMAINS
from incidents.openapi import build_spec
from tests.conftest import login
from tests.factories import make_token, make_user

_IGNORED_METHODS = {"HEAD", "OPTIONS"}


def api_requests(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, path) of every route of the domains' blueprints, path parameters filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint.count(".") == 2:
            path = re.sub(r"<(?:([^:<>]+):)?([^<>]+)>", lambda m: "1" if m.group(1) == "int" else "x", rule.rule)
            found += [(rule.endpoint, method, path) for method in sorted((rule.methods or set()) - _IGNORED_METHODS)]
    return found


def test_every_domain_is_mounted_under_the_api(app):
    endpoints = {endpoint for endpoint, _, _ in api_requests(app)}
    for child in DOMAINS:
        assert any(e.startswith(f"api.{child.name}.") for e in endpoints), child.name
        assert all(rule.rule.startswith("/api/v1/") for rule in app.url_map.iter_rules()
                   if rule.endpoint.startswith(f"api.{child.name}."))
    operations = [op for item in build_spec(app)["paths"].values() for method, op in item.items()
                  if method != "parameters"]
    assert len(api_requests(app)) == len(operations) - 2  # all but the parent's own /me and /openapi.json


def test_a_session_cookie_alone_is_refused_on_every_domain_route(client, admin):
    login(client, admin)
    assert client.get("/").status_code == 200  # the cookie does sign the web pages in
    for endpoint, method, path in api_requests(client.application):
        response = client.open(path, method=method, json={})  # no token, no CSRF token
        assert response.status_code == 401, (endpoint, method, path, response.status_code)
        assert response.get_json()["error"]["code"] == "unauthorized", (endpoint, method)


def test_token_requests_are_never_asked_for_a_csrf_token(client, admin):
    headers = {"Authorization": f"Bearer {make_token(admin)}"}
    form = client.post("/incidents/new", data={"title": "x", "severity": "SEV3"}, headers=headers)
    assert form.status_code == 400 and "CSRF" in form.get_data(as_text=True)  # the check is on in tests
    for endpoint, method, path in api_requests(client.application):
        if method == "GET":
            continue
        response = client.open(path, method=method, json={}, headers=headers)
        assert response.status_code != 401, (endpoint, method, path)
        assert "csrf" not in response.get_data(as_text=True).lower(), (endpoint, method, path)


def test_the_api_is_never_redirected_to_the_first_run_setup(client):
    assert client.get("/").headers["Location"].endswith("/setup")  # no user yet
    for path in ("/api/v1/incidents", "/api/v1/teams", "/api/v1/me"):
        response = client.get(path)
        assert response.status_code == 401 and response.is_json, path


@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v1/postmortems", "/api/v1/action-items",
                                  "/api/v1/alerts", "/api/v1/teams", "/api/v1/debt", "/api/v1/me"])
def test_a_token_signs_in_on_the_parent_and_every_domain(client, path):
    user = make_user(role="responder", email="r@example.com")
    response = client.get(path, headers={"Authorization": f"Bearer {make_token(user)}"})
    assert response.status_code == 200, response.get_data(as_text=True)
