"""Review and publishing: the quality gates, the ticks they give each section, and the status moves
(draft -> in review -> published, reopen) with the post-mortem's history."""

from __future__ import annotations

from sqlalchemy.orm import Session

from incidents import events
from incidents.auth.models import Role, User
from incidents.database import utcnow
from incidents.errors import Forbidden, Invalid, InvalidTransition
from incidents.postmortem.models import Postmortem, PostmortemEvent, PostmortemSection, PostmortemStatus, SectionKind


class QualityGatesFailed(Invalid):
    code = "quality_gates"

    def __init__(self, missing: list[dict]):
        super().__init__(f"{len(missing)} thing(s) must be fixed before publishing.")
        self.missing = missing


def record_event(session: Session, pm: Postmortem, kind: str, text: str, by: User | None) -> None:
    """One line of the post-mortem's own history (started, submitted, published, reopened)."""
    pm.events.append(PostmortemEvent(kind=kind, text=text[:500], author=by, at=utcnow()))


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
    record_event(session, pm, to.value if verb != "reopen" else "reopened",
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
    events.emit(session, "postmortem.published", postmortem_id=pm.id, incident_id=pm.incident_id)
    return pm


def reopen_postmortem(session: Session, pm: Postmortem, *, by: User | None, reason: str = "") -> Postmortem:
    """Admins only: published -> draft, recorded in the post-mortem's history."""
    if by is None or not by.can(Role.ADMIN):
        raise Forbidden("Only an admin can reopen a published post-mortem.")
    _move(session, pm, PostmortemStatus.DRAFT, (PostmortemStatus.PUBLISHED,), by, "reopen", note=reason)
    pm.published_at = None
    session.flush()
    events.emit(session, "postmortem.reopened", postmortem_id=pm.id, incident_id=pm.incident_id,
                reason=reason.strip())
    return pm
