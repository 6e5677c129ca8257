"""The generated OpenAPI document: valid, complete for every api.* route, and true to real responses."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint, Flask, jsonify
from marshmallow import Schema, fields
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_instance
from openapi_spec_validator import validate as validate_spec

from incidents.openapi import MAX_INT, build_spec
from tests.factories import ApiClient, make_incident, make_service, make_token

_IGNORED_METHODS = {"HEAD", "OPTIONS"}


def undocumented(app: Flask, spec: dict) -> list[str]:
    """Every `METHOD /path` of an api.* rule without an operation that has a success response."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - _IGNORED_METHODS):
            operation = spec["paths"].get(path, {}).get(method.lower())
            if not operation or not any(str(code).startswith("2") for code in operation.get("responses", {})):
                missing.append(f"{method} {path}")
    return missing


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")  # no token: the document is public
    assert response.status_code == 200
    return response.get_json()


def test_document_is_valid_openapi_with_bearer_security(spec):
    validate_spec(spec)
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_every_api_route_is_documented(app, spec):
    assert undocumented(app, spec) == []
    rules = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")}
    assert {"api.incident.list_incidents", "api.incident.update_incident", "api.incident.add_note",
            "api.catalog.list_teams", "api.catalog.update_service", "api.me", "api.openapi"} <= rules


def test_operations_document_their_errors_and_schemas(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            success = [r for code, r in responses.items() if code.startswith("2")]
            assert success and all("content" in r for r in success), where
            for code, response in responses.items():
                if code.startswith("4"):  # the shared error responses, or an error body of its own
                    assert ("$ref" in response and response["$ref"].startswith("#/components/responses/")) or (
                        response.get("description") and "application/json" in response.get("content", {})), where
            if operation.get("security") != []:
                assert "401" in responses, where
            if "requestBody" in operation:
                assert {"400", "422"} <= set(responses), where
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert schema["$ref"].startswith("#/components/schemas/"), where
            if method in ("post", "patch") and "security" not in operation:
                assert "403" in responses, where
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    assert set(spec["components"]["schemas"]["ErrorDetail"]["required"]) == {"code", "message", "fields"}


def test_a_domain_module_the_generator_has_never_seen_is_picked_up():
    """The convention other domains follow: routes on a blueprint named api, operations in docstrings."""

    class WidgetSchema(Schema):
        id = fields.Integer(required=True)
        name = fields.String(required=True)

    app = Flask(__name__)
    bp = Blueprint("api", __name__, url_prefix="/api/v1")

    @bp.get("/widgets/<int:widget_id>")
    def get_widget(widget_id):
        """A widget.
        ---
        get:
          summary: One widget
          responses:
            200:
              description: The widget
              content:
                application/json:
                  schema: WidgetSchema
            404: NotFound
        """
        return jsonify({"id": widget_id, "name": "w"})

    @bp.route("/widgets", methods=["GET", "POST"])
    def widgets():
        """Only GET is documented here, so POST must be reported.
        ---
        get:
          responses:
            200:
              description: Widgets
              content:
                application/json:
                  schema: WidgetSchema
        """

    app.register_blueprint(bp)
    spec = build_spec(app)
    validate_spec(spec)
    operation = spec["paths"]["/api/v1/widgets/{widget_id}"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Widget"}
    assert operation["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
    assert spec["paths"]["/api/v1/widgets/{widget_id}"]["parameters"] == [
        {"in": "path", "name": "widget_id", "required": True,
         "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}}]
    assert operation["operationId"] == "get_widget" and operation["responses"]["414"] == {
        "$ref": "#/components/responses/UriTooLong"}
    assert set(spec["components"]["schemas"]["Widget"]["required"]) == {"id", "name"}
    assert undocumented(app, spec) == ["POST /api/v1/widgets"]


# --- real responses against the documented schemas -------------------------------------------------

def assert_documented(spec: dict, method: str, path: str, response) -> None:
    """Validate a real response body against the schema the document gives for its path, method and status."""
    documented = spec["paths"][path][method]["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {path} does not document {response.status_code}"
    if "$ref" in documented:
        documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    schema = documented["content"]["application/json"]["schema"]
    validate_instance(response.get_json(), {**schema, "components": spec["components"]}, cls=OAS31Validator,
                      format_checker=OAS31Validator.FORMAT_CHECKER)


def test_real_responses_match_the_document(spec, api, client, viewer, responder):
    service = make_service(slug="payments")
    created = api.post("/api/v1/incidents", json={"title": "Down", "severity": "SEV1", "service": "payments",
                                                  "summary": "*all* down", "commander_id": responder.id})
    assert_documented(spec, "post", "/api/v1/incidents", created)
    ref = created.get_json()["ref"]
    bare = make_incident()  # nulls everywhere: no service, team or roles
    assert_documented(spec, "get", "/api/v1/incidents/{ref}", api.get(f"/api/v1/incidents/{bare.ref}"))
    assert_documented(spec, "get", "/api/v1/incidents", api.get("/api/v1/incidents?status=triggered"))
    assert_documented(spec, "patch", "/api/v1/incidents/{ref}",
                      api.patch(f"/api/v1/incidents/{ref}", json={"status": "resolved", "resolution": "Rolled back"}))
    assert_documented(spec, "post", "/api/v1/incidents/{ref}/timeline",
                      api.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "Rolled back"}))
    assert_documented(spec, "get", "/api/v1/incidents/{ref}/timeline", api.get(f"/api/v1/incidents/{ref}/timeline"))
    assert_documented(spec, "get", "/api/v1/teams", api.get("/api/v1/teams"))
    assert_documented(spec, "get", "/api/v1/teams/{key}", api.get(f"/api/v1/teams/{service.team_id}"))
    assert_documented(spec, "get", "/api/v1/services", api.get("/api/v1/services"))
    assert_documented(spec, "get", "/api/v1/services/{key}", api.get("/api/v1/services/payments"))
    assert_documented(spec, "get", "/api/v1/me", api.get("/api/v1/me"))

    errors = [
        ("patch", "/api/v1/incidents/{ref}", api.patch(f"/api/v1/incidents/{ref}", json={"status": "mitigated"}), 409),
        ("patch", "/api/v1/incidents/{ref}", api.patch(f"/api/v1/incidents/{ref}", json={"severity": "x"}), 422),
        ("post", "/api/v1/incidents", api.client.post("/api/v1/incidents", data="[", headers=api.headers,
                                                      content_type="application/json"), 400),
        ("get", "/api/v1/incidents/{ref}", api.get("/api/v1/incidents/INC-424242"), 404),
        ("get", "/api/v1/incidents", client.get("/api/v1/incidents"), 401),
        ("post", "/api/v1/incidents", ApiClient(client, make_token(viewer)).post("/api/v1/incidents", json={}), 403),
        ("post", "/api/v1/teams", api.post("/api/v1/teams", json={"name": "x"}), 403),
    ]
    for method, path, response, status in errors:
        assert response.status_code == status, (path, response.get_json())
        assert_documented(spec, method, path, response)


def test_every_answer_the_server_can_give_is_documented_and_links_reach_created_resources(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            responses = operation["responses"]
            if "{" in path:  # an unknown id, or one beyond MAX_INT (a 404 of the bounded converter)
                assert "404" in responses, f"{method} {path}"
            if "requestBody" in operation:
                assert responses["413"] == {"$ref": "#/components/responses/PayloadTooLarge"}
    postmortem = spec["paths"]["/api/v1/incidents/{ref}/postmortem"]["post"]["responses"]["201"]["links"]
    assert postmortem["SaveSection"] == {"operationId": "save_section", "parameters": {
        "postmortem_id": "$response.body#/id", "key": "$response.body#/sections/0/key"}}
    operation_ids = {op["operationId"] for item in spec["paths"].values() for m, op in item.items()
                     if m != "parameters"}
    for item in spec["paths"].values():
        for method, operation in item.items():
            for response in operation.get("responses", {}).values() if method != "parameters" else ():
                for link in response.get("links", {}).values():
                    assert link["operationId"] in operation_ids
    item_type = spec["components"]["schemas"]["ActionItem"]["properties"]["type"]
    assert None in item_type["enum"] and "null" in item_type["type"]


def test_ids_beyond_the_column_range_are_not_found(client):
    from tests.factories import make_user

    api = ApiClient(client, make_token(make_user(role="admin")))
    for path in ("/api/v1/postmortems/99999999999999999999/publish", "/api/v1/action-items/2147483648"):
        response = api.post(path, json={}) if path.endswith("publish") else api.patch(path, json={})
        assert response.status_code == 404, (path, response.get_data(as_text=True))
