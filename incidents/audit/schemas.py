"""The audit log over the API: GET /api/v1/audit's filters and rows (documented in OpenAPI)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate

from incidents.bounds import MAX_INT
from incidents.openapi import PageArgsSchema, PageSchema
from incidents.singleline import SingleLine

ACTOR_KINDS = ("user", "token", "integration", "system", "anonymous")


class AuditArgsSchema(PageArgsSchema):
    actor_kind = fields.String(validate=validate.OneOf(ACTOR_KINDS), metadata={"description": "Who acted."})
    actor_id = fields.Integer(validate=validate.Range(1, MAX_INT), metadata={"description": "User, token or "
                                                                                          "integration id."})
    actor = SingleLine(validate=validate.Length(max=200), metadata={"description": "Text in the actor's label."})
    object_type = SingleLine(validate=validate.Length(max=40),
                             metadata={"description": "incident, postmortem, action_item, user, api_token, ..."})
    object_id = fields.Integer(validate=validate.Range(1, MAX_INT))
    kind = SingleLine(validate=validate.Length(max=60),
                      metadata={"description": "An event name (auth.user_updated) or its domain (auth)."})
    since = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "From this time on (ISO 8601)."})
    until = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "Before this time (ISO 8601)."})


class AuditActorSchema(Schema):
    kind = fields.String(required=True)
    id = fields.Integer(allow_none=True, required=True)
    label = fields.String(required=True)


class AuditObjectSchema(Schema):
    type = fields.String(required=True)
    id = fields.Integer(allow_none=True, required=True)
    label = fields.String(required=True)


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    at = fields.AwareDateTime(required=True)
    kind = fields.String(required=True, metadata={"description": "The domain event, e.g. incident.updated."})
    actor = fields.Method("_actor", required=True, metadata={"type": "object"})
    object = fields.Method("_object", required=True, metadata={"type": "object"})
    changes = fields.Dict(allow_none=True, required=True,
                          metadata={"description": "{field: [before, after]}; [null, value] for what was set."})
    address = fields.String(allow_none=True, required=True)
    request_id = fields.String(allow_none=True, required=True)
    prev_hash = fields.String(required=True)
    hash = fields.String(required=True)

    def _actor(self, row) -> dict:
        return {"kind": row.actor_kind, "id": row.actor_id, "label": row.actor_label}

    def _object(self, row) -> dict:
        return {"type": row.object_type, "id": row.object_id, "label": row.object_label}


class AuditPageSchema(PageSchema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
