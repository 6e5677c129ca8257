"""The tracker's part of an action item's JSON: its Shortcut card, as `export`."""

from __future__ import annotations

from flask import Flask
from marshmallow import Schema, fields

from incidents.action_item.schemas import ActionItemSchema
from incidents.openapi import add_field


class ExportSchema(Schema):
    """The item's Shortcut card: the outbox status until sent, then the card as last synced."""

    status = fields.Function(lambda e: e.status.value,
                             metadata={"enum": ["not_exported", "pending", "sent", "failed", "abandoned"]})
    story_id = fields.Integer(allow_none=True)
    story_url = fields.Function(lambda e: e.story_url or None, allow_none=True, metadata={"type": "string"})
    attempts = fields.Integer()
    last_error = fields.Function(lambda e: e.last_error or None, allow_none=True,
                                 metadata={"type": "string"})
    next_attempt_at = fields.DateTime(allow_none=True)
    card_state = fields.Function(lambda e: e.card_state or None, allow_none=True, metadata={
        "type": "string",
        "description": "unstarted, started, done, archived or deleted, as last seen by webhook or reconcile"})
    card_closed_without_completion = fields.Boolean(attribute="card_closed")
    completed_at = fields.DateTime(allow_none=True)


NOT_EXPORTED = {"status": "not_exported", "story_id": None, "story_url": None, "attempts": 0, "last_error": None,
                "next_attempt_at": None, "card_state": None, "card_closed_without_completion": False,
                "completed_at": None}


class ExportField(fields.Nested):
    """An item never exported still carries the object, with status not_exported."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return dict(NOT_EXPORTED)
        return super()._serialize(value, attr, obj, **kwargs)


def init_app(app: Flask) -> None:
    """Every action item's JSON (and the OpenAPI `ActionItem`) carries `export`; action items never import this."""
    add_field(ActionItemSchema, "export", ExportField(ExportSchema))
