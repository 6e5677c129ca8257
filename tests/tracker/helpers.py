"""Action items worth a card, built through the real services."""

from __future__ import annotations

from datetime import date

from incidents.action_item import services as items
from incidents.extensions import db
from incidents.postmortem import services as pm_services
from tests.factories import make_service, make_user
from tests.postmortem.factories import make_postmortem, make_resolved_incident

SUMMARY = "Checkout failed for **12 minutes** after a config push."


def make_exportable_item(pm=None, **overrides):
    """An item on a post-mortem with a summary, a service and an owner Shortcut knows (ada@example.com)."""
    if pm is None:
        service = _payments()
        pm = make_postmortem(make_resolved_incident(service_id=service.id, team_id=service.team_id,
                                                    title="Checkout returns 502"))
        summary = pm.section("summary")
        pm_services.save_section(db.session, pm, "summary", SUMMARY, summary.version, by=None)
    owner = overrides.pop("owner", None)
    if owner is None:
        owner = _user("ada@example.com", "Ada Admin")
    fields = {"title": "Add a circuit breaker to the payments client", "description": "Trip after 5 failures.",
              "owner_id": owner.id, "due_date": date(2030, 3, 1).isoformat(), "type": "prevent", "estimate": 3}
    item = items.create_action_item(db.session, pm, **(fields | overrides))
    db.session.commit()
    return item


def _user(email: str, name: str):
    from incidents.auth.models import User

    existing = db.session.query(User).filter_by(email=email).one_or_none()
    return existing or make_user(email=email, name=name, role="responder")


def _payments():
    from incidents.catalog import services as catalog
    from incidents.errors import NotFound

    try:
        return catalog.get_service(db.session, "payments-api")
    except NotFound:
        return make_service(name="Payments API", slug="payments-api")
