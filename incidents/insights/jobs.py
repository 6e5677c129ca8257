"""The insights roll-up's periodic job: store the parts of the days and months that changed or are new."""

from __future__ import annotations

from huey import crontab

from incidents.database import utcnow
from incidents.extensions import db
from incidents.insights import rollup
from incidents.jobs import periodic


@periodic(crontab(minute="*/10"))
def refresh_insights() -> None:
    """Every ten minutes: a no-op read of the versions when nothing changed; a day's worth of counting per
    changed day otherwise (the first run after an upgrade counts every day once)."""
    rollup.refresh(db.session, utcnow().date())
