"""Shortcut jobs: the export of one action item, the retry sweep of the outbox, and the reconcile pass.

Each owns its transactions: no transaction stays open across a call to Shortcut. Publishing a post-mortem
exports its items when the team asked for it: an in-transaction subscriber of `postmortem.published`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import Flask, current_app
from huey import crontab
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item.models import ActionItem
from incidents.auth.models import User
from incidents.database import utcnow
from incidents.extensions import db
from incidents.jobs import enqueue_after_commit, job, periodic
from incidents.postmortem.models import Postmortem
from incidents.tracker import services
from incidents.tracker.models import ExportStatus, ShortcutExport
from incidents.tracker.shortcut import (
    CircuitOpen,
    NotFound,
    RateLimited,
    ShortcutError,
    Unprocessable,
    client_from_config,
    create_story_once,
    member_id_for_email,
)
from incidents.tracker.webhook import StoryChange

log = logging.getLogger(__name__)


@job(retries=3, retry_delay=60, backoff=2)
def export_action_item(export_id: int) -> str:
    """Create the item's story exactly once; Shortcut failures are kept on the row and retried by the sweep."""
    return send_export(int(export_id))


@periodic(crontab(minute="*"))
def retry_pending_exports() -> int:
    """The outbox sweep: re-queue every pending export whose retry time has come (and no run holds)."""
    ids = services.due_export_ids(db.session)
    db.session.commit()
    for export_id in ids:
        enqueue_after_commit(export_action_item, export_id)
    db.session.commit()
    return len(ids)


@periodic(crontab(minute="*/10"))
def reconcile_exports() -> int:
    """Read the story of every exported open item (a batch per run) and repair what a missed webhook left."""
    return reconcile()


def queue_export(session: Session, item: ActionItem, config, *, by: User | None = None) -> ShortcutExport:
    """Record the export request (outbox row, in the caller's transaction) and queue the job after its commit."""
    export, queue = services.request_export(session, item, config, by=by)
    if queue:
        enqueue_after_commit(export_action_item, export.id, session=session)
    return export


def queue_postmortem_export(session: Session, pm: Postmortem, config, *,
                            by: User | None = None) -> list[ShortcutExport]:
    """Every item of the post-mortem but won't-do ones ("send all")."""
    return [queue_export(session, item, config, by=by) for item in services.exportable_items(pm)]


def send_export(export_id: int, now: datetime | None = None) -> str:
    """One attempt: claim, build the card, create it once, record; sent, adopted, pending, failed or skipped."""
    session = db.session
    config = current_app.config
    export = services.claim(session, export_id, float(config["SHORTCUT_EXPORT_LEASE"]), now)
    if export is None:
        session.rollback()
        return "skipped"
    session.commit()  # the claim is visible to other workers before the network call
    item = export.action_item
    try:
        state_id = services.target_state_id(session, item.postmortem.incident.team_id, config)
        if state_id is None:
            raise ShortcutError("No workflow state for new cards: choose one on the Shortcut settings page "
                                "or set INCIDENTS_SHORTCUT_WORKFLOW_STATE_ID.")
        params = services.build_card(item, config, workflow_state_id=state_id)
        owner_email = item.owner.email if item.owner is not None else None
        session.commit()  # no transaction (nor SQLite's write lock) is held while Shortcut answers
        client = client_from_config(config)
        try:
            owner = member_id_for_email(client.list_members(), owner_email) if owner_email else None
            if owner:
                params["owner_ids"] = [owner]
            result = create_story_once(client, params)
        finally:
            client.close()
    except (Unprocessable, NotFound) as e:
        services.record_failure(session, export, e.message, permanent=True, config=config)
        session.commit()
        return "failed"
    except RateLimited as e:
        retry_at = utcnow() + timedelta(seconds=e.retry_after)
        services.record_failure(session, export, e.message, retry_at=retry_at, config=config)
        session.commit()
        return "pending"
    except CircuitOpen as e:
        services.record_failure(session, export, e.message, retry_at=e.retry_at, config=config)
        session.commit()
        return "pending"
    except ShortcutError as e:  # not configured, auth, unavailable, unknown outcome: keep trying
        services.record_failure(session, export, f"{type(e).__name__}: {e.message}", config=config)
        session.commit()
        return "pending"
    log.info("action item %s: story %s %s", export.action_item_id, result.id,
             "created" if result.created else "adopted")
    services.record_sent(session, export, result.story)
    session.commit()
    return "sent" if result.created else "adopted"


def reconcile(limit: int | None = None) -> int:
    """Returns how many items changed; stops early when Shortcut refuses more calls for now."""
    session = db.session
    config = current_app.config
    if not services.configured(config):
        return 0
    batch = services.reconcile_candidates(session, limit or int(config["SHORTCUT_RECONCILE_BATCH"]))
    targets = [(export.id, export.story_id) for export in batch]
    session.commit()
    changed = 0
    client = client_from_config(config)
    try:
        for export_id, story_id in targets:
            try:
                story = client.get_story(story_id)
                change = services.change_from_story(story)
            except NotFound:
                change = StoryChange(story_id=story_id, action="reconcile", deleted=True)
            except (RateLimited, CircuitOpen, ShortcutError) as e:
                log.warning("reconcile stopped at story %s: %s", story_id, e)
                break
            export = services.get_export(session, export_id)
            if export.status == ExportStatus.SENT and services.apply_story_change(session, export, change):
                changed += 1
            session.commit()
    finally:
        client.close()
    return changed


def export_on_publish(session: Session, event: events.Event) -> None:
    """When the team asked for it, every item of the post-mortem just published gets its outbox row in the
    publishing transaction (so it rolls back with it), and its job after the commit."""
    config = current_app.config
    if not services.configured(config):
        return
    pm = session.get(Postmortem, event["postmortem_id"])
    if pm is None or not services.auto_export_enabled(session, pm.incident.team_id):
        return
    queue_postmortem_export(session, pm, config)


def init_app(app: Flask) -> None:
    events.subscribe(app, "postmortem.published", events.IN_TRANSACTION, export_on_publish)
