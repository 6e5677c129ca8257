"""make_x helpers for post-mortems: real rows through the real services, committed."""

from __future__ import annotations

from datetime import date, timedelta

from incidents.action_item import services as items
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.postmortem import services as svc
from incidents.postmortem.models import SectionKind
from tests.factories import make_incident, make_user


def make_resolved_incident(**overrides):
    incident = make_incident(**({"severity": "SEV1"} | overrides))
    incidents.add_note(db.session, incident, "Rolled back the config push", by=None)
    incidents.mitigate_incident(db.session, incident)
    incidents.resolve_incident(db.session, incident)
    db.session.commit()
    return incident


def make_postmortem(incident=None, template: str = "full-blameless", by=None):
    pm = svc.start_postmortem(db.session, incident or make_resolved_incident(), template, by=by)
    db.session.commit()
    return pm


def fill_for_publishing(pm, by=None):
    """Everything the quality gates ask for, the way a team would do it."""
    by = by or make_user()
    for s in pm.sections:
        if s.kind in (SectionKind.MARKDOWN, SectionKind.IMPACT) and not s.body:
            svc.save_section(db.session, pm, s.key, f"Text for {s.title}.", s.version, by=by)
    svc.add_factor(db.session, pm, "configuration", "A flag default differed between regions", by=by)
    items.create_action_item(db.session, pm, title="Validate flag defaults in CI", owner_id=by.id,
                             due_date=date.today() + timedelta(days=14), type="prevent", by=by)
    db.session.commit()
    return pm
