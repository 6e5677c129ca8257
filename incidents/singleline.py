"""The rules on text coming in, each implemented once: single-line fields, and no NUL character anywhere.

Single-line text (titles, names, slugs, tags): no control characters, checked once wherever it comes in.

A CR or LF in a title would reach e-mail headers, where the mail library refuses it and the notification
could never be built. So single-line fields refuse every control character (Unicode Cc, which includes CR,
LF and TAB, plus the line and paragraph separators) with a 422 naming the field, and text that must be
accepted anyway (senders' alert titles, rows stored without this check) is folded with `one_line`.

NUL: PostgreSQL text cannot hold it (nor compare with it, in a query), so any text with one is bad input, a 422
naming the field rather than a 500 from SQL; database.py applies the same check to every column on flush."""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields

from incidents.errors import Invalid

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MESSAGE = "Must be a single line without control characters (line breaks, tabs)."
NUL_MESSAGE = "Contains a NUL character."


def has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_single_line(**values: str | None) -> None:
    """Raise Invalid naming every field whose value holds a control character (None and "" pass)."""
    bad = {name: [MESSAGE] for name, value in values.items() if isinstance(value, str) and has_control(value)}
    if bad:
        raise Invalid(f"{', '.join(bad).capitalize()} must be a single line without control characters.", bad)


def one_line(value: str) -> str:
    """`value` with every run of control characters turned into one space (for text we must accept)."""
    return _CONTROL.sub(" ", value).strip()


class SingleLine(fields.String):
    """A marshmallow string that refuses control characters (422 naming the field)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if has_control(text):
            raise ValidationError(MESSAGE)
        return text


def has_nul(value) -> bool:
    return isinstance(value, str) and "\x00" in value


def reject_nul(**texts) -> None:
    """Raise Invalid naming every field whose text holds a NUL character (non-strings pass)."""
    bad = [name for name, value in texts.items() if has_nul(value)]
    if bad:
        names = ", ".join(name.replace("_", " ") for name in bad)
        raise Invalid(f"The {names} must not contain NUL characters.", {name: [NUL_MESSAGE] for name in bad})
