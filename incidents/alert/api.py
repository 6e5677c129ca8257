"""JSON API for alerts and deliveries, mounted under /api/v1 as api.alert (read-only: alerts for viewers and up,
deliveries for responders and up, as on the web pages: they carry the senders' data)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from incidents.alert import schemas, services
from incidents.apihttp import page_response, page_window
from incidents.auth.models import Role
from incidents.auth.permissions import can, require
from incidents.extensions import db

bp = Blueprint("alert", __name__)


@bp.get("/alerts")
@require(Role.VIEWER)
def list_alerts():
    """List alerts, most recently seen first.
    ---
    get:
      summary: List alerts
      description: Alerts deduplicated by fingerprint, with their occurrence count and source link.
      tags: [alerts]
      parameters:
        - in: query
          schema: AlertQuerySchema
      responses:
        200:
          description: One page of alerts.
          content:
            application/json:
              schema: AlertListSchema
        422: ValidationError
    """
    args = schemas.AlertQuerySchema().load(request.args)
    f = services.AlertFilter(status=args.get("status"), source=args.get("source"),
                             integration=args.get("integration"), severity=args.get("severity"),
                             environment=args.get("environment"), q=args.get("q"))
    page = services.list_alerts(db.session, f, *page_window(args))
    return jsonify(page_response(page, schemas.AlertSchema()))


@bp.get("/alerts/<int:alert_id>")
@require(Role.VIEWER)
def get_alert(alert_id: int):
    """One alert with its most recent deliveries.
    ---
    get:
      summary: Get an alert
      tags: [alerts]
      parameters:
        - in: path
          name: alert_id
          required: true
          schema: {type: integer}
      responses:
        200:
          description: The alert.
          content:
            application/json:
              schema: AlertDetailSchema
        404: NotFound
    """
    alert = services.get_alert(db.session, alert_id)
    body = schemas.AlertSchema().dump(alert)
    deliveries = services.list_deliveries(db.session, alert=alert.id, per_page=50).items
    # As on the alert page: viewers see that deliveries came, responders also their headers and errors.
    shown = None if can(Role.RESPONDER) else ("id", "received_at", "event", "outcome")
    body["deliveries"] = schemas.DeliverySchema(only=shown).dump(deliveries, many=True)
    return jsonify(body)


@bp.get("/deliveries")
@require(Role.RESPONDER)
def list_deliveries():
    """List received webhook deliveries, newest first.
    ---
    get:
      summary: List deliveries
      description: Every accepted webhook POST, with its outcome (processed, ignored, rejected, failed).
      tags: [alerts]
      parameters:
        - in: query
          schema: DeliveryQuerySchema
      responses:
        200:
          description: One page of deliveries (without bodies).
          content:
            application/json:
              schema: DeliveryListSchema
        403: Forbidden
        422: ValidationError
    """
    args = schemas.DeliveryQuerySchema().load(request.args)
    number, per_page = page_window(args)
    page = services.list_deliveries(db.session, integration=args.get("integration"), outcome=args.get("outcome"),
                                    alert=args.get("alert"), page=number, per_page=per_page)
    return jsonify(page_response(page, schemas.DeliverySchema()))


@bp.get("/deliveries/<int:delivery_id>")
@require(Role.RESPONDER)
def get_delivery(delivery_id: int):
    """One delivery with its stored body (secrets redacted).
    ---
    get:
      summary: Get a delivery
      tags: [alerts]
      parameters:
        - in: path
          name: delivery_id
          required: true
          schema: {type: integer}
      responses:
        200:
          description: The delivery.
          content:
            application/json:
              schema: DeliveryDetailSchema
        403: Forbidden
        404: NotFound
    """
    return jsonify(schemas.DeliveryDetailSchema().dump(services.get_delivery(db.session, delivery_id)))
