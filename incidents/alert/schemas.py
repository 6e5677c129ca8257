"""marshmallow at the HTTP boundary: alert and delivery representations and list query parameters."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from incidents.alert.models import AlertStatus, Outcome, Source
from incidents.bounds import MAX_INT
from incidents.openapi import PageSchema


class AlertSchema(Schema):
    id = fields.Int(required=True)
    integration_id = fields.Int(required=True)
    source = fields.Str(required=True, metadata={"enum": [s.value for s in Source]})
    fingerprint = fields.Str(required=True, metadata={"description": "OpsGenie alias (or alertId), Rollbar item id."})
    external_id = fields.Str(allow_none=True, metadata={"description": "OpsGenie alertId."})
    title = fields.Str(required=True)
    description = fields.Str()
    severity = fields.Str(allow_none=True, metadata={"description": "P1..P5 (OpsGenie) or debug..critical (Rollbar)."})
    status = fields.Str(required=True, metadata={"enum": [s.value for s in AlertStatus]})
    environment = fields.Str(allow_none=True)
    link = fields.Str(allow_none=True, metadata={"description": "The alert in OpsGenie or Rollbar."})
    first_seen_at = fields.AwareDateTime(required=True)
    last_seen_at = fields.AwareDateTime(required=True)
    occurrence_count = fields.Int(required=True)
    event_count = fields.Int(metadata={"description": "Deliveries applied to this alert."})
    last_event = fields.Str()
    incident_id = fields.Int(allow_none=True)
    incident_ref = fields.Function(lambda a: f"INC-{a.incident_id}" if a.incident_id else None, allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)


class DeliverySchema(Schema):
    id = fields.Int(required=True)
    integration_id = fields.Int(required=True)
    source = fields.Str(required=True, metadata={"enum": [s.value for s in Source]})
    received_at = fields.AwareDateTime(required=True)
    event = fields.Str(metadata={"description": "The sender's action or event name."})
    outcome = fields.Str(required=True, metadata={"enum": [o.value for o in Outcome]})
    error = fields.Str(metadata={"description": "Why it was rejected, ignored or failed."})
    alert_id = fields.Int(allow_none=True)
    headers = fields.Dict(keys=fields.Str(), values=fields.Str())
    replayed_at = fields.AwareDateTime(allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    body = fields.Str(metadata={"description": "The body as received, secrets redacted."})


class AlertDetailSchema(AlertSchema):
    deliveries = fields.List(fields.Nested(DeliverySchema), metadata={"description": "The 50 most recent."})


class AlertListSchema(PageSchema):
    items = fields.List(fields.Nested(AlertSchema), required=True)


class DeliveryListSchema(PageSchema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)


class _PageQuerySchema(Schema):
    page = fields.Int(load_default=1, validate=validate.Range(min=1, max=MAX_INT))
    per_page = fields.Int(load_default=None, validate=validate.Range(min=1, max=MAX_INT))


def _id(**kwargs) -> fields.Int:
    return fields.Int(validate=validate.Range(min=1, max=MAX_INT), **kwargs)


class AlertQuerySchema(_PageQuerySchema):
    status = fields.Str(validate=validate.OneOf(["open", *[s.value for s in AlertStatus]]),
                        metadata={"description": "open = open or acknowledged."})
    source = fields.Str(validate=validate.OneOf([s.value for s in Source]))
    integration = _id()
    severity = fields.Str()
    environment = fields.Str()
    q = fields.Str(metadata={"description": "Words in the title, or an exact fingerprint."})


class DeliveryQuerySchema(_PageQuerySchema):
    integration = _id()
    outcome = fields.Str(validate=validate.OneOf([o.value for o in Outcome]))
    alert = _id()
