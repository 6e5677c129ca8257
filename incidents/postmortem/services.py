"""Post-mortem use cases: templates, the guided sections with optimistic versioning, review and publishing."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.auth.models import Role, User
from incidents.bounds import get_by_id
from incidents.catalog import services as catalog
from incidents.database import Page, paginate, utcnow
from incidents.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound
from incidents.formatting import format_duration
from incidents.incident.models import EntryKind, Incident, Severity, Status
from incidents.postmortem.defaults import ensure_defaults
from incidents.postmortem.models import (
    ContributingFactor,
    FactorCategory,
    Participant,
    Postmortem,
    PostmortemEvent,
    PostmortemSection,
    PostmortemStatus,
    PostmortemTemplate,
    ReviewComment,
    SectionKind,
    SectionRevision,
)
from incidents.singleline import has_nul, reject_nul

MAX_BODY = 100_000
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


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


class QualityGatesFailed(Invalid):
    code = "quality_gates"

    def __init__(self, missing: list[dict]):
        super().__init__(f"{len(missing)} thing(s) must be fixed before publishing.")
        self.missing = missing


# --- templates -----------------------------------------------------------------------------------

def list_templates(session: Session, *, include_inactive: bool = False) -> list[PostmortemTemplate]:
    ensure_defaults(session)
    stmt = sa.select(PostmortemTemplate).order_by(PostmortemTemplate.builtin.desc(), PostmortemTemplate.name)
    if not include_inactive:
        stmt = stmt.where(PostmortemTemplate.active.is_(True))
    return list(session.scalars(stmt))


def _by_key(session: Session, model, key: str | int, what: str):
    """A seeded row by id or slug (templates and factor categories are addressed both ways)."""
    reject_nul(**{what.split()[-1]: key})
    ensure_defaults(session)
    if isinstance(key, int) or str(key).isdigit():
        row = get_by_id(session, model, key)
    else:
        row = session.scalar(sa.select(model).where(model.slug == str(key)))
    if row is None:
        raise NotFound(f"No {what} {key!r}.")
    return row


def _new_slug(session: Session, model, name: str, slug: str | None) -> str:
    """A valid, unused slug for a new template or category, derived from the name unless given."""
    reject_nul(name=name, slug=slug)
    ensure_defaults(session)
    if not (name or "").strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    slug = (slug or catalog.slugify(name)).strip()
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,63}$", slug):
        raise Invalid("Slug must be lowercase letters, digits and dashes.", {"slug": ["Invalid slug."]})
    if session.scalar(sa.select(model.id).where(model.slug == slug)):
        raise Conflict(f"The slug {slug!r} is taken.", {"slug": ["Already in use."]})
    return slug


def get_template(session: Session, key: str | int) -> PostmortemTemplate:
    return _by_key(session, PostmortemTemplate, key, "post-mortem template")


def clean_sections(raw) -> list[dict]:
    """Validate a template's section list; errors name the section by its position (1-based)."""
    if not isinstance(raw, list) or not raw:
        raise Invalid("A template needs at least one section.", {"sections": ["At least one section."]})
    out, errors, seen = [], {}, set()
    for i, s in enumerate(raw, 1):
        if not isinstance(s, dict):
            errors[f"sections.{i}"] = ["Not an object."]
            continue
        key = str(s.get("key") or "").strip().lower()
        title = str(s.get("title") or "").strip()
        kind = str(s.get("kind") or "markdown")
        problems = []
        if has_nul(title + str(s.get("guidance") or "")):
            problems.append("Title and guidance cannot contain NUL characters.")
        if not _KEY.match(key):
            problems.append("Key: lowercase letters, digits, '-' or '_'.")
        elif key in seen:
            problems.append(f"Key {key!r} is used twice.")
        if not title or len(title) > 200:
            problems.append("Title: 1 to 200 characters.")
        if kind not in {k.value for k in SectionKind}:
            problems.append(f"Kind: one of {', '.join(k.value for k in SectionKind)}.")
        if problems:
            errors[f"sections.{i}"] = problems
            continue
        seen.add(key)
        out.append({"key": key, "title": title, "kind": kind, "required": bool(s.get("required")),
                    "guidance": str(s.get("guidance") or "").strip()})
    if errors:
        raise Invalid("Some sections are invalid: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
                      errors)
    return out


def create_template(session: Session, *, name: str, sections, slug: str | None = None,
                    description: str = "") -> PostmortemTemplate:
    reject_nul(description=description)
    slug = _new_slug(session, PostmortemTemplate, name, slug)
    tpl = PostmortemTemplate(slug=slug, name=name.strip()[:120], description=description or "",
                             sections=clean_sections(sections))
    session.add(tpl)
    session.flush()
    return tpl


def update_template(session: Session, tpl: PostmortemTemplate, *, name: str | None = None,
                    description: str | None = None, sections=None, active: bool | None = None) -> PostmortemTemplate:
    """Edit a template; a changed section list is a new version, post-mortems already started keep theirs."""
    reject_nul(name=name, description=description)
    if name is not None:
        if not name.strip():
            raise Invalid("A name is required.", {"name": ["Required."]})
        tpl.name = name.strip()[:120]
    if description is not None:
        tpl.description = description
    if sections is not None:
        cleaned = clean_sections(sections)
        if cleaned != tpl.sections:
            tpl.sections = cleaned
            tpl.version += 1
    if active is not None:
        tpl.active = active
    session.flush()
    return tpl


# --- taxonomy ------------------------------------------------------------------------------------

def list_categories(session: Session, *, include_inactive: bool = False) -> list[FactorCategory]:
    ensure_defaults(session)
    stmt = sa.select(FactorCategory).order_by(FactorCategory.position, FactorCategory.name)
    if not include_inactive:
        stmt = stmt.where(FactorCategory.active.is_(True))
    return list(session.scalars(stmt))


def get_category(session: Session, key: str | int) -> FactorCategory:
    return _by_key(session, FactorCategory, key, "contributing-factor category")


def create_category(session: Session, *, name: str, slug: str | None = None, description: str = "") -> FactorCategory:
    reject_nul(description=description)
    slug = _new_slug(session, FactorCategory, name, slug)
    position = (session.scalar(sa.select(sa.func.max(FactorCategory.position))) or 0) + 1
    cat = FactorCategory(slug=slug, name=name.strip()[:120], description=description or "", position=position)
    session.add(cat)
    session.flush()
    return cat


def update_category(session: Session, cat: FactorCategory, *, name: str, description: str,
                    active: bool) -> FactorCategory:
    reject_nul(name=name, description=description)
    if not (name or "").strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    cat.name, cat.description, cat.active = name.strip()[:120], description or "", active
    session.flush()
    return cat


# --- starting and reading ------------------------------------------------------------------------

def get_postmortem(session: Session, postmortem_id: int | str) -> Postmortem:
    pm = get_by_id(session, Postmortem, postmortem_id)
    if pm is None:
        raise NotFound(f"No post-mortem {postmortem_id}.")
    return pm


def postmortem_for(session: Session, incident: Incident) -> Postmortem | None:
    return session.scalar(sa.select(Postmortem).where(Postmortem.incident_id == incident.id))


def _fmt(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_MILESTONES = (("started_at", "Impact started"), ("detected_at", "**Detected**"),
               ("acknowledged_at", "Acknowledged"), ("mitigated_at", "**Mitigated**"), ("resolved_at", "Resolved"))
_COVERED_STATUSES = {"acknowledged", "mitigated", "resolved"}  # already a milestone line


def seed_timeline(incident: Incident) -> str:
    """The incident's milestones and timeline (alerts, status changes, notes, deploys) as editable lines."""
    rows: list[tuple[datetime, int, str]] = []
    for order, (attr, label) in enumerate(_MILESTONES):
        at = getattr(incident, attr)
        if at:
            rows.append((at, order, label))
    for entry in incident.timeline:
        if entry.kind == EntryKind.CREATED:
            continue
        if entry.kind == EntryKind.STATUS and entry.data.get("to") in _COVERED_STATUSES:
            continue
        text = entry.text
        if entry.body:
            first = entry.body.strip().splitlines()[0][:200]
            text = f"{text}: {first}" if entry.kind == EntryKind.NOTE else text
        rows.append((entry.occurred_at, 10, f"[{entry.kind.value}] {text}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    return "\n".join(f"- {_fmt(at)} — {text}" for at, _, text in rows)


def impact_durations(incident: Incident) -> list[dict]:
    """Durations computed from the incident's milestones (seconds, or None while not reached)."""
    def span(a, b):
        return (b - a).total_seconds() if a and b else None

    return [
        {"key": "time_to_detect", "label": "Time to detect", "from": "impact start", "to": "detection",
         "seconds": span(incident.started_at, incident.detected_at)},
        {"key": "time_to_acknowledge", "label": "Time to acknowledge", "from": "detection", "to": "acknowledgement",
         "seconds": span(incident.detected_at, incident.acknowledged_at)},
        {"key": "time_to_mitigate", "label": "Time to mitigate", "from": "impact start", "to": "mitigation",
         "seconds": span(incident.started_at, incident.mitigated_at)},
        {"key": "time_to_resolve", "label": "Time to resolve", "from": "impact start", "to": "resolution",
         "seconds": span(incident.started_at, incident.resolved_at)},
    ]


def _event(session: Session, pm: Postmortem, kind: str, text: str, by: User | None) -> None:
    pm.events.append(PostmortemEvent(kind=kind, text=text[:500], author=by, at=utcnow()))


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
    _event(session, pm, "started", f"Started from the {tpl.name} template (version {tpl.version})", by)
    try:
        with session.begin_nested():  # the unique incident_id settles a race between two starters
            session.add(pm)
            session.flush()
    except sa.exc.IntegrityError:
        raise Conflict(f"{incident.ref} already has a post-mortem.") from None
    refresh_search_text(pm)
    session.flush()
    return pm


def refresh_search_text(pm: Postmortem) -> None:
    parts = [pm.title, pm.incident.ref, pm.template_name]
    parts += [s.body for s in pm.sections]
    parts += [f"{f.category.name} {f.description}" for f in pm.factors]
    parts += [f"{a.title} {a.description}" for a in pm.action_items]
    pm.search_text = "\n".join(p for p in parts if p).lower()


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


def panel_context(session: Session, incident: Incident) -> dict:
    """What templates/postmortem/_incident_panel.html needs beside `incident`."""
    pm = postmortem_for(session, incident)
    return {"postmortem": pm, "postmortem_templates": [] if pm else list_templates(session),
            "postmortem_prompt": needs_postmortem_prompt(incident, pm)}


# --- editing sections ----------------------------------------------------------------------------

def ensure_editable(pm: Postmortem) -> None:
    if pm.is_published:
        raise Conflict("This post-mortem is published and read-only; an admin can reopen it.")


def get_section(pm: Postmortem, key: str) -> PostmortemSection:
    section = pm.section(key)
    if section is None:
        raise NotFound(f"Post-mortem #{pm.id} has no section {key!r}.")
    return section


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
    return section


def section_history(pm: Postmortem, key: str) -> list[dict]:
    """Every saved version, newest first, each with its unified diff against the one before."""
    section = get_section(pm, key)
    revisions = list(section.revisions)
    out = []
    for i, rev in enumerate(revisions):
        before = revisions[i - 1].body if i else ""
        out.append({"revision": rev, "diff": diff_lines(before, rev.body, f"version {rev.version - 1}",
                                                        f"version {rev.version}")})
    return list(reversed(out))


def diff_lines(a: str, b: str, from_label: str = "before", to_label: str = "after") -> list[tuple[str, str]]:
    """A unified diff as (css class, line) pairs: add, del, hunk or ctx."""
    out = []
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), from_label, to_label, lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        cls = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        out.append((cls, line))
    return out


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
    return factor


def remove_factor(session: Session, pm: Postmortem, factor_id: int) -> None:
    ensure_editable(pm)
    factor = next((f for f in pm.factors if f.id == factor_id), None)
    if factor is None:
        raise NotFound("No such contributing factor on this post-mortem.")
    pm.factors.remove(factor)
    session.flush()
    refresh_search_text(pm)


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


# --- review and publishing -------------------------------------------------------------------------

def _filled(pm: Postmortem, section: PostmortemSection) -> bool:
    if section.kind == SectionKind.ACTION_ITEMS:
        return bool(pm.action_items) or bool(section.body.strip())
    if section.kind == SectionKind.PARTICIPANTS:
        return bool(pm.participants) or bool(section.body.strip())
    return bool(section.body.strip())


def section_filled(pm: Postmortem, section: PostmortemSection) -> bool:
    """The section's tick: it has content and none of the publishing gates that belong to it is unmet."""
    return section_ticks(pm)[section.key]


def section_ticks(pm: Postmortem) -> dict[str, bool]:
    """Every section's tick, from quality_gates itself (one rule for the tick and for publishing)."""
    blocked = {gate_section(pm, m) for m in quality_gates(pm)}
    return {s.key: (bool(pm.factors) if s.kind == SectionKind.FACTORS else _filled(pm, s)) and s.key not in blocked
            for s in pm.sections}


def gate_section(pm: Postmortem, missing: dict) -> str | None:
    """The key of the section where an unmet gate (an entry of quality_gates) is fixed."""
    kind = {"contributing_factor": SectionKind.FACTORS, "action_item_owner": SectionKind.ACTION_ITEMS,
            "action_item_due_date": SectionKind.ACTION_ITEMS, "action_item_type": SectionKind.ACTION_ITEMS,
            "timeline": SectionKind.TIMELINE}.get(missing["gate"])
    if kind is None:
        return missing["target"] if isinstance(missing["target"], str) else None
    return next((s.key for s in pm.sections if s.kind == kind), None)


def quality_gates(pm: Postmortem) -> list[dict]:
    """Exactly what stands between this post-mortem and publishing; empty when it may be published."""
    missing: list[dict] = []
    for s in pm.sections:
        if s.required and s.kind != SectionKind.FACTORS and not _filled(pm, s):
            missing.append({"gate": "required_section", "target": s.key,
                            "message": f"Required section \u201c{s.title}\u201d is empty."})
    if not pm.factors:
        missing.append({"gate": "contributing_factor", "target": None,
                        "message": "Add at least one contributing factor."})
    for item in pm.action_items:
        for attr, gate, what in (("owner_id", "action_item_owner", "an owner"),
                                 ("due_date", "action_item_due_date", "a due date"),
                                 ("type", "action_item_type", "a type")):
            if getattr(item, attr) is None:
                missing.append({"gate": gate, "target": item.id,
                                "message": f"Action item \u201c{item.title}\u201d needs {what}."})
    timelines = [s for s in pm.sections if s.kind == SectionKind.TIMELINE]
    if not timelines:
        missing.append({"gate": "timeline", "target": None, "message": "The post-mortem has no timeline section."})
    else:
        lines = "\n".join(s.body for s in timelines).lower().splitlines()
        for word, gate, what in (("detect", "timeline_detection", "detection"),
                                 ("mitigat", "timeline_mitigation", "mitigation")):
            if not any(word in line for line in lines):
                missing.append({"gate": gate, "target": timelines[0].key,
                                "message": f"The timeline has no {what} entry (a line mentioning {what})."})
    return missing


def _check_from(pm: Postmortem, allowed: tuple[PostmortemStatus, ...], verb: str) -> None:
    if pm.status not in allowed:
        raise InvalidTransition(
            f"Cannot {verb} post-mortem #{pm.id}: it is {pm.status.label}; "
            f"only a post-mortem that is {' or '.join(s.label for s in allowed)} can be."
        )


def _move(session: Session, pm: Postmortem, to: PostmortemStatus, allowed: tuple[PostmortemStatus, ...],
          by: User | None, verb: str, note: str = "") -> Postmortem:
    _check_from(pm, allowed, verb)
    old = pm.status
    pm.status = to
    pm.updated_at = utcnow()
    _event(session, pm, to.value if verb != "reopen" else "reopened",
           f"Status: {old.label} -> {to.label}" + (f" ({note.strip()})" if note.strip() else ""), by)
    session.flush()
    return pm


def submit_for_review(session: Session, pm: Postmortem, *, by: User | None = None) -> Postmortem:
    return _move(session, pm, PostmortemStatus.IN_REVIEW, (PostmortemStatus.DRAFT,), by, "submit for review")


def return_to_draft(session: Session, pm: Postmortem, *, by: User | None = None) -> Postmortem:
    return _move(session, pm, PostmortemStatus.DRAFT, (PostmortemStatus.IN_REVIEW,), by, "return to draft")


def publish_postmortem(session: Session, pm: Postmortem, *, by: User | None = None) -> Postmortem:
    """In review -> published, only when every quality gate passes; it is read-only afterwards."""
    _check_from(pm, (PostmortemStatus.IN_REVIEW,), "publish")
    missing = quality_gates(pm)
    if missing:
        raise QualityGatesFailed(missing)
    _move(session, pm, PostmortemStatus.PUBLISHED, (PostmortemStatus.IN_REVIEW,), by, "publish")
    pm.published_at = utcnow()
    session.flush()
    return pm


def reopen_postmortem(session: Session, pm: Postmortem, *, by: User | None, reason: str = "") -> Postmortem:
    """Admins only: published -> draft, recorded in the post-mortem's history."""
    if by is None or not by.can(Role.ADMIN):
        raise Forbidden("Only an admin can reopen a published post-mortem.")
    _move(session, pm, PostmortemStatus.DRAFT, (PostmortemStatus.PUBLISHED,), by, "reopen", note=reason)
    pm.published_at = None
    session.flush()
    return pm


# --- lists and export ----------------------------------------------------------------------------

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


def to_markdown(pm: Postmortem) -> str:
    """The whole post-mortem as one Markdown document (the download, and a faithful plain-text archive)."""
    inc = pm.incident
    out = [f"# Post-mortem: {pm.title}", "",
           f"- Incident: {inc.ref} ({inc.severity.value}, {inc.status.value})",
           f"- Status: {pm.status.label}" + (f", published {_fmt(pm.published_at)}" if pm.published_at else ""),
           f"- Template: {pm.template_name} (version {pm.template_version})", ""]
    for s in pm.sections:
        out += [f"## {s.title}", ""]
        if s.kind == SectionKind.IMPACT:
            out += [f"- {d['label']}: {format_duration(d['seconds'])}" for d in impact_durations(inc)] + [""]
        if s.kind == SectionKind.FACTORS:
            out += [f"- **{f.category.name}**" + (f": {f.description}" if f.description else "") for f in pm.factors]
            out += [""] if pm.factors else []
        if s.kind == SectionKind.ACTION_ITEMS and pm.action_items:
            out += ["| # | Action | Type | Owner | Due | Priority | Points | Status |", "|---" * 8 + "|"]
            for a in pm.action_items:
                out.append(f"| {a.id} | {a.title.replace('|', '/')} | {a.type.value if a.type else '—'} | "
                           f"{a.owner.name if a.owner else '—'} | {a.due_date.isoformat() if a.due_date else '—'} | "
                           f"{a.priority.value} | {a.estimate if a.estimate is not None else '—'} | "
                           f"{a.status.label}{(': ' + a.wont_do_reason) if a.wont_do_reason else ''} |")
            out.append("")
        if s.kind == SectionKind.PARTICIPANTS:
            out += [f"- {p.user.name}" + (f" ({p.role})" if p.role else "") for p in pm.participants]
            out += [""] if pm.participants else []
        if s.body.strip():
            out += [s.body.strip(), ""]
    return "\n".join(out).rstrip() + "\n"
