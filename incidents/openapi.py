"""The OpenAPI 3.1 document of /api/v1, generated from the routes themselves.

How a domain adds documented JSON routes (nothing in this file needs editing):

1. Put the routes in ``incidents/<domain>/api.py`` on a blueprint of the domain's own, and the schemas in
   ``incidents/<domain>/schemas.py`` (``XSchema`` out, ``XCreateSchema``/``XUpdateSchema`` in)::

       from flask import Blueprint

       from incidents.apihttp import page_args, page_response

       bp = Blueprint("alert", __name__)  # no url_prefix: the parent adds /api/v1

       @bp.get("/alerts")
       @require(Role.VIEWER)
       def list_alerts():
           \"\"\"Alerts, newest first.
           ---
           get:
             tags: [alerts]
             summary: List alerts
             parameters:
               - in: query
                 schema: PageArgsSchema
             responses:
               200:
                 description: A page of alerts
                 content:
                   application/json:
                     schema: AlertPageSchema
               422: ValidationError
           \"\"\"
           page, per_page = page_args()
           return jsonify(page_response(services.list_alerts(db.session, page, per_page), AlertSchema()))

   The domain's api.py imports helpers from ``incidents.apihttp`` only, never ``incidents.api``.

2. Add the blueprint to ``DOMAINS`` in ``incidents/api.py``: the ``api`` parent mounts it (endpoints become
   ``api.<domain>.<view>``, e.g. ``url_for("api.alert.list_alerts")``) and gives it bearer-token authentication,
   CSRF exemption and the rollback of refused requests.

3. Write the operation as YAML after a ``---`` line of the view's docstring, keyed by HTTP method
   (the apispec FlaskPlugin convention; every response needs a ``description``). Refer to marshmallow schemas
   by class name (``AlertSchema``; names must be unique across the app, and the class must have been imported,
   which the domain's api.py importing its schemas does) and to the shared error responses by name:
   ``BadRequest``, ``Unauthorized``, ``Forbidden``, ``NotFound``, ``Conflict``, ``ValidationError``,
   ``PayloadTooLarge``.
   Query parameters can be a schema: ``parameters: [{in: query, schema: XArgsSchema}]``. Lists answer
   ``{"items", "page", "pages", "total", "at_least"}`` (``page_response``): document them with a
   :class:`PageSchema` subclass that adds ``items = fields.List(fields.Nested(XSchema), required=True)``.

Request bodies go through ``incidents.apihttp.load_json(XCreateSchema())`` (400 for a body that is not a JSON
object, 422 with field messages), unknown slugs or ids named in a body through ``lookup_field`` (422 on that
field), and a refused request is rolled back by the parent blueprint, so services may flush freely before raising.

The generator walks every ``api.*`` endpoint in ``app.url_map``; path parameters come from the URL rule,
every operation needs the bearer token unless it says ``security: []``, and an operation that does not list
401 gets the shared ``Unauthorized`` response (likewise 400/422 for a request body
and 403 for a write; 404 where the path has parameters, 413 for a body, 414 everywhere). Operations are
named by their view function (``operationId``: ``list_alerts``, without the blueprint names, so view names must be
unique across the API), and ``LINKS`` below adds the OpenAPI links between them.
tests/test_openapi.py fails when a route or method has no
operation, so an undocumented route cannot ship.
"""

from __future__ import annotations

import logging
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_operations_from_docstring, load_yaml_from_docstring
from flask import Flask
from marshmallow import Schema, fields, validate

from incidents.bounds import MAX_INT

log = logging.getLogger(__name__)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
BLUEPRINT = "api"
_METHODS = ("get", "post", "put", "patch", "delete")
_RULE_ARG = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")
# Path ids: what incidents.bounds.IdConverter matches (anything else never reaches a view: 404).
_CONVERTER_TYPES = {"int": {"type": "integer", "minimum": 0, "maximum": MAX_INT}, "float": {"type": "number"},
                    "uuid": {"type": "string", "format": "uuid"}}


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "Machine-readable, e.g. not_found."})
    message = fields.String(required=True, metadata={"description": "A sentence for people."})
    field_errors = fields.Dict(keys=fields.String(), required=True, data_key="fields",
                               metadata={"description": "Per-field messages (422), else empty."})


class ErrorSchema(Schema):
    """Every 4xx answer of the API."""

    error = fields.Nested(ErrorDetailSchema, required=True)


class PageSchema(Schema):
    """Base of every list answer; subclasses add `items = fields.List(fields.Nested(XSchema), required=True)`."""

    page = fields.Integer(required=True)
    pages = fields.Integer(required=True)
    total = fields.Integer(required=True)
    at_least = fields.Boolean(required=True, metadata={
        "description": "True when counting stopped at 10,000: `total` and `pages` are then floors, not exact."})


class JsonInteger(fields.Integer):
    """A JSON integer as JSON Schema reads it: 7 and 7.0 load, "7", 7.5 and true do not."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


def add_field(schema: type[Schema], name: str, field: fields.Field) -> None:
    """Add a field to a lower domain's schema from the domain above it, so the lower package never imports the
    upper one (the tracker adds `export` to ActionItemSchema). Called from the upper domain's `init_app`; instances
    made afterwards, and the OpenAPI document, see it like a declared field."""
    schema._declared_fields[name] = field


class PageArgsSchema(Schema):
    """`page` and `per_page` query parameters; per_page above MAX_PER_PAGE is lowered to it."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_INT))
    per_page = fields.Integer(validate=validate.Range(min=1, max=MAX_INT),
                              metadata={"description": "Capped at MAX_PER_PAGE (200 by default)."})


# The same two parameters for docstrings that list their query parameters one by one.
PAGE_PARAMETERS = [
    {"in": "query", "name": "page", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT}},
    {"in": "query", "name": "per_page", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
     "description": "Capped at MAX_PER_PAGE (200 by default)."},
]


ERROR_RESPONSES = {
    "BadRequest": "The body is not a JSON object.",
    "Unauthorized": "No valid bearer token.",
    "Forbidden": "The token's user lacks the role.",
    "NotFound": "No such resource.",
    "Conflict": "The request conflicts with the current state (taken slug, invalid status transition).",
    "ValidationError": "Invalid fields; `error.fields` maps each to its messages.",
    "PayloadTooLarge": "The body is larger than MAX_CONTENT_LENGTH (1 MiB by default).",
}

# OpenAPI links: which operation's answer names the resource that others act on, so clients (and
# schemathesis' stateful phase) can follow a created incident to its post-mortem, sections and action items.
_INCIDENT = {"ref": "$response.body#/ref"}
_POSTMORTEM = {"postmortem_id": "$response.body#/id"}
_SECTION = {"postmortem_id": "$response.body#/id", "key": "$response.body#/sections/0/key"}
_ITEM = {"item_id": "$response.body#/id"}
_SLUG = {"key": "$response.body#/slug"}
LINKS: dict[str, dict[str, tuple[str, dict]]] = {
    "create_incident": {
        "GetIncident": ("get_incident", _INCIDENT), "UpdateIncident": ("update_incident", _INCIDENT),
        "ListTimeline": ("list_timeline", _INCIDENT), "AddNote": ("add_note", _INCIDENT),
        "StartPostmortem": ("start_postmortem", _INCIDENT),
    },
    "start_postmortem": {
        "GetPostmortem": ("get_postmortem", _POSTMORTEM), "SaveSection": ("save_section", _SECTION),
        "SectionHistory": ("section_history", _SECTION), "AddFactor": ("add_factor", _POSTMORTEM),
        "AddComment": ("add_comment", _POSTMORTEM), "CreateActionItem": ("create_action_item", _POSTMORTEM),
        "SubmitForReview": ("submit_for_review", _POSTMORTEM), "Publish": ("publish", _POSTMORTEM),
        "Reopen": ("reopen", _POSTMORTEM), "ExportItems": ("export_postmortem_items", _POSTMORTEM),
    },
    "get_postmortem": {"SaveSection": ("save_section", _SECTION), "SectionHistory": ("section_history", _SECTION)},
    "create_action_item": {
        "GetActionItem": ("get_action_item", _ITEM), "UpdateActionItem": ("update_action_item", _ITEM),
        "ExportActionItem": ("export_action_item", _ITEM),
    },
    "create_team": {"GetTeam": ("get_team", _SLUG), "UpdateTeam": ("update_team", _SLUG)},
    "create_service": {"GetService": ("get_service", _SLUG), "UpdateService": ("update_service", _SLUG)},
}


def build_spec(app: Flask, blueprint: str = BLUEPRINT) -> dict:
    """The OpenAPI document for every endpoint of `blueprint` in the app's URL map."""
    spec = APISpec(
        title="Incidents API",
        version=API_VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": "JSON API of Incidents. Authenticate with `Authorization: Bearer <token>` "
                             "(create tokens under Account → API tokens)."},
        # Built once per app, so never from a request's host: without BASE_URL, "/" (wherever the spec was read).
        servers=[{"url": str(app.config.get("BASE_URL") or "").rstrip("/") or "/"}],
        security=[{"bearerAuth": []}],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    for name, description in ERROR_RESPONSES.items():
        spec.components.response(name, {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        })
    # gunicorn answers it before the app sees the request, so in its own words (HTML).
    spec.components.response("UriTooLong", {
        "description": "The request line (path and query) is longer than the server reads (4094 bytes).",
        "content": {"text/html": {"schema": {"type": "string"}}},
    })

    rules = sorted((r for r in app.url_map.iter_rules() if r.endpoint.startswith(blueprint + ".")),
                   key=lambda r: (r.rule, r.endpoint))
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        operations = _operations(view, {m.lower() for m in rule.methods or ()})
        if not operations:
            log.warning("OpenAPI: %s (%s) has no documented operation", rule.rule, rule.endpoint)
            continue
        name = rule.endpoint.rsplit(".", 1)[1]  # the view's name: api.incident.get_incident -> get_incident
        path_types = {n: _CONVERTER_TYPES.get(c or "", {}) for c, n in _RULE_ARG.findall(rule.rule)}
        for method, operation in operations.items():
            operation.setdefault("operationId", name)
            # A docstring's own path parameter keeps the converter's bounds.
            for param in operation.get("parameters", []):
                if isinstance(param, dict) and param.get("in") == "path" and path_types.get(param.get("name")):
                    param["schema"] = {**param.get("schema", {}), **path_types[param["name"]]}
            responses = operation.get("responses")
            if responses is None:
                continue
            _add_links(name, responses)
            codes = set(map(str, responses))
            if path_types and "404" not in codes:  # an unknown id, or a path no rule matches
                responses[404] = "NotFound"
            responses.setdefault(414, "UriTooLong")
            # The answers every operation of this API can give, added where a docstring leaves them out.
            if operation.get("security") != [] and "401" not in codes:
                responses[401] = "Unauthorized"
            if "requestBody" in operation:
                for code, ref in (("400", "BadRequest"), ("413", "PayloadTooLarge"), ("422", "ValidationError")):
                    if code not in codes:
                        responses[int(code)] = ref
            if method in ("post", "put", "patch", "delete") and operation.get("security") != [] and "403" not in codes:
                responses[403] = "Forbidden"
        spec.path(path=_openapi_path(rule.rule), operations=operations, parameters=_path_parameters(rule.rule))
    return spec.to_dict()


def _add_links(name: str, responses: dict) -> None:
    """The LINKS of operation `name` on its first 2xx response."""
    links = LINKS.get(name)
    success = next((code for code in responses if str(code).startswith("2")), None)
    if not links or success is None or not isinstance(responses[success], dict):
        return
    responses[success]["links"] = {link: {"operationId": target, "parameters": dict(params)}
                                   for link, (target, params) in links.items()}


def _operations(view, methods: set[str]) -> dict:
    """The docstring YAML operations of `view` for the methods its rule answers (MethodViews per method)."""
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        ops = {m: load_yaml_from_docstring(getattr(view_class, m).__doc__ or "")
               for m in _METHODS if m in methods and hasattr(view_class, m)}
        ops = {m: op for m, op in ops.items() if op}
    else:
        ops = load_operations_from_docstring(view.__doc__ or "")
    return {m: op for m, op in ops.items() if m in methods}


def _openapi_path(rule: str) -> str:
    return _RULE_ARG.sub(r"{\2}", rule)


def _path_parameters(rule: str) -> list[dict]:
    return [
        {"in": "path", "name": name, "required": True,
         "schema": dict(_CONVERTER_TYPES.get(converter or "", {"type": "string"}))}
        for converter, name in _RULE_ARG.findall(rule)
    ]
