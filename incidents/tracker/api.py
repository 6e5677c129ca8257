"""Shortcut export routes, mounted under /api/v1 as api.tracker (202: the export is recorded; a job sends it)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from incidents.action_item import schemas as item_schemas
from incidents.action_item import services as items
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.extensions import db
from incidents.postmortem import services as pm_services
from incidents.tracker.jobs import queue_export, queue_postmortem_export

bp = Blueprint("tracker", __name__)


@bp.post("/action-items/<int:item_id>/export")
@require(Role.RESPONDER)
def export_action_item(item_id: int):
    """Send an action item to Shortcut: records the export and queues it; one item never gets two cards.
    ---
    post:
      tags: [action-items]
      parameters: [{in: path, name: item_id, required: true, schema: {type: integer}}]
      responses:
        202: {description: Export requested (or already sent), content: {application/json: {schema: ActionItemSchema}}}
        404: NotFound
        409: Conflict
    """
    item = items.get_action_item(db.session, item_id)
    queue_export(db.session, item, current_app.config, by=actor())
    db.session.commit()
    item = items.get_action_item(db.session, item_id)
    return jsonify(item_schemas.ActionItemSchema().dump(item)), 202


@bp.post("/postmortems/<int:postmortem_id>/export")
@require(Role.RESPONDER)
def export_postmortem_items(postmortem_id: int):
    """Send every action item of a post-mortem (but won't-do ones) to Shortcut.
    ---
    post:
      tags: [action-items]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      responses:
        202: {description: Exports requested, content: {application/json: {schema: ActionItemListSchema}}}
        404: NotFound
        409: Conflict
    """
    pm = pm_services.get_postmortem(db.session, postmortem_id)
    item_ids = [export.action_item_id for export in
                queue_postmortem_export(db.session, pm, current_app.config, by=actor())]
    db.session.commit()
    exported = [items.get_action_item(db.session, item_id) for item_id in item_ids]
    return jsonify({"items": item_schemas.ActionItemSchema(many=True).dump(exported), "page": 1, "pages": 1,
                    "total": len(exported)}), 202
