"""Integers from outside (URL segments, query strings, form fields) within the range of the id columns.

An id or page number beyond it cannot exist: it is "not found" (path) or a 422 naming the field (query),
decided here, never an OverflowError from the database driver (a 500)."""

from __future__ import annotations

from typing import TypeVar

import sqlalchemy as sa
from flask import request
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from incidents.errors import Invalid

T = TypeVar("T")

MAX_INT = 2**31 - 1  # integer columns (PostgreSQL `integer`); larger ids and page numbers never reach the database


def get_by_id(session: Session, model: type[T], value: object) -> T | None:
    """The row of `model` whose id `value` is (see `as_id`), or None: never a query for an id that cannot exist."""
    number = as_id(value)
    return session.get(model, number) if number else None


def get_by_key(session: Session, model: type[T], key: object, column) -> T | None:
    """The row of `model` addressed by id (an int or digits) or else by `column` (a slug, a name), or None."""
    if isinstance(key, int) or str(key).isdigit():
        return get_by_id(session, model, key)
    if "\x00" in str(key):  # no row holds a NUL (PostgreSQL text cannot even compare one): not found, not a 500
        return None
    return session.scalar(sa.select(model).where(column == str(key)))


def as_id(value: object) -> int | None:
    """`value` as a row id when it is one (an int, or digits, within the column range), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_INT else None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    number = int(text)
    return number if 0 < number <= MAX_INT else None


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: digits beyond MAX_INT are a 404 of the route they name (not a 405 of another
    route, and never an OverflowError from the database)."""

    def to_python(self, value: str) -> int:
        if len(value) > 10:  # int() refuses (ValueError) beyond ~4300 digits: decide by length first
            raise NotFound()
        number = super().to_python(value)
        if number > MAX_INT:
            raise NotFound()
        return number


def int_arg(name: str, default: int | None = None) -> int | None:
    """A positive integer from the query string of a web page: absent or not digits gives `default` (the
    pages are lenient with hand-edited URLs); digits beyond MAX_INT are a 422 naming the parameter."""
    raw = (request.args.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return default
    number = as_id(raw)
    if number is None:
        if not raw.strip("0"):
            return default
        raise Invalid(f"{name} is too large.", {name: [f"At most {MAX_INT}."]})
    return number
