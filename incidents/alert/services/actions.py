"""What a responder does with an alert by hand: open an incident from it, or attach it to one."""

from __future__ import annotations

from sqlalchemy.orm import Session

from incidents.alert.models import Alert
from incidents.alert.services.integrations import integration_info
from incidents.alert.services.processing import open_incident, previous_incident
from incidents.alert.sources import Kind, ParsedEvent
from incidents.auth.models import User
from incidents.database import utcnow
from incidents.errors import Conflict, Invalid
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, Severity


def open_incident_from_alert(session: Session, alert: Alert, severity: Severity | str, *,
                             by: User | None = None) -> Incident:
    """A responder decides this alert deserves an incident (the rules did not open one)."""
    if alert.incident_id is not None:
        raise Conflict(f"Alert {alert.id} already belongs to {alert.incident.ref}.")
    try:
        severity = Severity(severity)
    except ValueError:
        raise Invalid(f"Unknown severity {severity!r}.", {"severity": [f"One of: {', '.join(Severity)}."]}) from None
    parsed = ParsedEvent(alert.source.value, "manual", Kind.TRIGGER, fingerprint=alert.fingerprint,
                         title=alert.title, description=alert.description, link=alert.link,
                         environment=alert.environment, tags=tuple(alert.tags or ()))
    info = integration_info(alert.integration)
    previous = previous_incident(session, info.id, alert.fingerprint, alert.id)
    repeat_of = previous if previous is not None and not previous.is_open else None
    incident_id = open_incident(session, info, parsed, alert.id, severity, utcnow(), None,
                                 repeat_of=repeat_of, by=by)
    session.refresh(alert)
    return session.get(Incident, incident_id)


def attach_alert(session: Session, alert: Alert, incident: Incident, *, by: User | None = None) -> Alert:
    """Link an alert to an existing incident (its later events then write that incident's timeline)."""
    if alert.incident_id == incident.id:
        return alert
    alert.incident = incident
    session.flush()
    incidents.add_timeline_entry(
        session, incident, EntryKind.ALERT, f"Alert attached: {alert.title}", author=by,
        data={"source": alert.source.value, "event": "attach", "alert_id": alert.id, "link": alert.link})
    return alert
