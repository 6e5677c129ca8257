"""JSON API under /api/v1, authenticated by bearer tokens only (no cookies, so no CSRF exposure).

Domains add routes in incidents/<domain>/api.py on `bp` (imported at the bottom); see incidents/openapi.py."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import Schema, fields

from incidents import jsonbody
from incidents.auth import services as auth_services
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.database import Page, writing
from incidents.errors import DomainError, Invalid, NotFound
from incidents.extensions import csrf, db
from incidents.openapi import MAX_INT, PageArgsSchema, build_spec

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found = auth_services.find_token(db.session, token.strip())
        if found is not None:
            g.api_user = found.user
            if auth_services.stamp_due(found):
                _stamp(found.id)


def _stamp(token_id: int) -> None:
    """last_used_at in a short write transaction of its own, never the request's: a read stays a read, and a slow
    request never holds SQLite's write lock (or the token's row) for it. Best effort: a busy database skips it and a
    later request stamps."""
    db.session.commit()  # ends what the request has read so far, so the stamp never waits behind this request
    try:
        with writing():
            auth_services.stamp_token(db.session, token_id)
            db.session.commit()
    except sa.exc.OperationalError:
        db.session.rollback()


@bp.after_request
def _rollback_refused(response):
    # A refused request leaves nothing half-done: a service may have flushed before it raised.
    if response.status_code >= 400:
        db.session.rollback()
    return response


# --- helpers every domain's api.py uses ------------------------------------------------------------

def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(schema: Schema, *, optional: bool = False) -> dict:
    """The request body, parsed as a JSON object and loaded by `schema` (400 when not JSON, 422 when invalid);
    `optional`: an empty body loads as {}."""
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return schema.load({})
    try:
        data = jsonbody.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise DomainError("The request body must be UTF-8 encoded JSON.") from None
    except jsonbody.TooDeep as e:
        raise DomainError(f"The request body is not accepted: {e}") from None
    except ValueError as e:
        detail = f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise DomainError(f"The request body is not valid JSON ({detail}); "
                          "send a JSON object with Content-Type: application/json.") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise DomainError(f"The request body must be a JSON object, not {kind}.")
    return schema.load(data)


def query_args(schema: Schema) -> dict:
    """Query parameters loaded by `schema`; List fields take repeated and comma-separated values alike."""
    data: dict = {}
    for name, field in schema.fields.items():
        key = field.data_key or name
        if key not in request.args:
            continue
        if isinstance(field, fields.List):
            data[key] = [v.strip() for raw in request.args.getlist(key) for v in raw.split(",") if v.strip()]
        else:
            data[key] = request.args[key]
    return schema.load(data)


def page_window(args: dict) -> tuple[int, int]:
    """(page, per_page) from loaded PageArgsSchema args, per_page defaulting to PER_PAGE and capped at MAX_PER_PAGE."""
    cfg = current_app.config
    per_page = min(args.get("per_page") or cfg["PER_PAGE"], cfg["MAX_PER_PAGE"])
    return args.get("page") or 1, per_page


def page_of(items: list, page: int, per_page: int) -> Page:
    """One page of an in-memory list (short catalogues), shaped like database.paginate's."""
    return Page(items=items[(page - 1) * per_page: page * per_page], page=page, per_page=per_page,
                total=len(items))


def page_response(page: Page, schema: Schema) -> dict:
    """The one list shape: {"items", "page", "pages", "total"}."""
    return {"items": schema.dump(page.items, many=True), "page": page.page, "pages": page.pages,
            "total": page.total}


def checked_key(key: str, what: str) -> str:
    """A slug-or-id from the URL; numeric ids beyond the column range are simply not found (never a 500)."""
    if key.isascii() and key.isdigit() and int(key) > MAX_INT:
        raise NotFound(f"No {what} {key!r}.")
    return key


def lookup_field(find, key, field: str):
    """`find(session, key)` for a reference given in a body or query field: unknown is a 422 on that field."""
    try:
        return find(db.session, checked_key(str(key), field))
    except NotFound as e:
        raise Invalid(e.message, {field: [e.message]}) from None


# --- routes that belong to the API itself -------------------------------------------------------

class MeSchema(Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.Enum(Role, by_value=True, required=True)


@bp.get("/me")
@require(Role.VIEWER)
def me():
    """The user the bearer token belongs to.
    ---
    get:
      tags: [account]
      summary: The token's user
      responses:
        200:
          description: The user
          content:
            application/json:
              schema: MeSchema
    """
    return jsonify(MeSchema().dump(actor()))


@bp.get("/openapi.json")
def openapi():
    """This document.
    ---
    get:
      tags: [meta]
      summary: The OpenAPI document of this API
      security: []
      responses:
        200:
          description: OpenAPI 3.1 document
          content:
            application/json:
              schema:
                type: object
    """
    spec = current_app.extensions.get("incidents.openapi")
    if spec is None:  # routes are fixed once the app is built, so build it once
        spec = current_app.extensions["incidents.openapi"] = build_spec(current_app)
    return jsonify(spec)


__all__ = ["PageArgsSchema", "bp", "checked_key", "load_json", "lookup_field", "page_of", "page_response",
           "page_window", "query_args"]

# Domain routes register themselves on `bp` when imported; keep these last.
from incidents.action_item import api as _action_item_api  # noqa: E402, F401
from incidents.alert import api as _alert_api  # noqa: E402, F401
from incidents.catalog import api as _catalog_api  # noqa: E402, F401
from incidents.incident import api as _incident_api  # noqa: E402, F401
from incidents.postmortem import api as _postmortem_api  # noqa: E402, F401
from incidents.report import api as _report_api  # noqa: E402, F401
from incidents.tracker import api as _tracker_api  # noqa: E402, F401
