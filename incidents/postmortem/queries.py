"""Reading post-mortems: one by id, by incident or section, the filtered list and the incidents still waiting
for one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.bounds import get_by_id
from incidents.catalog import services as catalog
from incidents.database import Page, paginate
from incidents.errors import Invalid, NotFound
from incidents.incident.models import Incident, Severity, Status
from incidents.postmortem.models import Postmortem, PostmortemSection, PostmortemStatus
from incidents.singleline import reject_nul


def get_postmortem(session: Session, postmortem_id: int | str) -> Postmortem:
    pm = get_by_id(session, Postmortem, postmortem_id)
    if pm is None:
        raise NotFound(f"No post-mortem {postmortem_id}.")
    return pm


def postmortem_for(session: Session, incident: Incident) -> Postmortem | None:
    return session.scalar(sa.select(Postmortem).where(Postmortem.incident_id == incident.id))


def get_section(pm: Postmortem, key: str) -> PostmortemSection:
    section = pm.section(key)
    if section is None:
        raise NotFound(f"Post-mortem #{pm.id} has no section {key!r}.")
    return section


def needs_postmortem_prompt(incident: Incident, pm: Postmortem | None) -> bool:
    """SEV1/SEV2 incidents that are resolved or closed ask for a post-mortem until one exists."""
    return (pm is None and incident.severity in (Severity.SEV1, Severity.SEV2)
            and incident.status in (Status.RESOLVED, Status.CLOSED))


def incidents_awaiting_postmortem(session: Session, limit: int = 10) -> list[Incident]:
    """Resolved or closed SEV1/SEV2 incidents with no post-mortem yet, most recently resolved first."""
    return list(session.scalars(
        sa.select(Incident)
        .where(Incident.severity.in_([Severity.SEV1, Severity.SEV2]),
               Incident.status.in_([Status.RESOLVED, Status.CLOSED]),
               ~sa.exists().where(Postmortem.incident_id == Incident.id))
        .order_by(Incident.resolved_at.desc(), Incident.id.desc()).limit(limit)
    ))


@dataclass
class PostmortemFilter:
    status: list[str] | None = None
    team: str | None = None
    service: str | None = None
    since: date | None = None
    until: date | None = None
    q: str | None = None


def list_postmortems(session: Session, f: PostmortemFilter, page: int = 1, per_page: int = 25) -> Page:
    """Newest first; the period is the incident's impact start, `q` searches every section's text."""
    reject_nul(q=f.q, team=f.team, service=f.service)
    stmt = (sa.select(Postmortem).join(Incident, Postmortem.incident_id == Incident.id)
            .order_by(Postmortem.created_at.desc(), Postmortem.id.desc()))
    if f.status:
        try:
            stmt = stmt.where(Postmortem.status.in_([PostmortemStatus(s) for s in f.status]))
        except ValueError:
            raise Invalid("Unknown status.", {"status": [f"One of: {', '.join(PostmortemStatus)}."]}) from None
    if f.team:
        stmt = stmt.where(Incident.team_id == catalog.get_team(session, f.team).id)
    if f.service:
        stmt = stmt.where(Incident.service_id == catalog.get_service(session, f.service).id)
    if f.since:
        stmt = stmt.where(Incident.started_at >= datetime.combine(f.since, time.min, UTC))
    if f.until:
        stmt = stmt.where(Incident.started_at < datetime.combine(f.until + timedelta(days=1), time.min, UTC))
    if f.q and f.q.strip():
        like = "%" + f.q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(Postmortem.search_text.like(like, escape="\\"))
    return paginate(session, stmt, page, per_page)
