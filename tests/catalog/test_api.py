"""Teams and services over the JSON API: everyone reads, admins write."""

from __future__ import annotations

import pytest

from tests.factories import ApiClient, make_service, make_team, make_token


@pytest.fixture
def admin_api(client, admin):
    return ApiClient(client, make_token(admin))


def test_team_crud(admin_api, api):
    created = admin_api.post("/api/v1/teams", json={"name": "Core Platform", "description": "Infra"})
    assert created.status_code == 201, created.get_json()
    team = created.get_json()
    assert (team["slug"], team["name"], team["description"]) == ("core-platform", "Core Platform", "Infra")
    assert created.headers["Location"].endswith("/api/v1/teams/core-platform")

    assert api.get("/api/v1/teams/core-platform").get_json() == team
    assert api.get(f"/api/v1/teams/{team['id']}").get_json() == team

    patched = admin_api.patch("/api/v1/teams/core-platform", json={"name": "Core", "slug": "core"})
    assert patched.status_code == 200
    assert (patched.get_json()["name"], patched.get_json()["slug"]) == ("Core", "core")
    assert api.get("/api/v1/teams/core-platform").status_code == 404


def test_lists_are_paginated_by_name(api):
    for name in ("Bravo", "Alpha", "Charlie"):
        make_team(name=name)
    page = api.get("/api/v1/teams?per_page=2").get_json()
    assert [t["name"] for t in page["items"]] == ["Alpha", "Bravo"]
    assert (page["page"], page["pages"], page["total"]) == (1, 2, 3)
    assert [t["name"] for t in api.get("/api/v1/teams?per_page=2&page=2").get_json()["items"]] == ["Charlie"]
    assert api.get("/api/v1/teams?page=0").status_code == 422


def test_service_crud_and_team_filter(admin_api, api):
    payments = make_team(name="Payments", slug="payments")
    search = make_team(name="Search", slug="search")
    created = admin_api.post("/api/v1/services", json={"name": "Checkout API", "team": "payments"})
    assert created.status_code == 201, created.get_json()
    service = created.get_json()
    assert service["team"] == {"id": payments.id, "slug": "payments", "name": "Payments"}
    assert created.headers["Location"].endswith("/api/v1/services/checkout-api")
    make_service(name="Indexer", team_id=search.id)

    assert [s["slug"] for s in api.get("/api/v1/services").get_json()["items"]] == ["checkout-api", "indexer"]
    assert [s["slug"] for s in api.get("/api/v1/services?team=search").get_json()["items"]] == ["indexer"]
    assert [s["slug"] for s in api.get(f"/api/v1/services?team={payments.id}").get_json()["items"]] == [
        "checkout-api"]
    assert "team" in api.get("/api/v1/services?team=nope").get_json()["error"]["fields"]

    moved = admin_api.patch(f"/api/v1/services/{service['id']}", json={"team": search.id, "description": "Pays"})
    assert moved.status_code == 200
    assert moved.get_json()["team"]["slug"] == "search" and moved.get_json()["description"] == "Pays"
    assert api.get("/api/v1/services/checkout-api").get_json() == moved.get_json()


def test_only_admins_write_the_catalogue(api):
    team = make_team(slug="ops")
    service = make_service(slug="db")
    for response in (api.post("/api/v1/teams", json={"name": "X"}),
                     api.patch("/api/v1/teams/ops", json={"name": "Y"}),
                     api.post("/api/v1/services", json={"name": "X", "team": team.id}),
                     api.patch(f"/api/v1/services/{service.slug}", json={"name": "Y"})):
        assert response.status_code == 403
        assert "admin" in response.get_json()["error"]["message"]


def test_taken_slug_is_409(admin_api):
    make_team(slug="ops")
    other = make_team(slug="dev")
    response = admin_api.post("/api/v1/teams", json={"name": "Ops", "slug": "ops"})
    assert response.status_code == 409
    assert response.get_json()["error"]["fields"] == {"slug": ["Already in use."]}
    assert admin_api.patch(f"/api/v1/teams/{other.id}", json={"slug": "ops"}).status_code == 409


@pytest.mark.parametrize("url, payload, field", [
    ("/api/v1/teams", {}, "name"),
    ("/api/v1/teams", {"name": ""}, "name"),
    ("/api/v1/teams", {"name": "x" * 121}, "name"),
    ("/api/v1/teams", {"name": "X", "slug": "Not A Slug"}, "slug"),
    ("/api/v1/teams", {"name": "X", "owner": "me"}, "owner"),
    ("/api/v1/teams", {"name": ["X"]}, "name"),
    ("/api/v1/services", {"name": "X"}, "team"),
    ("/api/v1/services", {"name": "X", "team": "nope"}, "team"),
    ("/api/v1/services", {"name": "X", "team": 10**30}, "team"),
    ("/api/v1/services", {"name": "X", "team": True}, "team"),
    ("/api/v1/services", {"name": "X", "team": None}, "team"),
])
def test_invalid_catalogue_bodies_are_422(admin_api, url, payload, field):
    response = admin_api.post(url, json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("key", ["nope", "999999", "9" * 40])
def test_unknown_team_or_service_is_404(admin_api, key):
    for kind in ("teams", "services"):
        assert admin_api.get(f"/api/v1/{kind}/{key}").status_code == 404
        assert admin_api.patch(f"/api/v1/{kind}/{key}", json={"name": "x"}).status_code == 404


def test_catalogue_needs_a_token(client, admin):
    assert client.get("/api/v1/teams").status_code == 401
    assert client.post("/api/v1/services", json={"name": "x", "team": 1}).status_code == 401
