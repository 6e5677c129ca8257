"""Notification jobs: declarations, status changes and published post-mortems are announced after their commit;
a daily scan reminds owners (and the channels) of action items that became overdue.

The announcements are after-commit subscribers of domain events (registered in `init_app`): each only queues
`send_notification`, which decides who hears it and sends each delivery once."""

from __future__ import annotations

import json
from datetime import date

from flask import Flask, current_app
from huey import crontab

from incidents import events
from incidents.action_item import services as action_items
from incidents.database import utcnow
from incidents.extensions import db
from incidents.jobs import enqueue_now, job, periodic
from incidents.notify import services


@job(retries=8, retry_delay=30, backoff=2)
def send_notification(incident_id: int, event_json: str) -> None:
    """Send one event to every recipient still owed it; NotificationIncomplete makes huey retry."""
    services.send_incident_notification(int(incident_id), json.loads(event_json))


def _queue(incident_id: int, note: services.Event) -> None:
    enqueue_now(send_notification, incident_id, json.dumps(note.as_dict()))


def _automatic() -> bool:
    """NOTIFY_ON_COMMIT switches the incident and post-mortem announcements (most tests turn them off)."""
    return bool(current_app.config["NOTIFY_ON_COMMIT"])


def announce_declared(event: events.Event) -> None:
    if _automatic():
        _queue(event["incident_id"], services.Event.opened(event["incident_id"]))


def announce_status_change(event: events.Event) -> None:
    if _automatic():
        _queue(event["incident_id"], services.Event.status_changed(event["entry_id"], event["before"], event["after"]))


def announce_update(event: events.Event) -> None:
    if _automatic():
        _queue(event["incident_id"], services.Event.status_update(event["update_id"]))


def announce_publication(event: events.Event) -> None:
    if _automatic():
        _queue(event["incident_id"], services.Event.postmortem_published(event["postmortem_id"]))


def remind_overdue(event: events.Event) -> None:
    _queue(event["incident_id"],
           services.Event.action_item_overdue(event["action_item_id"], date.fromisoformat(event["since"])))


def queue_overdue_reminders(today: date | None = None) -> int:
    """Announce every action item that became overdue lately (one reminder job each, after the commit); each
    reminder is sent once (the notification log)."""
    found = action_items.announce_overdue(db.session, today or utcnow().date())
    db.session.commit()
    return found


@periodic(crontab(minute="0", hour="6"))
def scan_overdue_action_items() -> None:
    """Daily at 06:00 UTC: remind owners and channels of items that became overdue (a missed day catches up)."""
    queue_overdue_reminders()


def init_app(app: Flask) -> None:
    events.subscribe(app, "incident.declared", events.AFTER_COMMIT, announce_declared)
    events.subscribe(app, "incident.status_changed", events.AFTER_COMMIT, announce_status_change)
    events.subscribe(app, "incident.update_posted", events.AFTER_COMMIT, announce_update)
    events.subscribe(app, "postmortem.published", events.AFTER_COMMIT, announce_publication)
    events.subscribe(app, "action_item.overdue", events.AFTER_COMMIT, remind_overdue)
