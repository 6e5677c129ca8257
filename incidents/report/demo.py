"""Demo debt history for `incidents demo`: about twelve weeks of action items opened, repaid, written off and
left overdue, and one repeat incident, so the ledger, its dashboard and the weekly report have a story to tell."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.action_item import services as items
from incidents.action_item.models import ActionItem, ItemStatus
from incidents.auth.models import Role, User
from incidents.incident import services as incidents
from incidents.incident.models import Incident, Status
from incidents.postmortem import services as pm_services
from incidents.postmortem.models import Postmortem

_WORK = [("Add a timeout and retry budget to the client", "prevent", 3),
         ("Alert on saturation before it pages", "detect", 2),
         ("Write the runbook for this failure", "process", 1),
         ("Load-test the new limit", "prevent", 5),
         ("Backfill the missing dashboards", "detect", 2),
         ("Automate the manual fail-over step", "mitigate", 8),
         ("Remove the deprecated code path", "repair", 3)]
_WRITE_OFFS = ["Superseded by the platform migration.", "The service is being retired next quarter.",
               "Cost outweighs the risk after the redesign."]


def load_debt_history(session: Session, rng: random.Random, now: datetime) -> str:
    """Back-date the demo's action items and add more on older incidents; safe to run on the demo's data once."""
    people = list(session.scalars(sa.select(User).where(User.active.is_(True), User.role != Role.VIEWER)
                                  .order_by(User.id)))
    if not people:
        return "Debt history: skipped (nobody to own action items)."
    start = now - timedelta(weeks=12)
    # The post-mortems the earlier step wrote: their items were created "now"; move them to after the incident.
    for item in session.scalars(sa.select(ActionItem).join(Postmortem).order_by(ActionItem.id)):
        incident = item.postmortem.incident
        made = min((incident.resolved_at or incident.created_at) + timedelta(hours=rng.uniform(4, 48)), now)
        item.created_at = item.updated_at = made
        if item.status.is_closed:
            item.closed_at = min(made + timedelta(days=rng.uniform(2, 10)), now)
    # Lightweight post-mortems with two or three items on every older resolved incident that has none.
    older = list(session.scalars(
        sa.select(Incident).where(Incident.status.in_([Status.RESOLVED, Status.CLOSED]), Incident.created_at >= start,
                                  ~sa.exists().where(Postmortem.incident_id == Incident.id))
        .order_by(Incident.created_at)))
    added = {ItemStatus.DONE: 0, ItemStatus.WONT_DO: 0, ItemStatus.OPEN: 0}
    for incident in older:
        pm = pm_services.start_postmortem(session, incident, "lightweight", by=incident.commander)
        for title, kind, points in rng.sample(_WORK, rng.randint(2, 3)):
            made = min((incident.resolved_at or incident.created_at) + timedelta(hours=rng.uniform(2, 72)), now)
            due = (made + timedelta(days=rng.randint(7, 35))).date()
            item = items.create_action_item(session, pm, title=title, type=kind, estimate=points, at=made,
                                            owner_id=rng.choice(people).id, due_date=due,
                                            priority=rng.choice(["high", "medium", "low"]))
            fate = rng.random()
            closed = made + timedelta(days=rng.uniform(3, 40))
            if fate < 0.55 and closed < now:
                items.update_action_item(session, item, status="done", at=closed)
            elif fate < 0.68 and closed < now:
                items.update_action_item(session, item, status="wont_do", wont_do_reason=rng.choice(_WRITE_OFFS),
                                         at=closed)
            elif fate < 0.8 and closed < now:
                items.update_action_item(session, item, status="in_progress", at=closed)
            added[item.status if item.status.is_closed else ItemStatus.OPEN] += 1
    session.flush()
    repeat = _repeat_incident(session, now)
    overdue = session.scalar(sa.select(sa.func.count()).select_from(ActionItem).where(
        ActionItem.status.in_([ItemStatus.OPEN, ItemStatus.IN_PROGRESS]), ActionItem.due_date < now.date()))
    return (f"Debt history: {len(older)} more post-mortems, {sum(added.values())} more action items over 12 weeks "
            f"({added[ItemStatus.DONE]} done, {added[ItemStatus.WONT_DO]} won't do, {added[ItemStatus.OPEN]} open); "
            f"{overdue} overdue; repeat incident {repeat}.")


def _repeat_incident(session: Session, now: datetime) -> str:
    """Declare the debt that bit back: a new incident on the service of the oldest post-mortem with open items."""
    source = session.scalar(
        sa.select(Incident).join(Postmortem, Postmortem.incident_id == Incident.id)
        .where(sa.exists().where(ActionItem.postmortem_id == Postmortem.id,
                                 ActionItem.status.in_([ItemStatus.OPEN, ItemStatus.IN_PROGRESS]),
                                 ActionItem.created_at < now - timedelta(days=4)),
               Incident.service_id.is_not(None))
        .order_by(Incident.created_at).limit(1))
    if source is None:
        return "none (no open debt)"
    when = now - timedelta(days=3)
    incident = incidents.create_incident(
        session, title=f"{source.title} (again)", severity=source.severity, summary=source.summary,
        service_id=source.service_id, tags=source.tags, started_at=when - timedelta(minutes=12), detected_at=when,
        created_by=source.commander)
    incident.created_at = when
    incidents.acknowledge_incident(session, incident, by=source.commander, at=when + timedelta(minutes=6))
    incidents.resolve_incident(session, incident, by=source.commander, at=when + timedelta(minutes=95))
    session.flush()
    return f"{incident.ref} (same service as {source.ref})"
