"""GET /api/v1/alerts, /alerts/<id>, /deliveries: shapes, filters, auth, and valid OpenAPI docstrings."""

from __future__ import annotations

import pytest

from tests.alert.conftest import fixture, make_integration, post


@pytest.fixture
def fed(client, app):
    integration, token = make_integration("rollbar", "api")
    post(client, "rollbar", fixture("rollbar_new_item_production"), token)
    post(client, "rollbar", fixture("rollbar_occurrence"), token)
    staging = fixture("rollbar_new_item_production")
    staging["data"]["item"].update(id=900000002, environment="staging", title="Slow query")
    post(client, "rollbar", staging, token)
    post(client, "rollbar", b"not json", token)
    return integration


def test_list_and_get_alerts(api, fed):
    body = api.get("/api/v1/alerts").get_json()
    assert set(body) == {"items", "page", "pages", "total", "at_least"} and body["total"] == 2
    newest = body["items"][0]
    assert newest["fingerprint"] == "900000001" and newest["occurrence_count"] == 2  # last seen most recently
    assert newest["incident_ref"] == f"INC-{newest['incident_id']}" and newest["link"].startswith("https://")
    assert newest["last_seen_at"].endswith("+00:00")
    staging = api.get("/api/v1/alerts?environment=staging").get_json()
    assert [a["title"] for a in staging["items"]] == ["Slow query"]
    assert api.get("/api/v1/alerts?q=900000002").get_json()["total"] == 1
    assert api.get("/api/v1/alerts?status=open&per_page=1").get_json()["pages"] == 2
    assert api.get("/api/v1/alerts?status=bogus").status_code == 422

    detail = api.get(f"/api/v1/alerts/{newest['id']}").get_json()
    assert detail["fingerprint"] == "900000001" and detail["occurrence_count"] == 2
    assert [d["event"] for d in detail["deliveries"]] == ["occurrence", "new_item"]
    assert api.get("/api/v1/alerts/999999").status_code == 404


def test_list_and_get_deliveries(api, fed):
    body = api.get(f"/api/v1/deliveries?integration={fed.id}").get_json()
    assert body["total"] == 4 and "body" not in body["items"][0]
    rejected = api.get("/api/v1/deliveries?outcome=rejected").get_json()["items"]
    assert [d["error"] for d in rejected] == ["The body is not valid JSON."]
    assert api.get("/api/v1/deliveries?outcome=nope").status_code == 422
    first = api.get(f"/api/v1/deliveries/{body['items'][-1]['id']}").get_json()
    assert first["event"] == "new_item" and "[redacted]" in first["body"]
    assert "rollbar-post-server-item-token-0000" not in first["body"]


def test_deliveries_need_a_responder_as_on_the_web(client, fed, viewer, responder):
    """Bodies and headers carry the senders' data: the web pages need a responder, so does the API."""
    from tests.factories import ApiClient, make_token

    delivery_id = ApiClient(client, make_token(responder)).get("/api/v1/deliveries").get_json()["items"][0]["id"]
    as_viewer = ApiClient(client, make_token(viewer))
    for url in ("/api/v1/deliveries", f"/api/v1/deliveries/{delivery_id}"):
        response = as_viewer.get(url)
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert as_viewer.get("/api/v1/alerts").status_code == 200  # alerts stay readable by viewers
    alert_id = as_viewer.get("/api/v1/alerts").get_json()["items"][0]["id"]
    [first, *_] = as_viewer.get(f"/api/v1/alerts/{alert_id}").get_json()["deliveries"]
    assert set(first) == {"id", "received_at", "event", "outcome"}  # as on the alert page: no headers


def test_api_needs_a_token(client, fed):
    for url in ("/api/v1/alerts", "/api/v1/deliveries", "/api/v1/alerts/1"):
        assert client.get(url).status_code == 401


def test_alert_routes_are_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert {"/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/deliveries",
            "/api/v1/deliveries/{delivery_id}"} <= set(document["paths"])
    alert = document["components"]["schemas"]["Alert"]["properties"]
    assert {"fingerprint", "occurrence_count"} <= set(alert)
