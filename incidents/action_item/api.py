"""Action item JSON routes, mounted under /api/v1 as api.action_item."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from incidents.action_item import schemas as s
from incidents.action_item import services
from incidents.apihttp import load_json, page_args
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.extensions import db
from incidents.postmortem import services as pm_services

bp = Blueprint("action_item", __name__)


@bp.post("/postmortems/<int:postmortem_id>/action-items")
@require(Role.RESPONDER)
def create_action_item(postmortem_id: int):
    """Add an action item to a post-mortem (owner, due date and type are needed before publishing).
    ---
    post:
      tags: [action-items]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      requestBody: {required: true, content: {application/json: {schema: ActionItemCreateSchema}}}
      responses:
        201: {description: Created, content: {application/json: {schema: ActionItemSchema}}}
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    data = load_json(s.ActionItemCreateSchema())
    pm = pm_services.get_postmortem(db.session, postmortem_id)
    item = services.create_action_item(db.session, pm, by=actor(), **data)
    db.session.commit()
    return jsonify(s.ActionItemSchema().dump(item)), 201, {"Location": f"/api/v1/action-items/{item.id}"}


@bp.get("/action-items")
@require(Role.VIEWER)
def list_action_items():
    """Action items across post-mortems, soonest due first.
    ---
    get:
      tags: [action-items]
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [open, in_progress, done, wont_do]}}
        - {in: query, name: owner, schema: {type: string}, description: Owner's user id or e-mail}
        - {in: query, name: team, schema: {type: string}, description: Team slug or id of the incident}
        - {in: query, name: page, schema: {type: integer, minimum: 1, maximum: 2147483647}}
        - {in: query, name: per_page, schema: {type: integer, minimum: 1, maximum: 2147483647}}
      responses:
        200: {description: One page, content: {application/json: {schema: ActionItemListSchema}}}
        404: NotFound
        422: ValidationError
    """
    page, per_page = page_args()
    f = services.ActionItemFilter(status=request.args.getlist("status") or None,
                                  owner=request.args.get("owner") or None, team=request.args.get("team") or None)
    return jsonify(s.ActionItemListSchema().dump(services.list_action_items(db.session, f, page, per_page)))


@bp.get("/action-items/<int:item_id>")
@require(Role.VIEWER)
def get_action_item(item_id: int):
    """One action item.
    ---
    get:
      tags: [action-items]
      parameters: [{in: path, name: item_id, required: true, schema: {type: integer}}]
      responses:
        200: {description: The item, content: {application/json: {schema: ActionItemSchema}}}
        404: NotFound
    """
    return jsonify(s.ActionItemSchema().dump(services.get_action_item(db.session, item_id)))


@bp.patch("/action-items/<int:item_id>")
@require(Role.RESPONDER)
def update_action_item(item_id: int):
    """Change an action item; once its post-mortem is published only status and won't-do reason change.
    ---
    patch:
      tags: [action-items]
      parameters: [{in: path, name: item_id, required: true, schema: {type: integer}}]
      requestBody: {required: true, content: {application/json: {schema: ActionItemUpdateSchema}}}
      responses:
        200: {description: Updated, content: {application/json: {schema: ActionItemSchema}}}
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    data = load_json(s.ActionItemUpdateSchema())
    item = services.update_action_item(db.session, services.get_action_item(db.session, item_id), **data)
    db.session.commit()
    return jsonify(s.ActionItemSchema().dump(item))
