"""Named domain events: a service says what happened, other domains react, in one of two phases.

A service calls `emit(session, "incident.declared", incident_id=...)` in the code a reader follows. Each app's
subscribers register in their domain's `init_app` with `subscribe(app, name, phase, handler)`:

- `IN_TRANSACTION`: `handler(session, event)` runs inside `emit`, in the emitter's transaction. It may only add
  rows that belong to the same change (an outbox row, an audit row, a search-index row), so they commit or roll
  back with it.
- `AFTER_COMMIT`: `handler(event)` runs once the outermost transaction commits, never for a change that rolled
  back (a rolled-back savepoint drops what was emitted inside it). It may only enqueue jobs: anything that
  leaves the process goes through a job.

Events carry ids and plain values, never rows. `EVENTS` is the catalogue: emitting a name it lacks is a bug.
An after-commit handler runs in the context of the code that emitted (contextvars: the request id a job it
queues carries), even when a batch commits the work of several requests at once.
`run_after_commit` is the one after-commit mechanism; `jobs.enqueue_after_commit` is built on it.

The subscribers (tests/test_events.py holds this table to the code):

    incident.declared          notify.jobs.announce_declared         after commit: queue the "opened" notification
                               slack.jobs.open_channel               after commit: queue the channel's setup
    incident.status_changed    notify.jobs.announce_status_change    after commit: queue the status notification
    incident.update_posted     notify.jobs.announce_update           after commit: queue the update's notification
    incident.status_changed, .severity_changed, .role_assigned, .update_posted, .updated
                               slack.jobs.follow_change              after commit: queue the pinned summary's refresh
    postmortem.published       notify.jobs.announce_publication      after commit: queue the notification
                               tracker.jobs.export_on_publish        in the transaction: outbox rows (auto export)
    action_item.overdue        notify.jobs.remind_overdue            after commit: queue the owner's reminder
    incident.declared, .note_added, .updated (title, summary)
                               search.subscribers.index_incident     in the transaction: the incident's document
    postmortem.started, .updated, .factor_added, .factor_removed
                               search.subscribers.index_postmortem   in the transaction: the post-mortem's document
    action_item.created, .updated (title, description), .deleted
                               search.subscribers.index_action_item  in the transaction: its post-mortem's document
    incident.declared, .status_changed, .updated; postmortem.started, .published, .reopened, .factor_added,
    .factor_removed; action_item.created, .updated, .deleted
                               insights.rollup.on_*                  in the transaction: mark the incident's day
                                                                     changed (its roll-up version, at COMMIT)
    incident.declared, .status_changed, .role_assigned, .updated; postmortem.started, .published, .reopened, .updated,
    .factor_added, .factor_removed, .template_changed, .category_changed, .phrase_changed; action_item.created,
    .updated, .deleted;
    alert.integration_created, .integration_updated, .integration_token_rotated; tracker.settings_changed;
    report.recipients_changed; auth.*  (every auth event)
                               audit.recording.record                in the transaction: the audit row
    the others                 none yet (incident.severity_changed: its incident.updated carries the severity;
                               alert.received is per delivery, never audited)
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

IN_TRANSACTION = "in_transaction"
AFTER_COMMIT = "after_commit"
PHASES = (IN_TRANSACTION, AFTER_COMMIT)

# name -> what it means and what it carries. Field edits are `<domain>.updated` with
# changes={field: [before, after]} (JSON-ready values).
EVENTS: dict[str, str] = {
    "incident.declared": "an incident was opened, by a person or an alert (incident_id, severity, started_at: ISO, "
                         "team_id, service_id)",
    "incident.status_changed": "an incident moved through the status machine (incident_id, entry_id, before, after)",
    "incident.severity_changed": "an incident's severity changed (incident_id, before, after)",
    "incident.role_assigned": "a commander, communications lead or scribe was set or cleared "
                              "(incident_id, role, user_id or None, before_user_id or None, entry_id)",
    "incident.update_posted": "a status update for stakeholders was posted (incident_id, update_id, entry_id)",
    "incident.note_added": "a note was added to an incident's timeline (incident_id, entry_id)",
    "incident.updated": "an incident's descriptive fields were edited (incident_id, changes)",
    "alert.received": "a delivery was accepted for an alert (alert_id, delivery_id, kind, incident_id)",
    "postmortem.started": "a post-mortem was started from a template (postmortem_id, incident_id)",
    "postmortem.published": "a post-mortem was published (postmortem_id, incident_id)",
    "postmortem.reopened": "an admin reopened a published post-mortem as a draft (postmortem_id, incident_id, reason)",
    "postmortem.updated": "a post-mortem's section was saved (postmortem_id, changes: {'sections.<key>': [...]})",
    "postmortem.factor_added": "a contributing factor was added to a post-mortem (postmortem_id, factor_id)",
    "postmortem.factor_removed": "a contributing factor was removed from a post-mortem (postmortem_id, factor_id)",
    "alert.integration_created": "a webhook integration was made (integration_id, source, name)",
    "alert.integration_updated": "an integration's settings or routing rules were edited (integration_id, changes); "
                                 "a signing secret shows only as set or changed",
    "alert.integration_token_rotated": "an integration got a new token, the old one stops working "
                                       "(integration_id, changes: {'token_hint': [old, new]})",
    "postmortem.template_changed": "a post-mortem template was made or edited (template_id, changes)",
    "postmortem.category_changed": "a contributing-factor category was made or edited (category_id, changes)",
    "postmortem.phrase_changed": "a blameless coach phrase was added or edited (phrase_id, changes)",
    "action_item.overdue": "the daily scan found an item overdue since `since`, an ISO date "
                           "(action_item_id, incident_id, since)",
    "action_item.updated": "an action item's fields were edited (action_item_id, changes)",
    "action_item.created": "an action item was added (action_item_id, postmortem_id, changes: its fields)",
    "action_item.deleted": "an action item was removed (action_item_id, postmortem_id, changes: its fields)",
    "tracker.settings_changed": "a team's Shortcut card settings were saved (team_id or None, changes)",
    "report.recipients_changed": "the weekly report's recipients were replaced (team_id or None, changes)",
    "auth.signed_in": "a person signed in (user_id, method: password or oidc, address)",
    "auth.sign_in_failed": "a sign-in was refused (email, address, reason: a short code such as bad_password)",
    "auth.user_created": "an account was made (user_id, role, via: admin, cli, setup, invitation, sso)",
    "auth.user_updated": "an account was edited (user_id, changes, via: admin, cli, sso, reset); a password shows "
                         "only as changed",
    "auth.token_created": "an API token was made (token_id, user_id, scope, expires_at: ISO or None)",
    "auth.token_revoked": "an API token was revoked (token_id, user_id)",
}

_EXTENSION = "incidents.events"
_PENDING = "incidents.events.after_commit"


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


@dataclass
class _Subscription:
    phase: str
    handler: Callable[..., Any]


class Registry:
    """One app's subscribers, by event name, in registration order."""

    def __init__(self) -> None:
        self.subscribers: dict[str, list[_Subscription]] = {}

    def add(self, name: str, phase: str, handler: Callable[..., Any]) -> None:
        if name not in EVENTS:
            raise ValueError(f"unknown event {name!r}; add it to incidents.events.EVENTS")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        subs = self.subscribers.setdefault(name, [])
        if not any(s.handler is handler and s.phase == phase for s in subs):  # init_app may run twice
            subs.append(_Subscription(phase, handler))

    def of(self, name: str, phase: str) -> list[Callable[..., Any]]:
        return [s.handler for s in self.subscribers.get(name, ()) if s.phase == phase]


def registry(app: Flask | None = None) -> Registry:
    app = app or current_app
    return app.extensions.setdefault(_EXTENSION, Registry())


def subscribe(app: Flask, name: str, phase: str, handler: Callable[..., Any]) -> None:
    """Register `handler` for `name` in `phase` (see the module docstring for what each phase may do)."""
    registry(app).add(name, phase, handler)


def subscribers() -> dict[str, list[tuple[str, str]]]:
    """The current app's subscribers as {event: [(phase, "module.function"), ...]}, every event listed."""
    reg = registry()
    return {name: [(s.phase, f"{s.handler.__module__}.{s.handler.__qualname__}")
                   for s in reg.subscribers.get(name, ())] for name in EVENTS}


def emit(session: Session, name: str, /, **data: Any) -> Event:
    """Announce `name`: in-transaction handlers run now, after-commit handlers once the change commits."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; add it to incidents.events.EVENTS")
    ev = Event(name, data)
    if not has_app_context():
        return ev  # scripts outside an app (data generators) have no subscribers
    reg = registry()
    for handler in reg.of(name, IN_TRANSACTION):
        handler(session, ev)
    for handler in reg.of(name, AFTER_COMMIT):
        run_after_commit(session, _bind(handler, ev))
    return ev


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list]:
    """The `changes` of an event: {field: [before, after]} for each field whose value differs (a field missing on
    one side is None there, so a creation diffs against {} and a deletion against {})."""
    return {k: [before.get(k), after.get(k)] for k in {**before, **after} if before.get(k) != after.get(k)}


def _bind(handler: Callable[[Event], Any], ev: Event) -> Callable[[], Any]:
    context = contextvars.copy_context()  # the emitter's request id, not that of whoever commits

    def run() -> Any:
        return context.run(handler, ev)

    run.__qualname__ = f"{getattr(handler, '__qualname__', handler)}({ev.name})"
    return run


# --- after commit -----------------------------------------------------------------------------------

def run_after_commit(session: Session, callback: Callable[[], Any]) -> None:
    """Call `callback()` once `session`'s outermost transaction commits; a rollback drops it, and so does the
    rollback of a savepoint it was registered inside."""
    _listen_once()
    # None before autobegin: the next transaction is the one that commits it (no connection is taken for it,
    # which on SQLite could mean the write lock).
    tx = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING, []).append((tx, callback))


def pending(session: Session) -> list[Callable[[], Any]]:
    """Callbacks waiting for this session's commit."""
    return [cb for _tx, cb in session.info.get(_PENDING, ())]


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a released savepoint: SQLAlchemy reports it as a commit, but nothing is durable yet
    for _tx, callback in session.info.pop(_PENDING, ()):
        try:
            callback()
        except Exception:
            # The change is committed; failing the caller now would only hide that (outboxes repair jobs).
            log.exception("after-commit %s failed", getattr(callback, "__qualname__", callback))


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    # A rolled-back savepoint takes back what was emitted inside it (and inside savepoints within it).
    if not previous.nested or _PENDING not in session.info:
        return
    session.info[_PENDING] = [(tx, cb) for tx, cb in session.info[_PENDING] if not _within(tx, previous)]


def _within(tx: SessionTransaction | None, ancestor: SessionTransaction) -> bool:
    while tx is not None:
        if tx is ancestor:
            return True
        tx = tx.parent
    return False


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without a commit (rollback or close): nothing of it is announced.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def _listen_once() -> None:
    if not sa_event.contains(Session, "after_commit", _after_commit):
        sa_event.listen(Session, "after_commit", _after_commit)
        sa_event.listen(Session, "after_soft_rollback", _after_soft_rollback)
        sa_event.listen(Session, "after_transaction_end", _after_transaction_end)
