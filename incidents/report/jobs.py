"""The weekly report's periodic job: every 15 minutes, send what is due and not yet sent (catching up)."""

from __future__ import annotations

from flask import current_app
from huey import crontab

from incidents.database import utcnow
from incidents.extensions import db
from incidents.jobs import periodic
from incidents.report import services


@periodic(crontab(minute="*/15"))
def send_weekly_reports() -> None:
    """Sends the due week's report to every recipient the delivery log says is still owed it.

    Failures stay in the log as failed and are retried by the next tick; two workers at once send each once."""
    services.send_due_reports(db.session, current_app.config, now=utcnow())
