"""HTML forms, validated by the API's marshmallow schemas: `load_form` turns a posted form into the schema's
input and its ValidationError into the field errors the page shows beside each input (`form_errors`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields

from incidents.errors import DomainError, Invalid, NotFound
from incidents.extensions import db

MESSAGE = "Please correct the marked fields."
_INT = re.compile(r"-?\d{1,30}")


def form_errors(e: DomainError, *, headline: bool = False) -> dict[str, list[str]]:
    """Each field's messages beside its input, under the field's name; the message without a field goes under
    '_', shown on top. `headline`: the message goes on top even when fields are marked (the post-mortem pages,
    whose sections are long: the top says what went wrong before the reader finds the field)."""
    if headline:
        return {**e.fields, "_": [e.message]}
    return e.fields if e.fields else {"_": [e.message]}


def load_form(schema: Schema, form: Mapping[str, Any], *, complete: bool = True) -> dict:
    """`form` (request.form) loaded by `schema`, which names the inputs (data_key or field name).

    A form sends only text: a List input is comma-separated, an Integer input its digits, a blank input of a
    field that allows null is null, and a Boolean is a checkbox (absent: false). `complete`: the page posts
    every input, so a missing one counts as blank (a full edit form); else only posted inputs load (partial
    updates). Invalid input raises Invalid with every field's messages, keyed by input name."""
    data: dict[str, Any] = {}
    for name, field in schema.load_fields.items():
        key = field.data_key or name
        if isinstance(field, fields.Boolean):
            if key in form or complete:
                data[key] = bool(form.get(key))
            continue
        if key not in form and not complete:
            continue
        raw = form.get(key, "")
        if isinstance(field, fields.List):
            data[key] = [part.strip() for part in raw.split(",") if part.strip()]
        elif raw == "" and field.allow_none:
            data[key] = None
        elif isinstance(field, fields.Integer) and _INT.fullmatch(raw.strip()):
            data[key] = int(raw)
        else:
            data[key] = raw
    try:
        return schema.load(data)
    except ValidationError as e:
        raise Invalid(MESSAGE, field_messages(e.messages)) from None


def field_messages(messages) -> dict[str, list[str]]:
    """marshmallow's error messages as {input name: [messages]}: a list item's errors go to its list's input."""
    if not isinstance(messages, dict):
        return {"_": _flat(messages)}
    return {str(key): _flat(value) for key, value in messages.items()}


def _flat(value) -> list[str]:
    if isinstance(value, dict):
        return [m for v in value.values() for m in _flat(v)]
    if isinstance(value, list | tuple):
        return [m for v in value for m in _flat(v)]
    return [str(value)]


def not_blank(message: str) -> Callable[[str], None]:
    """A validator refusing text that is only spaces (Length counts them), with the page's message."""
    def check(value: str) -> None:
        if not value.strip():
            raise ValidationError(message)
    return check


class Choice(fields.Integer):
    """The id of a row picked from a <select>, which `find(session, id)` must still find (it raises NotFound:
    its message goes beside this input). Blank means none."""

    default_error_messages = {"invalid": "Choose from the list."}

    def __init__(self, find: Callable, **kwargs):
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)
        self.find = find

    def _deserialize(self, value, attr, data, **kwargs):
        key = super()._deserialize(value, attr, data, **kwargs)
        try:
            self.find(db.session, key)
        except NotFound as e:
            raise ValidationError(e.message) from None
        return key
