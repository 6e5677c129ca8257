"""JSON routes for teams and services, mounted under /api/v1 as api.catalog: everyone reads, admins write."""

from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from incidents.apihttp import (
    checked_key,
    load_json,
    lookup_field,
    page_args,
    page_of,
    page_response,
    page_window,
    query_args,
)
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services
from incidents.catalog.schemas import (
    ServiceCreateSchema,
    ServiceListArgsSchema,
    ServiceSchema,
    ServiceUpdateSchema,
    TeamCreateSchema,
    TeamSchema,
    TeamUpdateSchema,
)
from incidents.extensions import db

bp = Blueprint("catalog", __name__)


@bp.get("/teams")
@require(Role.VIEWER)
def list_teams():
    """Teams by name.
    ---
    get:
      tags: [catalog]
      summary: List teams
      parameters:
        - in: query
          schema: PageArgsSchema
      responses:
        200:
          description: A page of teams
          content:
            application/json:
              schema: TeamPageSchema
        422: ValidationError
    """
    page, per_page = page_args()
    return jsonify(page_response(page_of(services.list_teams(db.session), page, per_page), TeamSchema()))


@bp.post("/teams")
@require(Role.ADMIN)
def create_team():
    """Create a team.
    ---
    post:
      tags: [catalog]
      summary: Create a team (admin)
      requestBody:
        required: true
        content:
          application/json:
            schema: TeamCreateSchema
      responses:
        201:
          description: The new team; Location is its URL
          content:
            application/json:
              schema: TeamSchema
        400: BadRequest
        403: Forbidden
        409: Conflict
        422: ValidationError
    """
    team = services.create_team(db.session, **load_json(TeamCreateSchema()))
    db.session.commit()
    return jsonify(TeamSchema().dump(team)), 201, {"Location": url_for("api.catalog.get_team", key=team.slug)}


@bp.get("/teams/<key>")
@require(Role.VIEWER)
def get_team(key):
    """One team by slug or id.
    ---
    get:
      tags: [catalog]
      summary: Get a team
      responses:
        200:
          description: The team
          content:
            application/json:
              schema: TeamSchema
        404: NotFound
    """
    return jsonify(TeamSchema().dump(services.get_team(db.session, checked_key(key, "team"))))


@bp.patch("/teams/<key>")
@require(Role.ADMIN)
def update_team(key):
    """Change a team's name, slug or description.
    ---
    patch:
      tags: [catalog]
      summary: Update a team (admin)
      requestBody:
        required: true
        content:
          application/json:
            schema: TeamUpdateSchema
      responses:
        200:
          description: The updated team
          content:
            application/json:
              schema: TeamSchema
        400: BadRequest
        403: Forbidden
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    team = services.get_team(db.session, checked_key(key, "team"))
    services.update_team(db.session, team, **load_json(TeamUpdateSchema()))
    db.session.commit()
    return jsonify(TeamSchema().dump(team))


@bp.get("/services")
@require(Role.VIEWER)
def list_services():
    """Services by name, optionally of one team.
    ---
    get:
      tags: [catalog]
      summary: List services
      parameters:
        - in: query
          schema: ServiceListArgsSchema
      responses:
        200:
          description: A page of services
          content:
            application/json:
              schema: ServicePageSchema
        422: ValidationError
    """
    args = query_args(ServiceListArgsSchema())
    team = lookup_field(services.get_team, args["team"], "team") if args.get("team") else None
    items = services.list_services(db.session, team.id if team else None)
    return jsonify(page_response(page_of(items, *page_window(args)), ServiceSchema()))


@bp.post("/services")
@require(Role.ADMIN)
def create_service():
    """Create a service owned by a team.
    ---
    post:
      tags: [catalog]
      summary: Create a service (admin)
      requestBody:
        required: true
        content:
          application/json:
            schema: ServiceCreateSchema
      responses:
        201:
          description: The new service; Location is its URL
          content:
            application/json:
              schema: ServiceSchema
        400: BadRequest
        403: Forbidden
        409: Conflict
        422: ValidationError
    """
    data = load_json(ServiceCreateSchema())
    data["team_id"] = lookup_field(services.get_team, data.pop("team"), "team").id
    service = services.create_service(db.session, **data)
    db.session.commit()
    location = url_for("api.catalog.get_service", key=service.slug)
    return jsonify(ServiceSchema().dump(service)), 201, {"Location": location}


@bp.get("/services/<key>")
@require(Role.VIEWER)
def get_service(key):
    """One service by slug or id.
    ---
    get:
      tags: [catalog]
      summary: Get a service
      responses:
        200:
          description: The service
          content:
            application/json:
              schema: ServiceSchema
        404: NotFound
    """
    return jsonify(ServiceSchema().dump(services.get_service(db.session, checked_key(key, "service"))))


@bp.patch("/services/<key>")
@require(Role.ADMIN)
def update_service(key):
    """Change a service's name, slug, description or owning team.
    ---
    patch:
      tags: [catalog]
      summary: Update a service (admin)
      requestBody:
        required: true
        content:
          application/json:
            schema: ServiceUpdateSchema
      responses:
        200:
          description: The updated service
          content:
            application/json:
              schema: ServiceSchema
        400: BadRequest
        403: Forbidden
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    service = services.get_service(db.session, checked_key(key, "service"))
    data = load_json(ServiceUpdateSchema())
    if "team" in data:
        data["team_id"] = lookup_field(services.get_team, data.pop("team"), "team").id
    services.update_service(db.session, service, **data)
    db.session.commit()
    return jsonify(ServiceSchema().dump(service))
