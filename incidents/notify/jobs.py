"""Notification jobs: every new declaration or status change is announced after its commit."""

from __future__ import annotations

import json

from flask import Flask, current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from incidents.incident.models import TimelineEntry
from incidents.jobs import enqueue_after_commit, job
from incidents.notify import services


@job(retries=8, retry_delay=30, backoff=2)
def send_notification(incident_id: int, event_json: str) -> None:
    """Send one event to every recipient still owed it; NotificationIncomplete makes huey retry."""
    services.send_incident_notification(int(incident_id), json.loads(event_json))


def _announce_new_entries(session: Session, _flush_context) -> None:
    # after_flush still lists the flushed objects as new, with their ids: any path that writes a
    # timeline entry (web, API, alerts, jobs) announces it, once its transaction commits.
    if not has_app_context() or not current_app.config.get("NOTIFY_ON_COMMIT", True):
        return
    for obj in session.new:
        if isinstance(obj, TimelineEntry):
            for ev in services.notification_events_for_timeline_entry(obj):
                enqueue_after_commit(send_notification, obj.incident_id, json.dumps(ev.as_dict()), session=session)


def init_app(app: Flask) -> None:
    if not event.contains(Session, "after_flush", _announce_new_entries):
        event.listen(Session, "after_flush", _announce_new_entries)
