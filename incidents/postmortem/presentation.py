"""What renders a post-mortem rather than decides about it: the seeded timeline, impact durations, diffs,
the Markdown download and the incident page's panel."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from incidents.formatting import format_duration
from incidents.incident.durations import durations
from incidents.incident.models import EntryKind, Incident
from incidents.postmortem.models import Postmortem, SectionKind
from incidents.postmortem.queries import get_section, needs_postmortem_prompt, postmortem_for
from incidents.postmortem.templates import list_templates


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
        if entry.kind == EntryKind.NOTE and (entry.body or "").strip():
            text = f"{text}: {_note_body(entry.body)}"
        rows.append((entry.occurred_at, 10, f"[{entry.kind.value}] {text}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    return "\n".join(f"- {_fmt(at)} — {text}" for at, _, text in rows)


def _note_body(body: str) -> str:
    """A note's whole body inside its bullet: later lines indented four spaces (Python-Markdown's list
    continuation) and blank lines dropped (a blank line would let the next bullet join this item)."""
    lines = [line.rstrip() for line in body.strip().splitlines() if line.strip()]
    return "\n".join([lines[0]] + ["    " + line for line in lines[1:]])


def impact_durations(incident: Incident, now: datetime | None = None) -> list[dict]:
    """The incident's durations as labelled rows, from the one definition (incidents.incident.durations)."""
    return durations(incident, now).rows()


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


def panel_context(session: Session, incident: Incident) -> dict:
    """What templates/postmortem/_incident_panel.html needs beside `incident`."""
    pm = postmortem_for(session, incident)
    return {"postmortem": pm, "postmortem_templates": [] if pm else list_templates(session),
            "postmortem_prompt": needs_postmortem_prompt(incident, pm)}
