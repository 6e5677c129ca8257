"""Input rules every post-mortem use case applies."""

from __future__ import annotations

from incidents.errors import Invalid


def reject_nul(**texts) -> None:
    """PostgreSQL cannot store NUL characters: refuse them as invalid input (422) instead of failing in SQL."""
    bad = [name for name, value in texts.items() if isinstance(value, str) and "\x00" in value]
    if bad:
        raise Invalid("Text cannot contain NUL characters.", {name: ["Contains a NUL character."] for name in bad})
