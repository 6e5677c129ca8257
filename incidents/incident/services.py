"""Incident use cases: create, edit, move through the status machine, and write the timeline."""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, current_app, has_app_context
from sqlalchemy.orm import Session, selectinload

from incidents import database, events
from incidents.auth.models import Role, User
from incidents.bounds import MAX_INT
from incidents.catalog import services as catalog
from incidents.database import Page, paginate, utcnow
from incidents.errors import Invalid, InvalidTransition, NotFound
from incidents.incident.models import (
    EntryKind,
    Incident,
    IncidentRole,
    IncidentTag,
    Severity,
    Status,
    StatusUpdate,
    TimelineEntry,
)
from incidents.prepared import Prepared
from incidents.singleline import check_single_line, reject_nul

_REF = re.compile(r"^(?:inc-)?(\d{1,18})$", re.IGNORECASE)
_TAG = re.compile(r"^[\w.:/-]{1,50}$")


def _ref_id(text: str) -> int | None:
    match = _REF.match(text.strip())
    return int(match.group(1)) if match and int(match.group(1)) <= MAX_INT else None


def _choice(enum_cls, value, field: str):
    """Convert to an enum member, or refuse with a 422 naming the allowed values."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise Invalid(f"Unknown {field} {value!r}; use one of {allowed}.", {field: [f"One of: {allowed}."]}) from None


def get_incident(session: Session, ref_or_id: str | int) -> Incident:
    """Find an incident by `INC-42`, `42` or 42."""
    incident_id = _ref_id(str(ref_or_id))
    incident = session.get(Incident, incident_id) if incident_id else None
    if incident is None:
        raise NotFound(f"No incident {ref_or_id}.")
    return incident


def add_timeline_entry(session: Session, incident: Incident, kind: EntryKind, text: str, *, body: str = "",
                       data: dict | None = None, author: User | None = None,
                       occurred_at: datetime | None = None) -> TimelineEntry:
    """Append one entry to an incident's timeline; every other capability writes through here."""
    _check_free_kind(kind)
    return _write_entry(session, incident, kind, text, body=body, data=data, author=author, occurred_at=occurred_at)


def _write_entry(session: Session, incident: Incident, kind: EntryKind, text: str, *, body: str = "",
                 data: dict | None = None, author: User | None = None,
                 occurred_at: datetime | None = None) -> TimelineEntry:
    # An unchanged incident is linked by foreign key (unless its timeline is loaded, kept in step then): through
    # the relationship, the flush would take it and every one of its relationships along, which costs more than
    # the INSERT (an alert's note, on the webhook writer's turn). A changed one is flushed anyway.
    state = sa.inspect(incident)
    link = {"incident": incident} if state.modified or not state.has_identity or "timeline" in state.dict else \
        {"incident_id": incident.id}
    entry = TimelineEntry(**link, kind=kind, text=text[:500], body=body or "", data=data or {}, author=author,
                          occurred_at=occurred_at or utcnow())
    session.add(entry)
    session.flush()
    return entry


# Declaration and status entries are written only by `declare_incident` and the status machine, which emit the
# matching events: written alone (ORM or core alike), they would record a change that nobody hears about.
_OWNED_KINDS = frozenset({EntryKind.CREATED, EntryKind.STATUS})


def _check_free_kind(kind: EntryKind) -> None:
    if kind in _OWNED_KINDS:
        raise ValueError(f"{kind} entries come with their event: declare the incident or move its status instead")


def add_timeline_entries(session: Session, incident_ids: Iterable[int], kind: EntryKind, text: str, *,
                         data: dict | None = None, occurred_at: datetime | None = None,
                         author: User | None = None) -> int:
    """The same entry on one or many incidents (a deploy noted on every open incident, an alert event) as one
    INSERT, without loading the incidents or an ORM flush; returns how many were written."""
    _check_free_kind(kind)
    return _insert_entries(session, incident_ids, kind, text, data=data, occurred_at=occurred_at, author=author)


def _insert_entries(session: Session, incident_ids: Iterable[int], kind: EntryKind, text: str, *,
                    data: dict | None = None, occurred_at: datetime | None = None,
                    author: User | None = None) -> int:
    at, now = occurred_at or utcnow(), utcnow()
    rows = [dict(incident_id=incident_id, kind=kind, text=text[:500], body="", data=dict(data or {}),
                 author_id=author.id if author is not None else None,
                 occurred_at=at, created_at=now) for incident_id in incident_ids]
    if rows:  # a core INSERT on the connection: the ORM's bulk path costs more than the insert itself
        session.connection().execute(TimelineEntry.__table__.insert(), rows)
    return len(rows)


def add_timeline_entries_where(session: Session, incident_ids: sa.Select, kind: EntryKind, text: str, *,
                               data: dict | None = None, occurred_at: datetime | None = None,
                               params: dict | None = None) -> int:
    """The same entry on every incident the `incident_ids` select returns, as one INSERT .. SELECT: no row
    passes through Python (a deploy noted on hundreds of open incidents). A hot caller passes one select built
    once, with bind parameters given in `params`: the INSERT around it is then built once too."""
    _check_free_kind(kind)
    at, now = occurred_at or utcnow(), utcnow()
    values = {"e_kind": kind, "e_text": text[:500], "e_data": dict(data or {}), "e_at": at, "e_now": now}
    return _entries_where(incident_ids).execute(session, {**(params or {}), **values}).rowcount


@functools.lru_cache(maxsize=32)
def _entries_where(incident_ids: sa.Select) -> Prepared:
    t = TimelineEntry.__table__
    ids = incident_ids.subquery()
    source = sa.select(
        ids.c[0], sa.bindparam("e_kind", type_=t.c.kind.type), sa.bindparam("e_text", type_=t.c.text.type),
        sa.literal("", t.c.body.type), sa.bindparam("e_data", type_=t.c.data.type), sa.null(),
        sa.bindparam("e_at", type_=t.c.occurred_at.type), sa.bindparam("e_now", type_=t.c.created_at.type),
    ).order_by(ids.c[0])
    # Prepared (incidents/prepared.py): run on the cursor, whose row count is the count of entries written.
    return Prepared(sa.insert(t).from_select(
        ["incident_id", "kind", "text", "body", "data", "author_id", "occurred_at", "created_at"], source))


def _normalise_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in tags:
        tag = raw.strip().lower()
        if not tag:
            continue
        if not _TAG.match(tag):
            raise Invalid(f"Tag {raw!r} is not allowed: use up to 50 letters, digits, '-', '_', '.', ':' or '/'.",
                          {"tags": [f"Invalid tag {raw!r}."]})
        if tag not in out:
            out.append(tag)
    if len(out) > 20:
        raise Invalid("At most 20 tags.", {"tags": ["At most 20 tags."]})
    return out


def _set_tags(incident: Incident, tags: Iterable[str]) -> None:
    wanted = _normalise_tags(tags)
    incident.tag_rows = [row for row in incident.tag_rows if row.name in wanted] + [
        IncidentTag(name=t) for t in wanted if t not in incident.tags
    ]


def _resolve_placement(session: Session, service_id, team_id) -> tuple:
    service = catalog.get_service(session, service_id) if service_id else None
    team = catalog.get_team(session, team_id) if team_id else (service.team if service else None)
    return service, team


def create_incident(session: Session, *, title: str, severity: Severity | str, summary: str = "",
                    service_id: int | str | None = None, team_id: int | str | None = None,
                    tags: Iterable[str] = (), started_at: datetime | None = None,
                    detected_at: datetime | None = None, created_by: User | None = None,
                    commander_id: int | None = None) -> Incident:
    """Declare an incident (see `declare_incident`) and return it, with its commander when one is given.

    A person declaring (web, API, Slack) becomes the commander unless DECLARER_IS_COMMANDER is false or they may
    not hold roles, and starts the next-update timer: stakeholders expect the first update soon."""
    incident_id = declare_incident(session, title=title, severity=severity, summary=summary, service_id=service_id,
                                   team_id=team_id, tags=tags, started_at=started_at, detected_at=detected_at,
                                   created_by=created_by)
    incident = session.get(Incident, incident_id)
    if not commander_id and created_by is not None and _setting("DECLARER_IS_COMMANDER", True) \
            and created_by.role in (Role.RESPONDER, Role.ADMIN):
        commander_id = created_by.id
    if commander_id:
        set_role(session, incident, IncidentRole.COMMANDER, commander_id, by=created_by, at=incident.detected_at)
    if created_by is not None:
        incident.next_update_at = utcnow() + update_interval()
        session.flush()
    return incident


def _setting(name: str, default):
    return current_app.config.get(name, default) if has_app_context() else default


def update_interval() -> timedelta:
    """How long until the next status update is due when nobody names a time (UPDATE_INTERVAL_MINUTES)."""
    return timedelta(minutes=float(_setting("UPDATE_INTERVAL_MINUTES", 30)))


def declare_incident(session: Session, *, title: str, severity: Severity | str, summary: str = "",
                     service_id: int | str | None = None, team_id: int | str | None = None,
                     tags: Iterable[str] = (), started_at: datetime | None = None,
                     detected_at: datetime | None = None, repeat_of_id: int | None = None,
                     created_by: User | None = None, source: str = "manual") -> int:
    """Declare an incident and return its id: it starts `triggered`, owned by the service's team unless a team is
    given, with its declaration entry; emits `incident.declared`. `source` says how it was opened: the alert
    source that opened it, or "manual" (a person, through the web, the API or Slack).

    The incident, its tags and the entry are core INSERTs without an ORM flush, because alerts open incidents
    here on the webhook hot path while holding the write lock; `create_incident` loads the row afterwards."""
    if not title or not title.strip():
        raise Invalid("A title is required.", {"title": ["Required."]})
    check_single_line(title=title.strip())
    title, summary = title.strip()[:200], summary or ""
    reject_nul(title=title, summary=summary)  # core INSERTs pass no flush, where database.py checks it
    severity = _choice(Severity, severity, "severity")
    now = utcnow()
    service, team = _resolve_placement(session, service_id, team_id)
    detected_at = detected_at or now
    started_at = started_at or detected_at
    if started_at > detected_at:
        raise Invalid("Impact cannot start after it was detected.", {"started_at": ["After detected_at."]})
    wanted = _normalise_tags(tags)
    if created_by is not None and created_by.id is None:
        session.flush()  # a user added in this transaction: its id is the author
    conn = session.connection()
    incident_id = conn.execute(_INSERT_INCIDENT, dict(
        title=title, summary=summary, severity=severity, status=Status.TRIGGERED,
        service_id=service.id if service else None, team_id=team.id if team else None, commander_id=None,
        comms_lead_id=None, scribe_id=None, created_by_id=created_by.id if created_by else None,
        repeat_of_id=repeat_of_id, created_at=now, updated_at=now, started_at=started_at, detected_at=detected_at,
        acknowledged_at=None, mitigated_at=None, resolved_at=None, closed_at=None, source=source)).scalar_one()
    if wanted:
        conn.execute(sa.insert(IncidentTag.__table__), [{"incident_id": incident_id, "name": t} for t in wanted])
    _insert_entries(session, [incident_id], EntryKind.CREATED, f"Incident declared ({severity})",
                    data={"severity": severity.value}, author=created_by, occurred_at=detected_at)
    events.emit(session, "incident.declared", incident_id=incident_id, severity=severity.value,
                started_at=started_at.isoformat(), team_id=team.id if team else None,
                service_id=service.id if service else None)
    return incident_id


_INSERT_INCIDENT = sa.insert(Incident.__table__).returning(Incident.__table__.c.id)


_EDITABLE = ("title", "summary", "severity", "service_id", "team_id", "tags", "started_at", "detected_at")


def _editable_values(incident: Incident) -> dict:
    """The editable fields as JSON-ready values, for the `changes` of `incident.updated`."""
    return {"title": incident.title, "summary": incident.summary, "severity": incident.severity.value,
            "service_id": incident.service_id, "team_id": incident.team_id, "tags": sorted(incident.tags),
            "started_at": incident.started_at.isoformat(), "detected_at": incident.detected_at.isoformat()}


def update_incident(session: Session, incident: Incident, *, by: User | None = None, **changes) -> Incident:
    """Edit descriptive fields; severity changes and re-placement are written to the timeline. Emits
    `incident.severity_changed` when the severity changed and `incident.updated` with every field that did."""
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise Invalid(f"Cannot edit {', '.join(sorted(unknown))}.")
    before = _editable_values(incident)
    notes: list[str] = []
    if "title" in changes:
        if not (changes["title"] or "").strip():
            raise Invalid("A title is required.", {"title": ["Required."]})
        check_single_line(title=changes["title"].strip())
        incident.title = changes["title"].strip()[:200]
    if "summary" in changes:
        incident.summary = changes["summary"] or ""
    if "severity" in changes and _choice(Severity, changes["severity"], "severity") != incident.severity:
        notes.append(f"Severity: {incident.severity} -> {changes['severity']}")
        incident.severity = Severity(changes["severity"])
    if "service_id" in changes or "team_id" in changes:
        service, team = _resolve_placement(
            session, changes.get("service_id", incident.service_id), changes.get("team_id") or None
        )
        if service != incident.service or team != incident.team:
            notes.append(f"Moved to {service.name if service else 'no service'} / {team.name if team else 'no team'}")
        incident.service, incident.team = service, team
    if "tags" in changes:
        _set_tags(incident, changes["tags"] or [])
    for field, label in (("started_at", "Impact start"), ("detected_at", "Detection")):
        # A form posts minutes: the same minute again is no correction (the seconds stay).
        if changes.get(field) and changes[field] != getattr(incident, field) and not (
                changes[field].second == changes[field].microsecond == 0
                and changes[field] == getattr(incident, field).replace(second=0, microsecond=0)):
            notes.append(f"{label} corrected: {_minute(getattr(incident, field))} -> {_minute(changes[field])} UTC")
            setattr(incident, field, changes[field])
    _check_milestones(incident)
    session.flush()
    for text in notes:
        add_timeline_entry(session, incident, EntryKind.EDIT, text, author=by)
    after = _editable_values(incident)
    if before["severity"] != after["severity"]:
        events.emit(session, "incident.severity_changed", incident_id=incident.id, before=before["severity"],
                    after=after["severity"])
    edited = {field: [before[field], after[field]] for field in before if before[field] != after[field]}
    if edited:
        events.emit(session, "incident.updated", incident_id=incident.id, changes=edited)
    return incident


def _minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def _check_milestones(incident: Incident) -> None:
    """Impact starts before detection, and detection comes before anything responders did about it."""
    if incident.started_at > incident.detected_at:
        raise Invalid("Impact cannot start after it was detected.", {"started_at": ["After detected_at."]})
    for name, at in (("acknowledged", incident.acknowledged_at), ("mitigated", incident.mitigated_at),
                     ("resolved", incident.resolved_at)):
        if at is not None and incident.detected_at > at:
            raise Invalid(f"Detection cannot be after the incident was {name} ({_minute(at)} UTC).",
                          {"detected_at": [f"After it was {name}."]})


def add_note(session: Session, incident: Incident, body: str, *, by: User | None = None,
             occurred_at: datetime | None = None) -> TimelineEntry:
    """A Markdown note on the timeline; emits `incident.note_added`."""
    if not body or not body.strip():
        raise Invalid("A note cannot be empty.", {"body": ["Required."]})
    entry = add_timeline_entry(session, incident, EntryKind.NOTE, "Note", body=body.strip(), author=by,
                               occurred_at=occurred_at)
    events.emit(session, "incident.note_added", incident_id=incident.id, entry_id=entry.id)
    return entry


def set_role(session: Session, incident: Incident, role: IncidentRole | str, user_id: int | None, *,
             by: User | None = None, at: datetime | None = None) -> Incident:
    """Assign (or clear, with None) the commander, communications lead or scribe; emits `incident.role_assigned`
    when the holder changes."""
    role = IncidentRole(role)
    user = session.get(User, user_id) if user_id else None
    if user_id and user is None:
        raise Invalid(f"No user {user_id}.", {role.value: ["Unknown user."]})
    before = incident.role_holder(role)
    if before == user:
        return incident
    setattr(incident, role.value, user)
    session.flush()
    text = f"{role.label}: {user.name}" if user else f"{role.label} cleared"
    entry = add_timeline_entry(session, incident, EntryKind.ROLE, text, author=by, occurred_at=at,
                               data={"role": role.value, "user_id": user.id if user else None})
    events.emit(session, "incident.role_assigned", incident_id=incident.id, role=role.value,
                user_id=user.id if user else None, before_user_id=before.id if before else None, entry_id=entry.id)
    return incident


def assignable_users(session: Session) -> list[User]:
    """Who may hold an incident role: active responders and admins (viewers only read)."""
    stmt = (sa.select(User).where(User.active.is_(True), User.role.in_([Role.RESPONDER, Role.ADMIN]))
            .order_by(User.name))
    return list(session.scalars(stmt))


# --- the status machine -------------------------------------------------------------------------

_OPEN = (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED)


def _move(session: Session, incident: Incident, to: Status, allowed_from: tuple[Status, ...],
          by: User | None, at: datetime | None, verb: str, body: str = "") -> Incident:
    if incident.status not in allowed_from:
        allowed = ", ".join(s.value for s in allowed_from)
        raise InvalidTransition(
            f"Cannot {verb} {incident.ref}: it is {incident.status.value}; "
            f"only an incident that is {allowed} can be {to.value if verb != 'reopen' else 'reopened'}."
        )
    at = at or utcnow()
    old = incident.status
    # Reaching a milestone implies the earlier ones (resolving unacknowledged work acknowledges it).
    if to in (Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED, Status.RESOLVED):
        incident.acknowledged_at = incident.acknowledged_at or at
    if to in (Status.MITIGATED, Status.RESOLVED):
        incident.mitigated_at = incident.mitigated_at or at
    if to == Status.RESOLVED:
        incident.resolved_at = at
    if to == Status.CLOSED:
        incident.closed_at = at
    if not to.is_open:
        incident.next_update_at = None  # nothing more is owed to stakeholders
    elif incident.next_update_at is None:
        incident.next_update_at = utcnow() + update_interval()  # someone is on it (again): stakeholders expect news
    incident.status = to  # written with the entry, in its flush
    entry = _write_entry(session, incident, EntryKind.STATUS, f"Status: {old.value} -> {to.value}", author=by,
                         occurred_at=at, data={"from": old.value, "to": to.value}, body=body)
    events.emit(session, "incident.status_changed", incident_id=incident.id, entry_id=entry.id, before=old.value,
                after=to.value)
    return incident


def acknowledge_incident(session: Session, incident: Incident, *, by: User | None = None,
                         at: datetime | None = None) -> Incident:
    return _move(session, incident, Status.ACKNOWLEDGED, (Status.TRIGGERED,), by, at, "acknowledge")


def investigate_incident(session: Session, incident: Incident, *, by: User | None = None,
                         at: datetime | None = None) -> Incident:
    return _move(session, incident, Status.INVESTIGATING,
                 (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.MITIGATED), by, at, "start investigating")


def mitigate_incident(session: Session, incident: Incident, *, by: User | None = None,
                      at: datetime | None = None) -> Incident:
    return _move(session, incident, Status.MITIGATED,
                 (Status.TRIGGERED, Status.ACKNOWLEDGED, Status.INVESTIGATING), by, at, "mitigate")


def resolve_incident(session: Session, incident: Incident, *, by: User | None = None,
                     at: datetime | None = None, resolution: str = "") -> Incident:
    """Resolve; the resolution note (what fixed it) is kept on the incident and its status entry. People must give
    one (`transition` requires it); the system resolving on its own says why."""
    resolution = (resolution or "").strip()
    _move(session, incident, Status.RESOLVED, _OPEN, by, at, "resolve", body=resolution)
    incident.resolution = resolution
    return incident


def close_incident(session: Session, incident: Incident, *, by: User | None = None,
                   at: datetime | None = None) -> Incident:
    return _move(session, incident, Status.CLOSED, (Status.RESOLVED,), by, at, "close")


def reopen_incident(session: Session, incident: Incident, *, by: User | None = None,
                    at: datetime | None = None) -> Incident:
    """Back to investigating from resolved or closed; the resolution times are cleared."""
    _move(session, incident, Status.INVESTIGATING, (Status.RESOLVED, Status.CLOSED), by, at, "reopen")
    incident.resolved_at = incident.closed_at = None
    incident.resolution = ""  # it was not the fix after all; the old note stays on the timeline
    session.flush()
    return incident


TRANSITIONS = {
    Status.ACKNOWLEDGED: acknowledge_incident,
    Status.INVESTIGATING: investigate_incident,
    Status.MITIGATED: mitigate_incident,
    Status.RESOLVED: resolve_incident,
    Status.CLOSED: close_incident,
}


def transition(session: Session, incident: Incident, to: Status | str, *, by: User | None = None,
               at: datetime | None = None, resolution: str | None = None) -> Incident:
    """Move to `to` through the named transition function (the web buttons, the API and Slack share this).
    Resolving requires a resolution note: what fixed it."""
    to = _choice(Status, to, "status")
    if to == Status.RESOLVED and incident.status != Status.RESOLVED:
        if not (resolution or "").strip():
            raise Invalid("Say what resolved it: a resolution note is required to resolve.",
                          {"resolution": ["Required to resolve: what fixed it."]})
        reject_nul(resolution=resolution)
        return resolve_incident(session, incident, by=by, at=at, resolution=resolution)
    if to == Status.INVESTIGATING and not incident.is_open:
        return reopen_incident(session, incident, by=by, at=at)
    if to == incident.status:
        raise InvalidTransition(f"{incident.ref} is already {to.value}.")
    if to == Status.TRIGGERED:
        raise InvalidTransition(f"Cannot move {incident.ref} back to triggered.")
    return TRANSITIONS[to](session, incident, by=by, at=at)


def next_statuses(incident: Incident) -> list[Status]:
    """The statuses a responder can move this incident to now, for buttons."""
    s = incident.status
    if s == Status.RESOLVED:
        return [Status.CLOSED, Status.INVESTIGATING]
    if s == Status.CLOSED:
        return [Status.INVESTIGATING]
    order = [Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED, Status.RESOLVED]
    allowed = {
        Status.TRIGGERED: order,
        Status.ACKNOWLEDGED: order[1:],
        Status.INVESTIGATING: [Status.MITIGATED, Status.RESOLVED],
        Status.MITIGATED: [Status.INVESTIGATING, Status.RESOLVED],
    }
    return allowed[s]


# --- lists ----------------------------------------------------------------------------------------

@dataclass
class IncidentFilter:
    status: list[str] | None = None
    severity: list[str] | None = None
    service: str | None = None
    team: str | None = None
    tag: str | None = None
    q: str | None = None
    open_only: bool = False


def count_open_by_severity(session: Session) -> dict[str, int]:
    """Open incidents per severity, every severity present (the metrics gauge reads it at each scrape)."""
    rows = session.execute(sa.select(Incident.severity, sa.func.count()).where(Incident.status.in_(_OPEN))
                           .group_by(Incident.severity))
    return {s.value: 0 for s in Severity} | {Severity(sev).value: n for sev, n in rows}


def list_incidents(session: Session, f: IncidentFilter, page: int = 1, per_page: int = 25,
                   before: str | None = None, count_limit: int | None = None) -> Page:
    """Newest first, filtered; every filter is backed by an index on (column, created_at).

    The tag and the text filters are tests on each incident as the list walks its newest-first index (a tag lookup
    by primary key, membership in the set of text matches), rather than sorting every tagged or matching incident;
    when one of them is the only filter, the count comes from its own index.

    Counts stop at `count_limit` (default database.COUNT_LIMIT): page numbers go that far, and every page carries
    the cursor of the next (`before`, the keyset (created_at, id)), which reaches any depth at the cost of page 1."""
    limit = database.COUNT_LIMIT if count_limit is None else count_limit
    cursor = database.Cursor.decode(before) if before is not None else None
    # Service and team come in two IN queries per page (tags are selectin already): no N+1 in lists.
    stmt = (sa.select(Incident).options(selectinload(Incident.service), selectinload(Incident.team))
            .order_by(Incident.created_at.desc(), Incident.id.desc()))
    counts: list[tuple[int, bool] | None] = []  # per filter: (its own count, exact?) when it has a cheap one
    if f.status:
        stmt = stmt.where(Incident.status.in_([_choice(Status, s, 'status') for s in f.status]))
        counts.append(None)
    elif f.open_only:
        stmt = stmt.where(Incident.status.in_(_OPEN))
        counts.append(None)
    if f.severity:
        stmt = stmt.where(Incident.severity.in_([_choice(Severity, s, 'severity') for s in f.severity]))
        counts.append(None)
    if f.service:
        stmt = stmt.where(Incident.service_id == catalog.get_service(session, f.service).id)
        counts.append(None)
    if f.team:
        stmt = stmt.where(Incident.team_id == catalog.get_team(session, f.team).id)
        counts.append(None)
    if f.tag:
        tag = f.tag.lower()
        stmt = stmt.where(sa.exists().where(IncidentTag.incident_id == Incident.id, IncidentTag.name == tag))
        tagged, more = database.capped_count(session, sa.select(IncidentTag.incident_id).where(IncidentTag.name == tag),
                                             limit)
        counts.append((tagged, not more))
    if f.q:
        q = f.q.strip()
        incident_id = _ref_id(q)
        if incident_id and q.lower().startswith("inc-"):
            stmt = stmt.where(Incident.id == incident_id)  # a reference is a primary-key lookup, no scan
            counts.append(None)
        else:
            # Its count is the list's only when q is the only filter (and no reference could match besides).
            alone = not counts and not incident_id
            cond, matched = _text_filter()(session, q, Incident.id, counted=alone)
            stmt = stmt.where(sa.or_(cond, Incident.id == incident_id) if incident_id else cond)
            counts.append(matched)
    known = counts[0] if len(counts) == 1 else None
    return paginate(session, stmt, page, per_page, total=known and known[0], at_least=bool(known) and not known[1],
                    count_limit=limit, keyset=(Incident.created_at, Incident.id), before=cursor)


_TEXT_FILTER = "incidents.incident.text_filter"


TextFilter = Callable[..., tuple[sa.ColumnElement, tuple[int, bool] | None]]


def set_text_filter(app: Flask, condition: TextFilter) -> None:
    """Let the search domain (above this one) answer the list's `q`: condition(session, q, Incident.id,
    counted=...) gives a condition true for the incidents whose text matches and, when `counted`, (how many do,
    exactly or more), else None (the list counts its rows itself); it raises Invalid for a q without words."""
    app.extensions[_TEXT_FILTER] = condition


def _text_filter() -> TextFilter:
    return current_app.extensions[_TEXT_FILTER]


# --- the war room: status updates, links, the stakeholder link, pins -----------------------------

_UPDATE_TEXT_MAX = 10_000
_LINKS = (("chat_url", "Chat channel"), ("call_url", "Call"), ("runbook_url", "Runbook"))


def post_status_update(session: Session, incident: Incident, *, impact: str, actions: str,
                       status: Status | str | None = None, next_update_at: datetime | None = None,
                       resolution: str | None = None, by: User | None = None) -> StatusUpdate:
    """A structured update for stakeholders: where it stands, the impact now, what responders are doing, and when
    the next update is due (default: UPDATE_INTERVAL_MINUTES from now; none once resolved). A status other than
    the current one moves the incident first, through the status machine (resolving needs `resolution`). It is
    written to the timeline and emits `incident.update_posted`; notify tells subscribers and the chat channels."""
    impact, actions = (impact or "").strip(), (actions or "").strip()
    errors = {name: ["Required: stakeholders read it."] for name, text in (("impact", impact), ("actions", actions))
              if not text}
    errors |= {name: [f"At most {_UPDATE_TEXT_MAX} characters."] for name, text in
               (("impact", impact), ("actions", actions)) if len(text) > _UPDATE_TEXT_MAX}
    now = utcnow()
    if next_update_at is not None and next_update_at <= now:
        errors["next_update_at"] = ["Must be in the future."]
    elif next_update_at is not None and next_update_at > now + timedelta(days=7):
        errors["next_update_at"] = ["At most 7 days ahead."]
    if errors:
        raise Invalid("The update is incomplete: " + ", ".join(sorted(errors)) + ".", errors)
    reject_nul(impact=impact, actions=actions)
    status = _choice(Status, status, "status") if status else incident.status
    if status != incident.status:
        transition(session, incident, status, by=by, resolution=resolution)
    due = None if not incident.is_open else (next_update_at or now + update_interval())
    update = StatusUpdate(incident=incident, status=incident.status, impact=impact, actions=actions,
                          next_update_at=due, author=by, created_at=now)
    session.add(update)
    incident.next_update_at = due
    session.flush()
    body = f"**Impact:** {impact}\n\n**What we are doing:** {actions}"
    entry = _write_entry(session, incident, EntryKind.UPDATE, f"Status update ({incident.status.value})",
                         body=body, author=by, occurred_at=now, data={"update_id": update.id})
    events.emit(session, "incident.update_posted", incident_id=incident.id, update_id=update.id, entry_id=entry.id)
    return update


def status_updates(incident_id: int) -> sa.Select:
    """An incident's status updates, newest first (the API pages it; Slack's summary takes the first)."""
    return (sa.select(StatusUpdate).where(StatusUpdate.incident_id == incident_id)
            .order_by(StatusUpdate.created_at.desc(), StatusUpdate.id.desc()))


def _check_url(field: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    check_single_line(**{field: value})
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > 500:
        raise Invalid(f"{field} must be an http(s) link of at most 500 characters.",
                      {field: ["Use an http:// or https:// link."]})
    return value


def set_links(session: Session, incident: Incident, *, by: User | None = None, **links: str) -> Incident:
    """Set the chat channel, call and runbook links (blank clears one); each change is on the timeline and in
    `incident.updated`."""
    unknown = set(links) - {name for name, _ in _LINKS}
    if unknown:
        raise Invalid(f"Unknown link {', '.join(sorted(unknown))}.")
    errors: dict = {}
    cleaned: dict[str, str] = {}
    for name, value in links.items():
        try:
            cleaned[name] = _check_url(name, value)
        except Invalid as e:
            errors |= e.fields or {name: [e.message]}
    if errors:
        raise Invalid("Some links are not valid.", errors)
    changes = {name: [getattr(incident, name), value] for name, value in cleaned.items()
               if value != getattr(incident, name)}
    for name, label in _LINKS:
        if name in changes:
            setattr(incident, name, cleaned[name])
            text = f"{label} link {'set' if cleaned[name] else 'removed'}"
            add_timeline_entry(session, incident, EntryKind.EDIT, text, author=by,
                               data={"field": name, "url": cleaned[name]})
    if changes:
        session.flush()
        events.emit(session, "incident.updated", incident_id=incident.id, changes=changes)
    return incident


def issue_status_link(session: Session, incident: Incident, *, show_names: bool = False,
                      by: User | None = None) -> str:
    """A new unguessable token for the read-only stakeholder view (/status/<token>); any earlier one stops working."""
    had = incident.status_token is not None
    incident.status_token = secrets.token_urlsafe(32)
    incident.status_show_names = bool(show_names)
    session.flush()
    add_timeline_entry(session, incident, EntryKind.EDIT,
                       "Stakeholder link re-issued (the old one no longer works)" if had else "Stakeholder link issued",
                       author=by, data={"status_link": "issued", "show_names": incident.status_show_names})
    events.emit(session, "incident.updated", incident_id=incident.id,
                changes={"status_link": ["issued" if had else "none", "issued"]})
    return incident.status_token


def revoke_status_link(session: Session, incident: Incident, *, by: User | None = None) -> None:
    """The stakeholder link answers 404 from now on."""
    if incident.status_token is None:
        return
    incident.status_token = None
    session.flush()
    add_timeline_entry(session, incident, EntryKind.EDIT, "Stakeholder link revoked", author=by,
                       data={"status_link": "revoked"})
    events.emit(session, "incident.updated", incident_id=incident.id, changes={"status_link": ["issued", "none"]})


def incident_for_status_token(session: Session, token: str) -> Incident:
    """The incident a stakeholder link shows; NotFound for an unknown or revoked token (no hint which)."""
    if not token or len(token) > 64:
        raise NotFound("No such status page.")
    incident = session.scalar(sa.select(Incident).where(Incident.status_token == token))
    if incident is None:
        raise NotFound("No such status page.")
    return incident


def set_pinned(session: Session, incident: Incident, entry_id: int, pinned: bool, *,
               by: User | None = None) -> TimelineEntry:
    """Pin a key event above the timeline, or unpin it."""
    entry = session.get(TimelineEntry, entry_id) if 0 < entry_id <= MAX_INT else None
    if entry is None or entry.incident_id != incident.id:
        raise NotFound(f"No timeline entry {entry_id} on {incident.ref}.")
    entry.pinned = bool(pinned)
    session.flush()
    return entry
