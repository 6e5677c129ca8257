"""HTML forms: the field errors a refused form shows beside its inputs."""

from __future__ import annotations

from incidents.errors import DomainError


def form_errors(e: DomainError, *, headline: bool = False) -> dict[str, list[str]]:
    """Each field's messages beside its input, under the field's name; the message without a field goes under
    '_', shown on top. `headline`: the message goes on top even when fields are marked (the post-mortem pages,
    whose sections are long: the top says what went wrong before the reader finds the field)."""
    if headline:
        return {**e.fields, "_": [e.message]}
    return e.fields if e.fields else {"_": [e.message]}
