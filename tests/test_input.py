"""Hostile input at the boundary: numbers beyond the id columns and deeply nested JSON are a 4xx with the error
envelope on the API and the web pages alike, never a 500 (security review, issue 11, finding 9)."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from incidents.alert.models import Delivery, Outcome
from incidents.extensions import db
from tests.alert.conftest import make_integration, post
from tests.conftest import login
from tests.factories import make_incident, make_token

BIG = str(2**64)
HUGE = "9" * 5000  # beyond what int() converts at all
DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError
NESTED = {"title": "x", "severity": "SEV2"}
for _ in range(150):  # readable by json.loads, but deeper than anything real
    NESTED = {"x": NESTED}


@pytest.mark.parametrize("path", [
    f"/api/v1/incidents/{BIG}", f"/api/v1/alerts/{BIG}", f"/api/v1/deliveries/{BIG}", f"/api/v1/postmortems/{BIG}",
    f"/api/v1/action-items/{BIG}", f"/api/v1/teams/{BIG}", f"/api/v1/alerts/{HUGE}",
])
def test_api_ids_beyond_the_columns_are_404_with_the_envelope(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", [
    f"/alerts/{BIG}", f"/deliveries/{BIG}", f"/admin/teams/{BIG}/edit", f"/admin/services/{BIG}/edit",
    f"/admin/integrations/{BIG}", f"/incidents/{BIG}", f"/postmortems/{BIG}",
])
def test_web_ids_beyond_the_columns_are_404(admin_client, path):
    assert admin_client.get(path).status_code == 404
    response = admin_client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v1/alerts", "/api/v1/deliveries",
                                  "/api/v1/postmortems", "/api/v1/action-items", "/api/v1/teams"])
def test_api_page_numbers_beyond_the_columns_are_422_naming_page(api, path):
    response = api.get(f"{path}?page={BIG}")
    assert response.status_code == 422
    assert "page" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("query", [f"integration={BIG}", f"alert={BIG}"])
def test_api_id_filters_beyond_the_columns_are_422(api, query):
    response = api.get(f"/api/v1/deliveries?{query}")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("path", ["/api/v1/incidents?team=pay%00ments", "/api/v1/incidents?service=api%00",
                                  "/api/v1/incidents?team=a%00&q=replication&tag=x", "/api/v1/alerts?severity=x%00",
                                  "/api/v1/search?q=a%00b"])
def test_query_parameters_holding_a_nul_are_422_not_500(api, path):
    # PostgreSQL cannot compare text holding a NUL: refused once for every API endpoint, naming the parameter.
    response = api.get(path)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "validation_error"
    assert set(response.get_json()["error"]["fields"]) <= {"team", "service", "severity", "q"}


@pytest.mark.parametrize("path", ["/", "/alerts", "/deliveries", "/postmortems", "/action-items",
                                  f"/alerts?integration={BIG}", f"/deliveries?integration={BIG}"])
def test_web_list_page_numbers_beyond_the_columns_are_422(admin_client, path):
    url = path if "?" in path else f"{path}?page={BIG}"
    response = admin_client.get(url)
    assert response.status_code == 422
    assert "too large" in response.get_data(as_text=True)  # the page says which parameter, not a stack trace


def test_no_get_route_answers_500_to_huge_numbers(app, client, admin):
    """Every GET route, with every path segment and the usual query parameters set to a 65-bit number."""
    make_incident()
    headers = {"Authorization": f"Bearer {make_token(admin)}"}
    login(client, admin)
    failures = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        url = re.sub(r"<[^>]+>", BIG, rule.rule)
        for query in ("", f"?page={BIG}", f"?integration={BIG}&alert={BIG}&team={BIG}&service={BIG}"
                                          f"&owner={BIG}&per_page={BIG}"):
            response = client.get(url + query, headers=headers if url.startswith("/api/") else {})
            if response.status_code >= 500:
                failures.append((url + query, response.status_code))
    assert failures == []


@pytest.mark.parametrize("body", [DEEP, json.dumps(NESTED)])
def test_api_deeply_nested_json_is_400_with_the_envelope(api, body):
    response = api.client.post("/api/v1/incidents", data=body, headers=api.headers | {
        "Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and "nested deeper" in error["message"]


def test_integration_rules_form_with_deeply_nested_json_is_422(admin_client):
    from tests.conftest import post_form

    response = post_form(admin_client, "/admin/integrations", {"source": "rollbar", "name": "deep", "rules": DEEP})
    assert response.status_code == 422


@pytest.mark.parametrize("body", [DEEP, json.dumps(NESTED)])
def test_deeply_nested_webhook_is_rejected_and_kept(client, app, body):
    _, token = make_integration("rollbar", "deep")
    response = post(client, "rollbar", body, token)
    assert response.status_code == 400
    assert response.get_json()["outcome"] == "rejected"
    [row] = db.session.scalars(sa.select(Delivery)).all()
    assert row.outcome == Outcome.REJECTED and "nested deeper" in row.error


# --- single-line fields (finding 10) -----------------------------------------------------------------

@pytest.mark.parametrize(("url", "body", "field"), [
    ("/api/v1/incidents", {"title": "DB down\r\nBcc: everyone@example.com", "severity": "SEV2"}, "title"),
    ("/api/v1/incidents", {"title": "DB\tdown", "severity": "SEV2"}, "title"),
    ("/api/v1/incidents", {"title": "DB down", "severity": "SEV2", "tags": ["db\nx"]}, "tags"),
    ("/api/v1/teams", {"name": "Pay\nments"}, "name"),
    ("/api/v1/teams", {"name": "Payments", "slug": "payments\n"}, "slug"),
])
def test_api_single_line_fields_refuse_control_characters(client, admin, url, body, field):
    from tests.factories import ApiClient

    response = ApiClient(client, make_token(admin)).post(url, json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_api_title_update_refuses_control_characters(api):
    incident = make_incident()
    response = api.patch(f"/api/v1/incidents/{incident.ref}", json={"title": "x\u2028y"})
    assert response.status_code == 422 and "title" in response.get_json()["error"]["fields"]


def test_web_incident_form_refuses_a_title_with_a_line_break(responder_client):
    from incidents.incident.models import Incident
    from tests.conftest import post_form

    response = post_form(responder_client, "/incidents/new", {"title": "DB down\r\nBcc: x@example.com",
                                                               "severity": "SEV2"})
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_services_refuse_control_characters_whatever_the_caller(session):
    from incidents.catalog import services as catalog
    from incidents.errors import Invalid
    from incidents.incident import services as incidents

    with pytest.raises(Invalid) as err:
        incidents.declare_incident(session, title="a\nb", severity="SEV3")
    assert set(err.value.fields) == {"title"}
    with pytest.raises(Invalid) as err:
        catalog.create_team(session, name="Pay\nments", slug="payments")
    assert set(err.value.fields) == {"name"}
    from incidents.auth import services as auth

    with pytest.raises(Invalid) as err:  # a user's name goes into the To header of every e-mail to them
        auth.create_user(session, email="ada@example.com", name="Ada\r\nBcc: x@example.com", role="viewer",
                         password="a long password")
    assert set(err.value.fields) == {"name"}


def test_alert_titles_with_line_breaks_are_folded_not_refused(client, app):
    from incidents.incident.models import Incident
    from tests.alert.conftest import fixture

    _, token = make_integration("rollbar", "lines")
    payload = fixture("rollbar_new_item_production")
    payload["data"]["item"]["title"] = "KeyError: 'user'\r\nin checkout"
    assert post(client, "rollbar", payload, token).status_code == 200
    [incident] = db.session.scalars(sa.select(Incident)).all()
    assert incident.title == "KeyError: 'user' in checkout"


@pytest.mark.parametrize("kind", [str, bytes])
def test_the_depth_limit_is_exact_whatever_the_count_of_brackets(kind):
    """Counting brackets only spares the walk: a shallow document with more brackets than the limit is read, and
    one level past the limit is refused, as text or as bytes."""
    from incidents import jsonbody

    def encode(value):
        text = json.dumps(value)
        return text if kind is str else text.encode()

    shallow = [{"a": [1]} for _ in range(jsonbody.MAX_DEPTH)]  # 200 openings, depth 3
    assert jsonbody.loads(encode(shallow)) == shallow
    at_limit: list = []
    for _ in range(jsonbody.MAX_DEPTH - 1):
        at_limit = [at_limit]
    assert jsonbody.depth(at_limit) == jsonbody.MAX_DEPTH
    assert jsonbody.loads(encode(at_limit)) == at_limit
    deeper = [at_limit]
    with pytest.raises(jsonbody.TooDeep):
        jsonbody.loads(encode(deeper))
    brackets_in_strings = {"x": "[" * 500 + "{" * 500}  # counted, then walked: depth 1
    assert jsonbody.loads(encode(brackets_in_strings)) == brackets_in_strings
