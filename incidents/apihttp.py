"""The HTTP helpers every domain's JSON routes share: body and query parsing, paging, lookups by slug or id.

Imports no domain, so any incidents/<domain>/api.py can use it without importing the API's parent blueprint."""

from __future__ import annotations

import json

from flask import current_app, request
from marshmallow import Schema, fields

from incidents import jsonbody
from incidents.bounds import MAX_INT
from incidents.database import Page
from incidents.errors import DomainError, Invalid, NotFound
from incidents.extensions import db
from incidents.openapi import PageArgsSchema


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(schema: Schema, *, optional: bool = False) -> dict:
    """The request body, parsed as a JSON object and loaded by `schema` (400 when not JSON, 422 when invalid);
    `optional`: an empty body loads as {}."""
    raw = request.get_data(cache=True)
    if optional and not raw.strip():
        return schema.load({})
    try:
        data = jsonbody.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise DomainError("The request body must be UTF-8 encoded JSON.") from None
    except jsonbody.TooDeep as e:
        raise DomainError(f"The request body is not accepted: {e}") from None
    except ValueError as e:
        detail = f"{e.msg} at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
        raise DomainError(f"The request body is not valid JSON ({detail}); "
                          "send a JSON object with Content-Type: application/json.") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise DomainError(f"The request body must be a JSON object, not {kind}.")
    return schema.load(data)


def query_args(schema: Schema) -> dict:
    """Query parameters loaded by `schema`; List fields take repeated and comma-separated values alike."""
    data: dict = {}
    for name, field in schema.fields.items():
        key = field.data_key or name
        if key not in request.args:
            continue
        if isinstance(field, fields.List):
            data[key] = [v.strip() for raw in request.args.getlist(key) for v in raw.split(",") if v.strip()]
        else:
            data[key] = request.args[key]
    return schema.load(data)


def page_window(args: dict) -> tuple[int, int]:
    """(page, per_page) from loaded PageArgsSchema args, per_page defaulting to PER_PAGE and capped at MAX_PER_PAGE."""
    cfg = current_app.config
    per_page = min(args.get("per_page") or cfg["PER_PAGE"], cfg["MAX_PER_PAGE"])
    return args.get("page") or 1, per_page


def page_args() -> tuple[int, int]:
    """(page, per_page) of a list whose only query parameters are `page` and `per_page`."""
    return page_window(query_args(PageArgsSchema()))


def page_of(items: list, page: int, per_page: int) -> Page:
    """One page of an in-memory list (short catalogues), shaped like database.paginate's."""
    return Page(items=items[(page - 1) * per_page: page * per_page], page=page, per_page=per_page,
                total=len(items))


def page_response(page: Page, schema: Schema) -> dict:
    """The one list shape: {"items", "page", "pages", "total", "at_least"}, and "next" (the cursor of the next
    page, or null) for the lists that go on by cursor."""
    body = {"items": schema.dump(page.items, many=True), "page": page.page, "pages": page.pages,
            "total": page.total, "at_least": page.at_least}
    if page.keyset:
        body["next"] = page.next
    return body


def checked_key(key: str, what: str) -> str:
    """A slug-or-id from the URL; numeric ids beyond the column range are simply not found (never a 500)."""
    if key.isascii() and key.isdigit() and int(key) > MAX_INT:
        raise NotFound(f"No {what} {key!r}.")
    return key


def lookup_field(find, key, field: str):
    """`find(session, key)` for a reference given in a body or query field: unknown is a 422 on that field."""
    try:
        return find(db.session, checked_key(str(key), field))
    except NotFound as e:
        raise Invalid(e.message, {field: [e.message]}) from None
