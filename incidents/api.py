"""The JSON API under /api/v1: a parent blueprint that authenticates by bearer token only (no cookies, so no CSRF
exposure) and rolls back refused requests, with each domain's routes on a child blueprint of its own.

A domain's routes live in incidents/<domain>/api.py on `bp = Blueprint("<domain>", __name__)`, using the helpers of
incidents.apihttp; DOMAINS below mounts them, so no domain imports this module. See incidents/openapi.py."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import Schema, fields

from incidents.action_item import api as action_item_api
from incidents.actor import Actor
from incidents.alert import api as alert_api
from incidents.audit import api as audit_api
from incidents.auth import services as auth_services
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.catalog import api as catalog_api
from incidents.database import writing
from incidents.extensions import csrf, db
from incidents.incident import api as incident_api
from incidents.insights import api as insights_api
from incidents.openapi import build_spec
from incidents.postmortem import api as postmortem_api
from incidents.report import api as report_api
from incidents.search import api as search_api
from incidents.tracker import api as tracker_api

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found = auth_services.find_token(db.session, token.strip())  # an expired token: 401 saying so
        if found is not None:
            g.api_user, g.api_token = found.user, found
            g.actor = Actor("token", found.id, f"token {found.prefix}… ({found.name or 'unnamed'}) of "
                                               f"{found.user.name} <{found.user.email}>")
            if auth_services.stamp_due(found):
                _stamp(found.id)


def _stamp(token_id: int) -> None:
    """last_used_at in a short write transaction of its own, never the request's: a read stays a read, and a slow
    request never holds SQLite's write lock (or the token's row) for it. Best effort: a busy database skips it and a
    later request stamps."""
    db.session.commit()  # ends what the request has read so far, so the stamp never waits behind this request
    try:
        with writing():
            auth_services.stamp_token(db.session, token_id, request.remote_addr)
            db.session.commit()
    except sa.exc.OperationalError:
        db.session.rollback()


@bp.after_request
def _rollback_refused(response):
    # A refused request leaves nothing half-done: a service may have flushed before it raised.
    if response.status_code >= 400:
        db.session.rollback()
    return response


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


# --- the domains' routes, mounted as api.<domain> -----------------------------------------------

DOMAINS: tuple[Blueprint, ...] = (action_item_api.bp, alert_api.bp, audit_api.bp, catalog_api.bp,
                                  incident_api.bp, insights_api.bp, postmortem_api.bp, report_api.bp,
                                  search_api.bp, tracker_api.bp)

csrf.exempt(bp)
for _child in DOMAINS:
    bp.register_blueprint(_child)
    csrf.exempt(_child)  # Flask-WTF exempts by the request's own blueprint, never by its parent
