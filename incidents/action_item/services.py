"""Action items: create them on a post-mortem, track them to done (or won't do, with a reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item.models import ActionItem, ItemStatus, ItemType, Priority
from incidents.auth.models import User
from incidents.bounds import as_id, get_by_id
from incidents.catalog import services as catalog
from incidents.database import Page, paginate, utcnow
from incidents.errors import Conflict, Invalid, NotFound
from incidents.incident.models import Incident
from incidents.postmortem import services as pm_services
from incidents.postmortem.models import Postmortem
from incidents.singleline import check_single_line, reject_nul

FIELDS = ("title", "description", "owner_id", "due_date", "type", "priority", "estimate", "status", "wont_do_reason")
# Once the post-mortem is published, the plan is fixed but the work is still tracked.
TRACKING_FIELDS = frozenset({"status", "wont_do_reason"})


def _enum(enum_cls, value, field: str):
    try:
        return enum_cls(value)
    except ValueError:
        raise Invalid(f"Unknown {field} {value!r}.", {field: [f"One of: {', '.join(enum_cls)}."]}) from None


def _apply(session: Session, item: ActionItem, changes: dict, at: datetime | None = None) -> None:
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise Invalid(f"Cannot set {', '.join(sorted(unknown))}.", {k: ["Unknown field."] for k in unknown})
    reject_nul(**{k: v for k, v in changes.items() if isinstance(v, str)})
    if "title" in changes:
        title = (changes["title"] or "").strip()
        if not title or len(title) > 200:
            raise Invalid("A title of up to 200 characters is required.", {"title": ["Required, at most 200."]})
        check_single_line(title=title)
        item.title = title
    if "description" in changes:
        item.description = (changes["description"] or "").strip()
    if "owner_id" in changes:
        owner_id = changes["owner_id"]
        owner = get_by_id(session, User, owner_id)
        if owner_id not in (None, "") and owner is None:
            raise Invalid(f"No user {owner_id}.", {"owner_id": ["Unknown user."]})
        item.owner = owner
    if "due_date" in changes:
        due = changes["due_date"]
        if isinstance(due, str) and due:
            try:
                due = date.fromisoformat(due)
            except ValueError:
                raise Invalid("Due date must be YYYY-MM-DD.", {"due_date": ["Not a date."]}) from None
        item.due_date = due or None
    if "type" in changes:
        item.type = _enum(ItemType, changes["type"], "type") if changes["type"] else None
    if "priority" in changes and changes["priority"]:
        item.priority = _enum(Priority, changes["priority"], "priority")
    if "estimate" in changes:
        est = changes["estimate"]
        if est in (None, ""):
            item.estimate = None
        else:
            try:
                est = int(est)
            except (TypeError, ValueError):
                raise Invalid("The estimate is a whole number of points.", {"estimate": ["Not a number."]}) from None
            if not 0 <= est <= 100:
                raise Invalid("The estimate is between 0 and 100 points.", {"estimate": ["Out of range."]})
            item.estimate = est
    if "wont_do_reason" in changes:
        item.wont_do_reason = (changes["wont_do_reason"] or "").strip()
    if "status" in changes and changes["status"]:
        status = _enum(ItemStatus, changes["status"], "status")
        # The ledger counts debt by this date: stamped on each move into done or won't do, kept on a re-save.
        if status.is_closed and (item.closed_at is None or status != item.status):
            item.closed_at = at or utcnow()
        elif not status.is_closed:
            item.closed_at = None
        item.status = status
    if item.status == ItemStatus.WONT_DO and not item.wont_do_reason:
        raise Invalid("Say why this item won't be done.", {"wont_do_reason": ["Required for won't do."]})
    if item.status != ItemStatus.WONT_DO:
        item.wont_do_reason = ""


def create_action_item(session: Session, pm: Postmortem, *, by: User | None = None, at: datetime | None = None,
                       **fields) -> ActionItem:
    """`at` back-dates the creation (imports, demo history); the ledger counts the debt from then."""
    pm_services.ensure_editable(pm)
    if not (fields.get("title") or "").strip():
        raise Invalid("A title is required.", {"title": ["Required."]})
    item = ActionItem(created_by=by, status=ItemStatus.OPEN, priority=Priority.MEDIUM, created_at=at or utcnow())
    _apply(session, item, fields, at)  # validated before it joins the post-mortem, so a refusal leaves no trace
    pm.action_items.append(item)
    session.flush()
    pm_services.refresh_search_text(pm)
    events.emit(session, "action_item.created", action_item_id=item.id, postmortem_id=pm.id,
                changes=events.diff({}, _field_values(item)))
    return item


def _field_values(item: ActionItem) -> dict:
    """The editable fields as JSON-ready values, for the `changes` of `action_item.updated`."""
    return {"title": item.title, "description": item.description, "owner_id": item.owner_id,
            "due_date": item.due_date.isoformat() if item.due_date else None,
            "type": item.type.value if item.type else None, "priority": item.priority.value,
            "estimate": item.estimate, "status": item.status.value, "wont_do_reason": item.wont_do_reason}


def update_action_item(session: Session, item: ActionItem, *, at: datetime | None = None, **changes) -> ActionItem:
    """Edit an item; on a published post-mortem only its status (and won't-do reason) may change. Emits
    `action_item.updated` with the fields that changed.

    `at` is when it happened (default now): a status change back-dated by an import or the demo."""
    if item.postmortem.is_published and set(changes) - TRACKING_FIELDS:
        raise Conflict("The post-mortem is published: only the status of its action items can change; "
                       "an admin can reopen it.")
    before = _field_values(item)
    _apply(session, item, changes, at)
    item.updated_at = at or utcnow()
    session.flush()
    pm_services.refresh_search_text(item.postmortem)
    after = _field_values(item)
    edited = {field: [before[field], after[field]] for field in before if before[field] != after[field]}
    if edited:
        events.emit(session, "action_item.updated", action_item_id=item.id, changes=edited)
    return item


def announce_overdue(session: Session, today: date, window_days: int = 7) -> int:
    """Emit `action_item.overdue` for each open item that became overdue in the last `window_days` days; returns
    how many.

    An item becomes overdue the day after its due date; that day (`since`) keys the reminder, so a daily scan
    that sees it again (or two scans at once) sends nothing new, and moving the due date makes it a new reminder
    later. The window lets a missed day catch up without reminding about ancient debt on a first run."""
    rows = session.execute(
        sa.select(ActionItem.id, ActionItem.due_date, Postmortem.incident_id)
        .join(Postmortem, ActionItem.postmortem_id == Postmortem.id)
        .where(ActionItem.status.in_([ItemStatus.OPEN, ItemStatus.IN_PROGRESS]), ActionItem.due_date < today,
               ActionItem.due_date >= today - timedelta(days=window_days + 1))
        .order_by(ActionItem.due_date, ActionItem.id)).all()
    for item_id, due, incident_id in rows:
        events.emit(session, "action_item.overdue", action_item_id=item_id, incident_id=incident_id,
                    since=(due + timedelta(days=1)).isoformat())
    return len(rows)


def delete_action_item(session: Session, item: ActionItem) -> None:
    pm_services.ensure_editable(item.postmortem)
    pm = item.postmortem
    item_id, values = item.id, _field_values(item)
    pm.action_items.remove(item)
    session.flush()
    pm_services.refresh_search_text(pm)
    events.emit(session, "action_item.deleted", action_item_id=item_id, postmortem_id=pm.id,
                changes=events.diff(values, {}))


def get_action_item(session: Session, item_id: int | str) -> ActionItem:
    item = get_by_id(session, ActionItem, item_id)
    if item is None:
        raise NotFound(f"No action item {item_id}.")
    return item


@dataclass
class ActionItemFilter:
    status: list[str] | None = None
    owner: str | None = None
    team: str | None = None
    postmortem_id: int | None = None


def list_action_items(session: Session, f: ActionItemFilter, page: int = 1, per_page: int = 25) -> Page:
    """Soonest due first (undated last); `owner` is a user id or e-mail, `team` a team slug or id."""
    reject_nul(owner=f.owner, team=f.team)
    stmt = sa.select(ActionItem).order_by(ActionItem.due_date.is_(None), ActionItem.due_date, ActionItem.id)
    if f.status:
        stmt = stmt.where(ActionItem.status.in_([_enum(ItemStatus, s, "status") for s in f.status]))
    if f.owner:
        owner = f.owner.strip()
        if owner.isdigit():
            stmt = stmt.where(ActionItem.owner_id == (as_id(owner) or 0))  # a number beyond the ids matches none
        else:
            stmt = stmt.join(User, ActionItem.owner_id == User.id).where(User.email == owner.lower())
    if f.team:
        team = catalog.get_team(session, f.team)
        stmt = stmt.where(ActionItem.postmortem_id.in_(
            sa.select(Postmortem.id).join(Incident, Postmortem.incident_id == Incident.id)
            .where(Incident.team_id == team.id)))
    if f.postmortem_id:
        stmt = stmt.where(ActionItem.postmortem_id == f.postmortem_id)
    return paginate(session, stmt, page, per_page)
