"""Teams and services: the catalogue incidents, alerts and reports hang off."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from incidents.bounds import get_by_key
from incidents.catalog.models import Service, Team
from incidents.errors import Conflict, Invalid, NotFound
from incidents.outbound import check_user_url
from incidents.singleline import check_single_line

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64]


def _check(session: Session, model, *, slug: str, name: str, current_id: int | None = None) -> None:
    if not name.strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    check_single_line(name=name.strip())
    if not _SLUG.fullmatch(slug):  # match() with $ let "slug\n" through
        raise Invalid("Slug must be lowercase letters, digits and dashes.", {"slug": ["Invalid slug."]})
    clash = session.scalar(sa.select(model.id).where(model.slug == slug))
    if clash is not None and clash != current_id:
        raise Conflict(f"The slug {slug!r} is taken.", {"slug": ["Already in use."]})


def list_teams(session: Session) -> list[Team]:
    """Teams by name, their services loaded in one more query (the teams page lists both)."""
    return list(session.scalars(sa.select(Team).options(selectinload(Team.services)).order_by(Team.name)))


def list_services(session: Session, team_id: int | None = None) -> list[Service]:
    stmt = sa.select(Service).order_by(Service.name)
    if team_id:
        stmt = stmt.where(Service.team_id == team_id)
    return list(session.scalars(stmt))


def get_team(session: Session, key: str | int) -> Team:
    team = _by_key(session, Team, key)
    if team is None:
        raise NotFound(f"No team {key!r}.")
    return team


def get_service(session: Session, key: str | int) -> Service:
    service = _by_key(session, Service, key)
    if service is None:
        raise NotFound(f"No service {key!r}.")
    return service


def _by_key(session: Session, model, key: str | int):
    return get_by_key(session, model, key, model.slug)


def create_team(session: Session, *, name: str, slug: str | None = None, description: str = "") -> Team:
    slug = (slug or slugify(name)).strip()
    _check(session, Team, slug=slug, name=name)
    team = Team(name=name.strip(), slug=slug, description=description)
    session.add(team)
    session.flush()
    return team


def update_team(session: Session, team: Team, **changes) -> Team:
    name = changes.get("name", team.name)
    slug = changes.get("slug", team.slug)
    _check(session, Team, slug=slug, name=name, current_id=team.id)
    team.name, team.slug = name.strip(), slug
    if "description" in changes:
        team.description = changes["description"] or ""
    if "slack_webhook_url" in changes:
        team.slack_webhook_url = _webhook_url(changes["slack_webhook_url"])
    session.flush()
    return team


def _webhook_url(raw: str | None) -> str | None:
    """A Slack incoming-webhook URL (a user-stored URL: see incidents/outbound.py), or None to clear it."""
    return check_user_url(raw, "slack_webhook_url")


def create_service(session: Session, *, name: str, team_id: int, slug: str | None = None,
                   description: str = "") -> Service:
    slug = (slug or slugify(name)).strip()
    _check(session, Service, slug=slug, name=name)
    team = get_team(session, team_id) if team_id else None
    if team is None:
        raise Invalid("A service needs an owning team.", {"team_id": ["Required."]})
    service = Service(name=name.strip(), slug=slug, description=description, team=team)
    session.add(service)
    session.flush()
    return service


def update_service(session: Session, service: Service, **changes) -> Service:
    name = changes.get("name", service.name)
    slug = changes.get("slug", service.slug)
    _check(session, Service, slug=slug, name=name, current_id=service.id)
    service.name, service.slug = name.strip(), slug
    if "description" in changes:
        service.description = changes["description"] or ""
    if changes.get("team_id"):
        service.team = get_team(session, changes["team_id"])
    session.flush()
    return service
