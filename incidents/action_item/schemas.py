"""marshmallow at the HTTP boundary of action items."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from incidents.action_item.models import ItemStatus, ItemType, Priority
from incidents.forms import not_blank
from incidents.openapi import MAX_INT, JsonInteger
from incidents.singleline import SingleLine


def _values(enum_cls) -> list[str]:
    return [m.value for m in enum_cls]


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


class ActionItemSchema(Schema):
    id = fields.Integer()
    postmortem_id = fields.Integer()
    title = fields.String()
    description = fields.String()
    owner = fields.Function(lambda a: {"id": a.owner.id, "name": a.owner.name, "email": a.owner.email}
                            if a.owner else None, allow_none=True)
    due_date = fields.Date(allow_none=True)
    type = fields.Function(lambda a: a.type.value if a.type else None, allow_none=True,
                           metadata={"type": "string", "enum": [*_values(ItemType), None],
                                     "description": "null until someone sets it (needed to publish)."})
    priority = fields.Function(lambda a: a.priority.value, metadata={"enum": _values(Priority)})
    estimate = fields.Integer(allow_none=True, metadata={"description": "Story points."})
    status = fields.Function(lambda a: a.status.value, metadata={"enum": _values(ItemStatus)})
    wont_do_reason = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    export = ExportField(ExportSchema)


class ActionItemUpdateSchema(Schema):
    title = SingleLine(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=20_000))
    owner_id = JsonInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_INT))
    due_date = fields.Date(allow_none=True)
    type = fields.String(allow_none=True, validate=validate.OneOf(_values(ItemType)))
    priority = fields.String(validate=validate.OneOf(_values(Priority)))
    estimate = JsonInteger(allow_none=True, validate=validate.Range(min=0, max=100))
    status = fields.String(validate=validate.OneOf(_values(ItemStatus)))
    wont_do_reason = fields.String(validate=validate.Length(max=5_000))


class ActionItemCreateSchema(ActionItemUpdateSchema):
    title = SingleLine(required=True, validate=validate.Length(min=1, max=200))


class ActionItemListSchema(Schema):
    items = fields.List(fields.Nested(ActionItemSchema))
    page = fields.Integer()
    pages = fields.Integer()
    total = fields.Integer()


def _one_of(enum_cls) -> validate.OneOf:
    return validate.OneOf(_values(enum_cls), error=f"One of: {', '.join(_values(enum_cls))}.")


class ActionItemFormSchema(ActionItemCreateSchema):
    """The action-item forms of a post-mortem page, which post only the inputs they show: the API's fields with
    the page's messages; a blank priority or status leaves it as it is."""

    title = SingleLine(validate=[validate.Length(max=200, error="Required, at most 200."), not_blank("Required.")])
    owner_id = JsonInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_INT, error="Unknown user."),
                           error_messages={"invalid": "Unknown user."})
    due_date = fields.Date(allow_none=True, error_messages={"invalid": "Due date must be YYYY-MM-DD."})
    type = fields.String(allow_none=True, validate=_one_of(ItemType))
    priority = fields.String(allow_none=True, validate=_one_of(Priority))
    estimate = JsonInteger(allow_none=True, validate=validate.Range(min=0, max=100, error="Out of range."),
                           error_messages={"invalid": "Not a number."})
    status = fields.String(allow_none=True, validate=_one_of(ItemStatus))
