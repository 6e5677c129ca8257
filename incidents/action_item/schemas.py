"""marshmallow at the HTTP boundary of action items."""

from __future__ import annotations

from flask import Flask
from marshmallow import Schema, fields, validate

from incidents.action_item.models import ItemStatus, ItemType, Priority
from incidents.forms import not_blank
from incidents.openapi import MAX_INT, JsonInteger, add_field
from incidents.postmortem.schemas import PostmortemSchema
from incidents.singleline import SingleLine


def _values(enum_cls) -> list[str]:
    return [m.value for m in enum_cls]


class ActionItemSchema(Schema):
    """An action item as the API answers it; the tracker adds its `export` part (incidents.tracker.schemas)."""

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


def init_app(app: Flask) -> None:
    """A post-mortem's JSON lists its action items: this package adds them, as post-mortems never import it."""
    add_field(PostmortemSchema, "action_items", fields.List(fields.Nested(ActionItemSchema)))
