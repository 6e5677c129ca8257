"""Starting a post-mortem and editing it: sections with optimistic versioning, comments, factors and
participants."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import events
from incidents.auth.models import User
from incidents.bounds import get_by_id
from incidents.database import utcnow
from incidents.errors import Conflict, Invalid, NotFound
from incidents.incident.models import Incident
from incidents.postmortem.models import (
    ContributingFactor,
    Participant,
    Postmortem,
    PostmortemSection,
    PostmortemStatus,
    ReviewComment,
    SectionKind,
    SectionRevision,
)
from incidents.postmortem.presentation import seed_timeline
from incidents.postmortem.queries import get_section, postmortem_for
from incidents.postmortem.review import record_event
from incidents.postmortem.templates import get_category, get_template
from incidents.singleline import reject_nul

MAX_BODY = 100_000


class SectionConflict(Conflict):
    """Someone saved the section after this editor loaded it; carries both texts for the merge view."""

    code = "version_conflict"

    def __init__(self, section: PostmortemSection, yours: str, your_version: int):
        author = section.updated_by.name if section.updated_by else "someone"
        super().__init__(
            f"{author} saved \u201c{section.title}\u201d after you loaded it (now version {section.version}). "
            "Nothing was overwritten: merge the two texts and save again."
        )
        self.key, self.title = section.key, section.title
        self.current = {"body": section.body, "version": section.version, "author": author,
                        "updated_at": section.updated_at.isoformat()}
        self.yours = {"body": yours, "version": your_version}


def start_postmortem(session: Session, incident: Incident, template: str | int, *,
                     by: User | None = None) -> Postmortem:
    """One post-mortem per incident, with a copy of the template's sections as they are now."""
    existing = postmortem_for(session, incident)
    if existing is not None:
        raise Conflict(f"{incident.ref} already has a post-mortem (#{existing.id}).", {"postmortem_id": [existing.id]})
    tpl = get_template(session, template)
    if not tpl.active:
        raise Invalid(f"The template {tpl.slug!r} is retired.", {"template": ["Retired template."]})
    now = utcnow()
    pm = Postmortem(incident=incident, template=tpl, template_slug=tpl.slug, template_name=tpl.name,
                    template_version=tpl.version, title=incident.title, created_by=by, created_at=now,
                    status=PostmortemStatus.DRAFT)
    for position, s in enumerate(tpl.sections):
        kind = SectionKind(s["kind"])
        body = seed_timeline(incident) if kind == SectionKind.TIMELINE else ""
        section = PostmortemSection(key=s["key"], position=position, title=s["title"], guidance=s.get("guidance", ""),
                                    kind=kind, required=bool(s.get("required")), body=body, version=1,
                                    updated_by=by, updated_at=now)
        section.revisions.append(SectionRevision(version=1, body=body, author=by, created_at=now))
        pm.sections.append(section)
    seen: set[int] = set()
    for user, role in ((incident.commander, "Incident commander"), (incident.comms_lead, "Communications lead"),
                       (incident.scribe, "Scribe"), (by, "Post-mortem author")):
        if user is not None and user.id not in seen:
            seen.add(user.id)
            pm.participants.append(Participant(user=user, role=role))
    record_event(session, pm, "started", f"Started from the {tpl.name} template (version {tpl.version})", by)
    try:
        with session.begin_nested():  # the unique incident_id settles a race between two starters
            session.add(pm)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(f"{incident.ref} already has a post-mortem.") from None
    refresh_search_text(pm)
    session.flush()
    events.emit(session, "postmortem.started", postmortem_id=pm.id, incident_id=incident.id)
    return pm


def refresh_search_text(pm: Postmortem) -> None:
    parts = [pm.title, pm.incident.ref, pm.template_name]
    parts += [s.body for s in pm.sections]
    parts += [f"{f.category.name} {f.description}" for f in pm.factors]
    parts += [f"{a.title} {a.description}" for a in pm.action_items]
    pm.search_text = "\n".join(p for p in parts if p).lower()


def ensure_editable(pm: Postmortem) -> None:
    if pm.is_published:
        raise Conflict("This post-mortem is published and read-only; an admin can reopen it.")


def _clean_body(body) -> str:
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise Invalid("The body must be text.", {"body": ["Not a string."]})
    reject_nul(body=body)
    body = body.replace("\r\n", "\n")
    if len(body) > MAX_BODY:
        raise Invalid(f"A section holds at most {MAX_BODY} characters.", {"body": ["Too long."]})
    return body


def save_section(session: Session, pm: Postmortem, key: str, body, version, *,
                 by: User | None = None) -> PostmortemSection:
    """Save one section if nobody saved it since `version` was loaded; otherwise raise SectionConflict.

    The compare-and-set is one UPDATE ... WHERE version = :loaded: on PostgreSQL a concurrent writer blocks on
    the row and then sees the new version (0 rows); on SQLite writers are serialised by BEGIN IMMEDIATE."""
    ensure_editable(pm)
    section = get_section(pm, key)
    body = _clean_body(body)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid("The version you loaded is required.", {"version": ["A positive integer."]})
    if version == section.version and body == section.body:
        return section  # nothing changed: no new version
    now = utcnow()
    before = section.body
    result = session.execute(
        sa.update(PostmortemSection)
        .where(PostmortemSection.id == section.id, PostmortemSection.version == version)
        .values(body=body, version=version + 1, updated_by_id=by.id if by else None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(section)
    if result.rowcount != 1:
        raise SectionConflict(section, body, version)
    session.add(SectionRevision(section=section, version=version + 1, body=body, author=by, created_at=now))
    pm.updated_at = now
    refresh_search_text(pm)
    session.flush()
    events.emit(session, "postmortem.updated", postmortem_id=pm.id, changes={f"sections.{key}": [before, body]})
    return section


def add_comment(session: Session, pm: Postmortem, section_key: str, body: str, *,
                by: User | None = None) -> ReviewComment:
    ensure_editable(pm)
    get_section(pm, section_key)
    reject_nul(body=body)
    if not (body or "").strip():
        raise Invalid("A comment cannot be empty.", {"body": ["Required."]})
    if len(body) > 10_000:
        raise Invalid("A comment holds at most 10000 characters.", {"body": ["Too long."]})
    comment = ReviewComment(section_key=section_key, body=body.strip(), author=by,
                            created_at=utcnow())
    pm.comments.append(comment)
    session.flush()
    return comment


def add_factor(session: Session, pm: Postmortem, category: str | int, description: str = "", *,
               by: User | None = None) -> ContributingFactor:
    ensure_editable(pm)
    reject_nul(description=description)
    cat = get_category(session, category) if category not in (None, "") else None
    if cat is None or not cat.active:
        raise Invalid("Choose a contributing-factor category.", {"category": ["Required."]})
    if len(description or "") > 10_000:
        raise Invalid("A description holds at most 10000 characters.", {"description": ["Too long."]})
    factor = ContributingFactor(category=cat, description=(description or "").strip(),
                                created_by_id=by.id if by else None, created_at=utcnow())
    pm.factors.append(factor)
    session.flush()
    refresh_search_text(pm)
    events.emit(session, "postmortem.factor_added", postmortem_id=pm.id, factor_id=factor.id)
    return factor


def remove_factor(session: Session, pm: Postmortem, factor_id: int) -> None:
    ensure_editable(pm)
    factor = next((f for f in pm.factors if f.id == factor_id), None)
    if factor is None:
        raise NotFound("No such contributing factor on this post-mortem.")
    pm.factors.remove(factor)
    session.flush()
    refresh_search_text(pm)
    events.emit(session, "postmortem.factor_removed", postmortem_id=pm.id, factor_id=factor_id)


def add_participant(session: Session, pm: Postmortem, user_id: int | str, role: str = "") -> Participant:
    ensure_editable(pm)
    reject_nul(role=role)
    user = get_by_id(session, User, user_id)
    if user is None:
        raise Invalid("Choose a person.", {"user_id": ["Unknown user."]})
    if any(p.user_id == user.id for p in pm.participants):
        raise Conflict(f"{user.name} is already a participant.", {"user_id": ["Already a participant."]})
    participant = Participant(user=user, role=(role or "").strip()[:120])
    pm.participants.append(participant)
    session.flush()
    return participant


def remove_participant(session: Session, pm: Postmortem, participant_id: int) -> None:
    ensure_editable(pm)
    row = next((p for p in pm.participants if p.id == participant_id), None)
    if row is None:
        raise NotFound("No such participant on this post-mortem.")
    pm.participants.remove(row)
    session.flush()
