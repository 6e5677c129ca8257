"""Shortcut outgoing webhooks (v1), the pure parts: signature check and event parsing into story transitions.

The endpoint (later) verifies the raw body first, stores it, answers 2xx, deduplicates on `ShortcutEvent.id`
and maps each `StoryChange` onto the action item that owns the story. Nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

# Shortcut sent both until November 2021; old self-hosted relays may still send only the legacy name.
SIGNATURE_HEADERS = ("Payload-Signature", "Clubhouse-Signature")
DONE, STARTED, UNSTARTED, BACKLOG = "done", "started", "unstarted", "backlog"
NOT_STARTED_TYPES = frozenset({UNSTARTED, BACKLOG})


class MalformedEvent(ValueError):
    """The payload is not a Shortcut webhook event this parser can read."""


def sign(secret: str, raw_body: bytes) -> str:
    """Hex HMAC-SHA256 of the raw body keyed with the UTF-8 secret, as Shortcut computes it."""
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, raw_body: bytes, header_value: str | None) -> bool:
    """Constant-time check of a signature header against the raw body; False without a secret or header."""
    if not secret or not header_value:
        return False
    given = header_value.strip().lower()
    if not given.isascii():
        return False
    return hmac.compare_digest(sign(secret, raw_body).encode(), given.encode())


def signature_from_headers(headers: Mapping[str, str]) -> str | None:
    """The signature from `Payload-Signature`, or the legacy `Clubhouse-Signature`."""
    for name in SIGNATURE_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class StoryChange:
    """What happened to one story in an event. None means "not changed by this event".

    completed: True when it became done (flag or a move to a done state), False when un-completed or moved
    out of done. started: True/False when the started flag or a move says so. moved_back: moved into an
    unstarted or backlog state. archived: the archived flag's new value. deleted: the story is gone.
    """

    story_id: int
    action: str
    name: str | None = None
    app_url: str | None = None
    completed: bool | None = None
    completed_at: datetime | None = None
    started: bool | None = None
    started_at: datetime | None = None
    archived: bool | None = None
    deleted: bool = False
    moved_back: bool = False
    workflow_state_id: int | None = None
    workflow_state_type: str | None = None

    @property
    def reopened(self) -> bool:
        """Completed work was undone, or the story went back to not started."""
        return self.completed is False or self.started is False or self.moved_back

    @property
    def closed(self) -> bool:
        """Archived or deleted; the caller decides whether that happened without completion."""
        return self.deleted or self.archived is True


@dataclass(frozen=True)
class ShortcutEvent:
    id: str
    changed_at: datetime
    primary_id: int | None
    member_id: str | None
    stories: tuple[StoryChange, ...]

    @property
    def bulk(self) -> bool:
        """A bulk edit: Shortcut sends no primary_id when one event touches several stories."""
        return self.primary_id is None and len(self.stories) > 1


def parse_event(payload: Any) -> ShortcutEvent:
    """Read a webhook event; stories only (comments, branches, epics... are skipped). Raises MalformedEvent."""
    if not isinstance(payload, dict):
        raise MalformedEvent("event is not a JSON object")
    event_id = payload.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise MalformedEvent("event has no id")
    changed_at = _timestamp(payload.get("changed_at"), "changed_at")
    if changed_at is None:
        raise MalformedEvent("event has no changed_at")
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise MalformedEvent("event has no actions list")
    state_types = _state_types(payload.get("references", []))
    stories = []
    for action in actions:
        if not isinstance(action, dict):
            raise MalformedEvent("an action is not an object")
        if action.get("entity_type") == "story":
            stories.append(_story_change(action, state_types, changed_at))
    return ShortcutEvent(
        id=event_id,
        changed_at=changed_at,
        primary_id=_optional(payload, "primary_id", int),
        member_id=_optional(payload, "member_id", str),
        stories=tuple(stories),
    )


def _story_change(action: dict, state_types: dict[int, str], changed_at: datetime) -> StoryChange:
    story_id = action.get("id")
    if not _is_int(story_id):
        raise MalformedEvent("a story action has no integer id")
    kind = action.get("action")
    if not isinstance(kind, str):
        raise MalformedEvent(f"story {story_id}: action is not a string")
    name = _optional(action, "name", str)
    app_url = _optional(action, "app_url", str)
    if kind == "delete":
        return StoryChange(story_id, kind, name, app_url, deleted=True)
    if kind == "create":
        state_id = _optional(action, "workflow_state_id", int)
        return _with_state(StoryChange(story_id, kind, name, app_url), None, state_id, state_types, changed_at)

    changes = action.get("changes", {})
    if not isinstance(changes, dict) or not all(isinstance(value, dict) for value in changes.values()):
        raise MalformedEvent(f"story {story_id}: changes are not objects")
    change = StoryChange(
        story_id, kind, name, app_url,
        completed=_new(changes, "completed", bool),
        completed_at=_timestamp(_new(changes, "completed_at", str), "completed_at"),
        started=_new(changes, "started", bool),
        started_at=_timestamp(_new(changes, "started_at", str), "started_at"),
        archived=_new(changes, "archived", bool),
    )
    if change.completed is True and change.completed_at is None:
        change = replace(change, completed_at=changed_at)  # not sent in observed events: the event time is it
    state = changes.get("workflow_state_id")
    if state is not None:
        change = _with_state(change, _field(state, "old", int), _field(state, "new", int), state_types, changed_at)
    return change


def _with_state(change: StoryChange, old_id: int | None, new_id: int | None, state_types: dict[int, str],
                changed_at: datetime) -> StoryChange:
    """Derive transitions from a move between workflow states, when references name the states' types."""
    if new_id is None:
        return change
    new_type, old_type = state_types.get(new_id), state_types.get(old_id) if old_id is not None else None
    updates: dict[str, Any] = {"workflow_state_id": new_id, "workflow_state_type": new_type}
    if new_type == DONE and change.completed is None:
        updates.update(completed=True, completed_at=change.completed_at or changed_at)
    elif new_type is not None and new_type != DONE and old_type == DONE and change.completed is None:
        updates["completed"] = False
    if new_type == STARTED and change.started is None:
        updates["started"] = True
    if change.action != "create" and new_type in NOT_STARTED_TYPES:
        updates["moved_back"] = True
    return replace(change, **updates)


def _state_types(references: Any) -> dict[int, str]:
    if not isinstance(references, list):
        raise MalformedEvent("references is not a list")
    types = {}
    for reference in references:
        if not isinstance(reference, dict):
            raise MalformedEvent("a reference is not an object")
        if reference.get("entity_type") == "workflow-state" and _is_int(reference.get("id")):
            state_type = reference.get("type")
            if isinstance(state_type, str):
                types[reference["id"]] = state_type.lower()
    return types


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(value: Any, kind: type, what: str) -> Any:
    if value is None:
        return None
    if (kind is int and not _is_int(value)) or (kind is not int and not isinstance(value, kind)):
        raise MalformedEvent(f"{what} is not {kind.__name__}")
    return value


def _optional(data: dict, key: str, kind: type) -> Any:
    return _check(data.get(key), kind, key)


def _field(change: dict, key: str, kind: type) -> Any:
    return _check(change.get(key), kind, key)


def _new(changes: dict, key: str, kind: type) -> Any:
    return _field(changes[key], "new", kind) if key in changes else None


def _timestamp(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{what} is not a timestamp")
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MalformedEvent(f"{what} is not an ISO 8601 timestamp: {value[:40]!r}") from None
