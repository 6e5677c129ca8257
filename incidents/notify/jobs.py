"""Notification jobs: declarations, status changes and published post-mortems are announced after their commit;
a daily scan reminds owners (and the channels) of action items that became overdue."""

from __future__ import annotations

import json

from flask import Flask, current_app, has_app_context
from huey import crontab
from sqlalchemy import event
from sqlalchemy.orm import Session

from incidents.database import utcnow
from incidents.extensions import db
from incidents.incident.models import TimelineEntry
from incidents.jobs import enqueue_after_commit, job, periodic
from incidents.notify import services
from incidents.postmortem.models import Postmortem, PostmortemEvent, PostmortemStatus


@job(retries=8, retry_delay=30, backoff=2)
def send_notification(incident_id: int, event_json: str) -> None:
    """Send one event to every recipient still owed it; NotificationIncomplete makes huey retry."""
    services.send_incident_notification(int(incident_id), json.loads(event_json))


def _announce_new_entries(session: Session, _flush_context) -> None:
    # after_flush still lists the flushed objects as new, with their ids: any path that writes a
    # timeline entry (web, API, alerts, jobs) announces it, once its transaction commits.
    if not has_app_context() or not current_app.config["NOTIFY_ON_COMMIT"]:
        return
    for obj in session.new:
        if isinstance(obj, TimelineEntry):
            for ev in services.notification_events_for_timeline_entry(obj):
                enqueue_after_commit(send_notification, obj.incident_id, json.dumps(ev.as_dict()), session=session)
        elif isinstance(obj, PostmortemEvent) and obj.kind == PostmortemStatus.PUBLISHED.value:
            pm = session.get(Postmortem, obj.postmortem_id)
            ev = services.Event.postmortem_published(obj.postmortem_id)
            enqueue_after_commit(send_notification, pm.incident_id, json.dumps(ev.as_dict()), session=session)


def queue_overdue_reminders(today=None) -> int:
    """Queue one notification job per action item that became overdue lately; each sends once (the log)."""
    found = services.overdue_events(db.session, today or utcnow().date())
    for incident_id, ev in found:
        enqueue_after_commit(send_notification, incident_id, json.dumps(ev.as_dict()))
    db.session.commit()
    return len(found)


@periodic(crontab(minute="0", hour="6"))
def scan_overdue_action_items() -> None:
    """Daily at 06:00 UTC: remind owners and channels of items that became overdue (a missed day catches up)."""
    queue_overdue_reminders()


def init_app(app: Flask) -> None:
    if not event.contains(Session, "after_flush", _announce_new_entries):
        event.listen(Session, "after_flush", _announce_new_entries)
