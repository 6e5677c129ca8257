"""JSON routes for incidents and their timeline, mounted under /api/v1 as api.incident: viewers read, responders
write."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify, url_for

from incidents.apihttp import load_json, lookup_field, page_args, page_response, page_window, query_args
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.catalog import services as catalog
from incidents.database import paginate
from incidents.extensions import db
from incidents.incident import services
from incidents.incident.models import IncidentRole, TimelineEntry
from incidents.incident.schemas import (
    IncidentCreateSchema,
    IncidentListArgsSchema,
    IncidentSchema,
    IncidentUpdateSchema,
    NoteCreateSchema,
    StatusUpdateCreateSchema,
    StatusUpdateSchema,
    TimelineEntrySchema,
)

bp = Blueprint("incident", __name__)


def _placement(data: dict) -> dict:
    """Body `service`/`team` (slug or id, or null) as the ids the services take; unknown ones are a 422."""
    out = {}
    for field, find in (("service", catalog.get_service), ("team", catalog.get_team)):
        if field in data:
            key = data.pop(field)
            out[f"{field}_id"] = lookup_field(find, key, field).id if key is not None else None
    return out


@bp.get("/incidents")
@require(Role.VIEWER)
def list_incidents():
    """Incidents, newest first, filtered; counted up to 10,000, then paged on by cursor (`next`, `before`).
    ---
    get:
      tags: [incidents]
      summary: List incidents
      parameters:
        - in: query
          schema: IncidentListArgsSchema
      responses:
        200:
          description: A page of incidents
          content:
            application/json:
              schema: IncidentPageSchema
        422: ValidationError
    """
    args = query_args(IncidentListArgsSchema())
    page, per_page = page_window(args)
    service = lookup_field(catalog.get_service, args["service"], "service") if args.get("service") else None
    team = lookup_field(catalog.get_team, args["team"], "team") if args.get("team") else None
    f = services.IncidentFilter(
        status=[s.value for s in args.get("status") or []] or None,
        severity=[s.value for s in args.get("severity") or []] or None,
        service=str(service.id) if service else None, team=str(team.id) if team else None,
        tag=args.get("tag") or None, q=args.get("q") or None, open_only=bool(args.get("open")),
    )
    return jsonify(page_response(services.list_incidents(db.session, f, page, per_page, before=args.get("before")),
                                 IncidentSchema()))


@bp.post("/incidents")
@require(Role.RESPONDER)
def create_incident():
    """Declare an incident; it starts triggered.
    ---
    post:
      tags: [incidents]
      summary: Declare an incident (responder)
      requestBody:
        required: true
        content:
          application/json:
            schema: IncidentCreateSchema
      responses:
        201:
          description: The new incident; Location is its API URL
          content:
            application/json:
              schema: IncidentSchema
        400: BadRequest
        403: Forbidden
        422: ValidationError
    """
    data = load_json(IncidentCreateSchema())
    data |= _placement(data)
    incident = services.create_incident(db.session, created_by=actor(), **data)
    db.session.commit()
    location = url_for("api.incident.get_incident", ref=incident.ref)
    return jsonify(IncidentSchema().dump(incident)), 201, {"Location": location}


@bp.get("/incidents/<ref>")
@require(Role.VIEWER)
def get_incident(ref):
    """One incident by ref (INC-42) or id (42).
    ---
    get:
      tags: [incidents]
      summary: Get an incident
      responses:
        200:
          description: The incident
          content:
            application/json:
              schema: IncidentSchema
        404: NotFound
    """
    return jsonify(IncidentSchema().dump(services.get_incident(db.session, ref)))


@bp.patch("/incidents/<ref>")
@require(Role.RESPONDER)
def update_incident(ref):
    """Edit fields, assign roles and move the status, all or nothing.
    ---
    patch:
      tags: [incidents]
      summary: Update an incident (responder)
      description: >
        Only the fields given change. `status` goes through the same transition as the web buttons
        (milestone times are set and the timeline is written); a transition the status machine refuses
        answers 409 and nothing else changes. `commander_id`, `comms_lead_id` and `scribe_id` assign
        (or, with null, clear) the incident roles.
      requestBody:
        required: true
        content:
          application/json:
            schema: IncidentUpdateSchema
      responses:
        200:
          description: The updated incident
          content:
            application/json:
              schema: IncidentSchema
        400: BadRequest
        403: Forbidden
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    incident = services.get_incident(db.session, ref)
    data = load_json(IncidentUpdateSchema())
    user = actor()
    status = data.pop("status", None)
    resolution = data.pop("resolution", None)
    links = {name: data.pop(name) for name in ("chat_url", "call_url", "runbook_url") if name in data}
    roles = {role: data.pop(f"{role.value}_id") for role in IncidentRole if f"{role.value}_id" in data}
    data |= _placement(data)
    if data:
        services.update_incident(db.session, incident, by=user, **data)
    if links:
        services.set_links(db.session, incident, by=user, **links)
    for role, user_id in roles.items():
        services.set_role(db.session, incident, role, user_id, by=user)
    if status is not None:
        services.transition(db.session, incident, status, by=user, resolution=resolution)
    db.session.commit()
    return jsonify(IncidentSchema().dump(incident))


@bp.get("/incidents/<ref>/timeline")
@require(Role.VIEWER)
def list_timeline(ref):
    """The incident's timeline, oldest first.
    ---
    get:
      tags: [incidents]
      summary: List timeline entries
      parameters:
        - in: query
          schema: PageArgsSchema
      responses:
        200:
          description: A page of timeline entries
          content:
            application/json:
              schema: TimelinePageSchema
        404: NotFound
        422: ValidationError
    """
    incident = services.get_incident(db.session, ref)
    page, per_page = page_args()
    stmt = (sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident.id)
            .order_by(TimelineEntry.occurred_at, TimelineEntry.id))
    return jsonify(page_response(paginate(db.session, stmt, page, per_page), TimelineEntrySchema()))


@bp.post("/incidents/<ref>/timeline")
@require(Role.RESPONDER)
def add_note(ref):
    """Add a Markdown note to the timeline.
    ---
    post:
      tags: [incidents]
      summary: Add a note (responder)
      requestBody:
        required: true
        content:
          application/json:
            schema: NoteCreateSchema
      responses:
        201:
          description: The new timeline entry
          content:
            application/json:
              schema: TimelineEntrySchema
        400: BadRequest
        403: Forbidden
        404: NotFound
        422: ValidationError
    """
    incident = services.get_incident(db.session, ref)
    data = load_json(NoteCreateSchema())
    entry = services.add_note(db.session, incident, data["body"], by=actor(), occurred_at=data.get("occurred_at"))
    db.session.commit()
    location = url_for("api.incident.list_timeline", ref=incident.ref)
    return jsonify(TimelineEntrySchema().dump(entry)), 201, {"Location": location}


@bp.get("/incidents/<ref>/updates")
@require(Role.VIEWER)
def list_updates(ref):
    """The incident's status updates for stakeholders, newest first.
    ---
    get:
      tags: [incidents]
      summary: List status updates
      parameters:
        - in: query
          schema: PageArgsSchema
      responses:
        200:
          description: A page of status updates
          content:
            application/json:
              schema: StatusUpdatePageSchema
        404: NotFound
        422: ValidationError
    """
    incident = services.get_incident(db.session, ref)
    page, per_page = page_args()
    return jsonify(page_response(paginate(db.session, services.status_updates(incident.id), page, per_page),
                                 StatusUpdateSchema()))


@bp.post("/incidents/<ref>/updates")
@require(Role.RESPONDER)
def post_update(ref):
    """Post a status update: it lands on the timeline, goes to subscribers and chat, and sets the next-update timer.
    ---
    post:
      tags: [incidents]
      summary: Post a status update (responder)
      requestBody:
        required: true
        content:
          application/json:
            schema: StatusUpdateCreateSchema
      responses:
        201:
          description: The new update
          content:
            application/json:
              schema: StatusUpdateSchema
        400: BadRequest
        403: Forbidden
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    incident = services.get_incident(db.session, ref)
    data = load_json(StatusUpdateCreateSchema())
    update = services.post_status_update(db.session, incident, by=actor(), **data)
    db.session.commit()
    location = url_for("api.incident.list_updates", ref=incident.ref)
    return jsonify(StatusUpdateSchema().dump(update)), 201, {"Location": location}
