"""Shortcut use cases: request exports (the outbox), build cards, record outcomes, apply story changes.

Services flush, never commit; the views, the API and the jobs in tracker/jobs.py own the transactions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item import services as items
from incidents.action_item.models import ActionItem, ItemStatus
from incidents.auth.models import User
from incidents.bounds import get_by_id
from incidents.catalog.models import Team
from incidents.database import utcnow
from incidents.errors import Conflict, Invalid, NotFound
from incidents.postmortem.models import Postmortem, SectionKind
from incidents.tracker.models import (
    DeliveryOutcome,
    ExportStatus,
    ShortcutDelivery,
    ShortcutExport,
    ShortcutSettings,
)
from incidents.tracker.webhook import STARTED, ShortcutEvent, StoryChange
from incidents.tracker.webhook import _timestamp as parse_timestamp
from incidents.urls import public_base_url

DESCRIPTION_LIMIT = 100_000  # CreateStoryParams.description maxLength
LABEL_LIMIT = 128
STORY_TYPES = ("feature", "chore", "bug")


def configured(config: Mapping[str, Any]) -> bool:
    return bool(config.get("SHORTCUT_API_TOKEN"))


def external_id(item: ActionItem | int, config: Mapping[str, Any]) -> str:
    """The card's stable key: the same action item always maps to the same external_id."""
    item_id = item if isinstance(item, int) else item.id
    return f"{config.get('SHORTCUT_EXTERNAL_ID_PREFIX') or 'incidents'}:action-item:{item_id}"


# --- settings ------------------------------------------------------------------------------------------------


def settings_for(session: Session, team_id: int | None) -> ShortcutSettings | None:
    cond = ShortcutSettings.team_id.is_(None) if team_id is None else ShortcutSettings.team_id == team_id
    return session.scalar(sa.select(ShortcutSettings).where(cond))


def all_settings(session: Session) -> dict[int | None, ShortcutSettings]:
    return {s.team_id: s for s in session.scalars(sa.select(ShortcutSettings))}


def save_settings(session: Session, team_id: int | None, *, workflow_state_id: int | None,
                  workflow_state_name: str = "", auto_export: bool = False,
                  by: User | None = None) -> ShortcutSettings:
    """Set a team's card settings (team_id None: the default of teams without their own)."""
    if team_id is not None and session.get(Team, team_id) is None:
        raise Invalid(f"No team {team_id}.", {"team_id": ["Unknown team."]})
    row = settings_for(session, team_id)
    if row is None:
        row = ShortcutSettings(team_id=team_id)
        session.add(row)
    before = _settings(row) if row.id is not None else {}
    row.workflow_state_id = workflow_state_id
    row.workflow_state_name = (workflow_state_name or "")[:300]
    row.auto_export = bool(auto_export)
    row.updated_by_id = by.id if by else None
    row.updated_at = utcnow()
    session.flush()
    if changes := events.diff(before, _settings(row)):
        events.emit(session, "tracker.settings_changed", team_id=team_id, changes=changes)
    return row


def _settings(row: ShortcutSettings) -> dict:
    return {"workflow_state_id": row.workflow_state_id, "workflow_state_name": row.workflow_state_name,
            "auto_export": bool(row.auto_export)}


def target_state_id(session: Session, team_id: int | None, config: Mapping[str, Any]) -> int | None:
    """The team's workflow state, else the default row's, else INCIDENTS_SHORTCUT_WORKFLOW_STATE_ID."""
    for key in ((team_id, None) if team_id is not None else (None,)):
        row = settings_for(session, key)
        if row is not None and row.workflow_state_id:
            return row.workflow_state_id
    value = config.get("SHORTCUT_WORKFLOW_STATE_ID")
    return int(value) if value not in (None, "") else None


def auto_export_enabled(session: Session, team_id: int | None) -> bool:
    row = settings_for(session, team_id) if team_id is not None else None
    if row is None:
        row = settings_for(session, None)
    return bool(row and row.auto_export)


# --- the outbox ----------------------------------------------------------------------------------------------


def request_export(session: Session, item: ActionItem, config: Mapping[str, Any], *,
                   by: User | None = None) -> tuple[ShortcutExport, bool]:
    """Record (or re-arm) the item's export; True when the job must be queued after the commit.

    A sent export stays sent (one item, one card); a failed or abandoned one goes back to pending."""
    if not configured(config):
        raise Conflict("Shortcut is not configured: set INCIDENTS_SHORTCUT_API_TOKEN.")
    export = item.export
    now = utcnow()
    if export is None:
        export = ShortcutExport(action_item=item, status=ExportStatus.PENDING, attempts=0, next_attempt_at=now,
                                requested_by_id=by.id if by else None, requested_at=now, last_error="",
                                story_url="", card_state="", card_closed=False)
        session.add(export)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:  # a simultaneous request won: use its row
            session.expire(item, ["export"])
            export = item.export
            if export is None:  # pragma: no cover - the winner's row is committed before our flush fails
                raise
            return export, export.status == ExportStatus.PENDING
        return export, True
    if export.status == ExportStatus.SENT:
        return export, False
    if export.status in (ExportStatus.FAILED, ExportStatus.ABANDONED):
        export.status = ExportStatus.PENDING
        export.requested_by_id = by.id if by else export.requested_by_id
        export.requested_at = now
    export.next_attempt_at = now  # pending: try again now (a running job keeps its claim)
    session.flush()
    return export, True


def exportable_items(pm: Postmortem) -> list[ActionItem]:
    """A post-mortem's items worth a card: everything but won't-do."""
    return [item for item in pm.action_items if item.status != ItemStatus.WONT_DO]


def give_up(session: Session, export: ShortcutExport, *, by: User | None = None) -> ShortcutExport:
    """An admin stops the retries of a pending or failed export; a sent one cannot be undone here."""
    if export.status == ExportStatus.SENT:
        raise Conflict("This action item already has its card.")
    export.status = ExportStatus.ABANDONED
    export.next_attempt_at = None
    who = by.name if by else "an admin"
    export.last_error = (f"Given up by {who}. " + (export.last_error or "")).strip()[:2000]
    session.flush()
    return export


def get_export(session: Session, export_id: int | str) -> ShortcutExport:
    export = get_by_id(session, ShortcutExport, export_id)
    if export is None:
        raise NotFound(f"No Shortcut export {export_id}.")
    return export


def unsent_exports(session: Session, limit: int = 100) -> list[ShortcutExport]:
    """Pending and failed exports, for the settings page (retry or give up)."""
    return list(session.scalars(
        sa.select(ShortcutExport).where(ShortcutExport.status.in_([ExportStatus.PENDING, ExportStatus.FAILED]))
        .order_by(ShortcutExport.requested_at).limit(limit)))


def claim(session: Session, export_id: int, lease: float, now: datetime | None = None) -> ShortcutExport | None:
    """Take a due pending export for one run (compare-and-set), or None: sent, not due, or held by another run."""
    now = now or utcnow()
    taken = session.execute(
        sa.update(ShortcutExport)
        .where(ShortcutExport.id == export_id, ShortcutExport.status == ExportStatus.PENDING,
               sa.or_(ShortcutExport.next_attempt_at.is_(None), ShortcutExport.next_attempt_at <= now),
               sa.or_(ShortcutExport.claimed_until.is_(None), ShortcutExport.claimed_until <= now))
        .values(claimed_until=now + timedelta(seconds=lease), attempts=ShortcutExport.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if taken != 1:
        return None
    return session.get(ShortcutExport, export_id, populate_existing=True)


def due_export_ids(session: Session, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending exports whose retry time has come and that no run holds: what the sweep re-queues."""
    now = now or utcnow()
    return list(session.scalars(
        sa.select(ShortcutExport.id)
        .where(ShortcutExport.status == ExportStatus.PENDING,
               sa.or_(ShortcutExport.next_attempt_at.is_(None), ShortcutExport.next_attempt_at <= now),
               sa.or_(ShortcutExport.claimed_until.is_(None), ShortcutExport.claimed_until <= now))
        .order_by(ShortcutExport.next_attempt_at).limit(limit)))


def record_sent(session: Session, export: ShortcutExport, story: dict) -> None:
    now = utcnow()
    export.status = ExportStatus.SENT
    export.story_id = int(story["id"])
    export.story_url = str(story.get("app_url") or "")[:500]
    export.card_state = _state_of(story)
    export.last_error = ""
    export.next_attempt_at = None
    export.claimed_until = None
    export.sent_at = now
    export.synced_at = now
    session.flush()


def record_failure(session: Session, export: ShortcutExport, error: str, *, permanent: bool = False,
                   retry_at: datetime | None = None, config: Mapping[str, Any] | None = None) -> None:
    """Keep the error; a permanent refusal waits for a person, anything else is retried with backoff."""
    config = config or {}
    now = utcnow()
    export.last_error = error[:2000]
    export.claimed_until = None
    if permanent:
        export.status = ExportStatus.FAILED
        export.next_attempt_at = None
    else:
        base = float(config["SHORTCUT_RETRY_BASE"])
        cap = float(config["SHORTCUT_RETRY_CAP"])
        backoff = now + timedelta(seconds=min(cap, base * 2 ** max(export.attempts - 1, 0)))
        export.next_attempt_at = max(backoff, retry_at) if retry_at else backoff
    session.flush()


# --- the card ------------------------------------------------------------------------------------------------


def story_type(item: ActionItem, config: Mapping[str, Any]) -> str:
    mapping = config.get("SHORTCUT_STORY_TYPES") or {}
    if isinstance(mapping, str):
        mapping = json.loads(mapping)
    default = config.get("SHORTCUT_DEFAULT_STORY_TYPE") or "chore"
    chosen = mapping.get(item.type.value, default) if item.type else default
    return chosen if chosen in STORY_TYPES else "chore"


def links(item: ActionItem, config: Mapping[str, Any]) -> dict[str, str]:
    base = public_base_url(config)
    pm = item.postmortem
    return {"postmortem": f"{base}/postmortems/{pm.id}", "incident": f"{base}/incidents/{pm.incident.ref}",
            "item": f"{base}/postmortems/{pm.id}#action-items"}


def _summary(pm: Postmortem) -> str:
    section = pm.section("summary") or next(
        (s for s in pm.sections if s.kind == SectionKind.MARKDOWN and s.body.strip()), None)
    return section.body.strip() if section else ""


def _deadline(due: date) -> str:
    # Midday UTC keeps the calendar day in every time zone Shortcut may display it in.
    return f"{due.isoformat()}T12:00:00Z"


def build_card(item: ActionItem, config: Mapping[str, Any], *, workflow_state_id: int,
               owner_member_id: str | None = None) -> dict:
    """CreateStoryParams for an action item (only keys the spec allows; it forbids unknown ones)."""
    pm = item.postmortem
    incident = pm.incident
    url = links(item, config)
    service = incident.service
    facts = [f"- **Incident:** [{incident.ref}]({url['incident']}) {incident.title} ({incident.severity.value})"]
    if service is not None:
        facts.append(f"- **Service:** {service.name}")
    if incident.team is not None:
        facts.append(f"- **Team:** {incident.team.name}")
    facts.append(f"- **Post-mortem:** [{pm.title}]({url['postmortem']})")
    kind = item.type.value if item.type else "unset"
    facts.append(f"- **Type:** {kind} · **Priority:** {item.priority.value}")
    if item.owner is not None:
        facts.append(f"- **Owner:** {item.owner.name} ({item.owner.email})")
    parts = [f"Action item from the blameless post-mortem of **{incident.ref}**.", "\n".join(facts)]
    if item.description.strip():
        parts.append("## What to do\n\n" + item.description.strip())
    summary = _summary(pm)
    if summary:
        parts.append("## Post-mortem summary\n\n" + summary)
    parts.append(f"Status flows back to [the action item]({url['item']}) when this story is started or done.")
    description = "\n\n".join(parts)
    if len(description) > DESCRIPTION_LIMIT:
        description = description[:DESCRIPTION_LIMIT - 40] + "\n\n(truncated; see the post-mortem)"

    labels = ["postmortem", "tech-debt", incident.ref]
    if service is not None:
        labels.append(service.slug)
    params: dict[str, Any] = {
        "name": item.title[:512],
        "description": description,
        "story_type": story_type(item, config),
        "labels": [{"name": name[:LABEL_LIMIT]} for name in dict.fromkeys(labels)],
        "workflow_state_id": int(workflow_state_id),
        "external_id": external_id(item, config),
        "external_links": [url["postmortem"]],
    }
    if owner_member_id:
        params["owner_ids"] = [owner_member_id]
    if item.due_date:
        params["deadline"] = _deadline(item.due_date)
    if item.estimate is not None:
        params["estimate"] = item.estimate
    return params


def _state_of(story: dict) -> str:
    if story.get("completed"):
        return "done"
    if story.get("archived"):
        return "archived"
    return "started" if story.get("started") else "unstarted"


# --- status flowing back -------------------------------------------------------------------------------------


@dataclass
class Applied:
    """What one event or reconcile pass did, for the delivery record and the JSON answer."""

    changed: list[int] = field(default_factory=list)  # action item ids
    ignored: list[int] = field(default_factory=list)  # story ids of no action item, or stale events


def export_for_story(session: Session, story_id: int) -> ShortcutExport | None:
    return session.scalar(sa.select(ShortcutExport).where(ShortcutExport.story_id == story_id,
                                                          ShortcutExport.status == ExportStatus.SENT))


def _set_status(session: Session, item: ActionItem, status: ItemStatus) -> bool:
    if item.status == status:
        return False
    if item.status == ItemStatus.WONT_DO:
        return False  # a person decided not to do it; the card does not overrule that
    items.update_action_item(session, item, status=status.value)
    return True


def apply_story_change(session: Session, export: ShortcutExport, change: StoryChange,
                       changed_at: datetime | None = None) -> bool:
    """Map one story's change onto its action item (absolute values, so a repeat changes nothing)."""
    if changed_at is not None:
        if export.story_changed_at is not None and changed_at < export.story_changed_at:
            return False  # an older event arriving late must not undo a newer one
        export.story_changed_at = changed_at
    item = export.action_item
    changed = False
    if change.completed is True:
        changed |= _set_status(session, item, ItemStatus.DONE)
        export.completed_at = change.completed_at or changed_at or utcnow()
        export.card_state, export.card_closed = "done", False
    elif change.reopened:
        started = change.workflow_state_type == STARTED or (change.started is True and not change.moved_back)
        changed |= _set_status(session, item, ItemStatus.IN_PROGRESS if started else ItemStatus.OPEN)
        export.completed_at = None
        export.card_state = "started" if started else "unstarted"
    elif change.started is True:
        if item.status == ItemStatus.OPEN:
            changed |= _set_status(session, item, ItemStatus.IN_PROGRESS)
        export.card_state = "started"

    if change.closed:
        export.card_state = "deleted" if change.deleted else "archived"
        # Closed without completion: whether the work is done or dropped is a person's call.
        export.card_closed = item.status != ItemStatus.DONE and change.completed is not True
        changed = True
    elif change.archived is False and export.card_state == "archived":
        export.card_closed = False
        export.card_state = ""
        changed = True
    export.synced_at = utcnow()
    session.flush()
    return changed


def change_from_story(story: dict) -> StoryChange:
    """The current state of a story read from the API, as the change that would lead there."""
    completed = bool(story.get("completed"))
    return StoryChange(
        story_id=int(story["id"]), action="reconcile", name=story.get("name"), app_url=story.get("app_url"),
        completed=True if completed else None,
        completed_at=parse_timestamp(story.get("completed_at"), "completed_at") if completed else None,
        started=True if story.get("started") and not completed else None,
        archived=True if story.get("archived") else None,
    )


def apply_event(session: Session, event: ShortcutEvent) -> Applied:
    """Apply every story change of an event to the action items that own those stories."""
    applied = Applied()
    for change in event.stories:
        export = export_for_story(session, change.story_id)
        if export is None:
            applied.ignored.append(change.story_id)
            continue
        if apply_story_change(session, export, change, event.changed_at):
            applied.changed.append(export.action_item_id)
    return applied


# --- webhook deliveries --------------------------------------------------------------------------------------


class Duplicate(Exception):
    """This event id was received before: a sender retry or a replay."""


def store_delivery(session: Session, *, event_id: str | None, outcome: DeliveryOutcome, body: str,
                   headers: dict, received_at: datetime, changed_at: datetime | None = None,
                   story_ids: list[int] | None = None, error: str = "") -> ShortcutDelivery:
    """Insert the delivery; its unique event id makes a second copy raise Duplicate."""
    if event_id is not None and session.scalar(
            sa.select(ShortcutDelivery.id).where(ShortcutDelivery.event_id == event_id)) is not None:
        raise Duplicate(event_id)
    row = ShortcutDelivery(event_id=event_id, outcome=outcome, body=body, headers=headers, received_at=received_at,
                           changed_at=changed_at, story_ids=story_ids or [], error=error[:2000])
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Duplicate(event_id) from None
    return row


def ingest_event(session: Session, event: ShortcutEvent, *, body: str, headers: dict,
                 received_at: datetime) -> tuple[ShortcutDelivery, Applied]:
    """Store the event (deduplicated on its id) and apply it, in the caller's transaction."""
    delivery = store_delivery(session, event_id=event.id, outcome=DeliveryOutcome.IGNORED, body=body,
                              headers=headers, received_at=received_at, changed_at=event.changed_at,
                              story_ids=[change.story_id for change in event.stories])
    applied = apply_event(session, event)
    if applied.changed:
        delivery.outcome = DeliveryOutcome.PROCESSED
    session.flush()
    return delivery, applied


def reconcile_candidates(session: Session, limit: int) -> list[ShortcutExport]:
    """Sent exports of open items, least recently synced first (never synced before anything else)."""
    return list(session.scalars(
        sa.select(ShortcutExport).join(ActionItem, ShortcutExport.action_item_id == ActionItem.id)
        .where(ShortcutExport.status == ExportStatus.SENT, ShortcutExport.card_closed.is_(False),
               ActionItem.status.in_([ItemStatus.OPEN, ItemStatus.IN_PROGRESS]))
        .order_by(ShortcutExport.synced_at.is_not(None), ShortcutExport.synced_at, ShortcutExport.id)
        .limit(limit)))
