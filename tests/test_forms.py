"""incidents/forms.py: a posted form loads through a marshmallow schema; refusals are field errors by input name."""

from __future__ import annotations

from datetime import date

import pytest
from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from incidents.catalog import services as catalog
from incidents.errors import Invalid, NotFound
from incidents.forms import MESSAGE, Choice, form_errors, load_form, not_blank
from incidents.openapi import JsonInteger
from tests.factories import make_service


class Example(Schema):
    title = fields.String(required=True, validate=not_blank("A title is required."))
    tags = fields.List(fields.String(validate=validate.Length(max=3)))
    points = JsonInteger(allow_none=True)
    due = fields.Date(allow_none=True)
    note = fields.String()
    urgent = fields.Boolean()
    renamed = fields.String(data_key="other-name", allow_none=True)


def test_a_complete_form_loads_text_as_the_schema_expects():
    form = MultiDict({"title": "Disk full", "tags": " a, b ,, c", "points": "7", "due": "", "note": "",
                      "urgent": "1", "other-name": "x", "csrf_token": "ignored"})
    assert load_form(Example(), form) == {"title": "Disk full", "tags": ["a", "b", "c"], "points": 7, "due": None,
                                          "note": "", "urgent": True, "renamed": "x"}


def test_missing_inputs_are_blank_in_a_complete_form_and_absent_in_a_partial_one():
    assert load_form(Example(), MultiDict({"title": "t"})) == {
        "title": "t", "tags": [], "points": None, "due": None, "note": "", "urgent": False, "renamed": None}
    assert load_form(Example(), MultiDict({"title": "t", "due": "2031-05-01"}), complete=False) == {
        "title": "t", "due": date(2031, 5, 1)}


def test_refusals_carry_every_field_by_input_name():
    form = MultiDict({"title": "  ", "tags": "ok, toolong", "points": "many", "due": "soon", "other-name": "y"})
    with pytest.raises(Invalid) as refused:
        load_form(Example(), form)
    assert refused.value.message == MESSAGE
    assert refused.value.fields == {"title": ["A title is required."], "tags": ["Longer than maximum length 3."],
                                    "points": ["Not a valid integer."], "due": ["Not a valid date."]}
    with pytest.raises(Invalid) as huge:  # more digits than int() converts stay text: refused, not a 500
        load_form(Example(), MultiDict({"title": "t", "points": "9" * 5000}), complete=False)
    assert set(huge.value.fields) == {"points"}


def test_choice_is_an_id_that_must_still_exist(app, session):
    service = make_service()

    class Picked(Schema):
        service_id = Choice(catalog.get_service)

    assert load_form(Picked(), MultiDict({"service_id": str(service.id)})) == {"service_id": service.id}
    assert load_form(Picked(), MultiDict({"service_id": ""})) == {"service_id": None}
    for raw, message in (("abc", "Choose from the list."), ("424242", "No service 424242.")):
        with pytest.raises(Invalid) as refused:
            load_form(Picked(), MultiDict({"service_id": raw}))
        assert refused.value.fields == {"service_id": [message]}


def test_form_errors_put_fields_beside_inputs_and_the_message_on_top():
    marked = Invalid("Fix it.", {"title": ["Required."]})
    assert form_errors(marked) == {"title": ["Required."]}
    assert form_errors(marked, headline=True) == {"title": ["Required."], "_": ["Fix it."]}
    assert form_errors(NotFound("No such thing.")) == {"_": ["No such thing."]}
