import pytest
import sqlalchemy as sa

from incidents.errors import Invalid, InvalidTransition, NotFound
from incidents.incident import services as svc
from incidents.incident.models import EntryKind, Status
from tests.factories import make_incident, make_service, make_user


def test_create_takes_team_from_service_and_writes_timeline(session):
    service = make_service(name="Checkout")
    incident = make_incident(title="Checkout 500s", severity="SEV1", service_id=service.id, tags=["Payments", "eu"])
    assert incident.ref == f"INC-{incident.id}"
    assert incident.team == service.team
    assert incident.status == Status.TRIGGERED
    assert incident.tags == ["eu", "payments"]
    assert [e.kind for e in incident.timeline] == [EntryKind.CREATED]
    assert incident.started_at.tzinfo is not None


def test_full_lifecycle_sets_each_milestone_once(session):
    user = make_user()
    incident = make_incident()
    for status in ("acknowledged", "investigating", "mitigated", "resolved", "closed"):
        svc.transition(session, incident, status, by=user, resolution="Rolled back")
    session.commit()
    assert incident.status == Status.CLOSED
    assert incident.acknowledged_at <= incident.mitigated_at <= incident.resolved_at <= incident.closed_at
    texts = [e.text for e in incident.timeline if e.kind == EntryKind.STATUS]
    assert texts == [
        "Status: triggered -> acknowledged", "Status: acknowledged -> investigating",
        "Status: investigating -> mitigated", "Status: mitigated -> resolved", "Status: resolved -> closed",
    ]
    assert all(e.author == user for e in incident.timeline if e.kind == EntryKind.STATUS)


def test_resolving_directly_implies_acknowledged_and_mitigated(session):
    incident = make_incident()
    svc.resolve_incident(session, incident)
    assert incident.acknowledged_at == incident.mitigated_at == incident.resolved_at


def test_invalid_transition_is_refused_with_a_clear_message(session):
    incident = make_incident()
    with pytest.raises(InvalidTransition, match=r"Cannot close INC-\d+: it is triggered; only .*resolved"):
        svc.transition(session, incident, "closed")
    with pytest.raises(InvalidTransition, match="already triggered"):
        svc.transition(session, incident, "triggered")
    with pytest.raises(Invalid, match="Unknown status"):
        svc.transition(session, incident, "exploded")


def test_reopen_clears_resolution(session):
    incident = make_incident()
    svc.resolve_incident(session, incident)
    svc.transition(session, incident, "investigating")
    assert incident.status == Status.INVESTIGATING
    assert incident.resolved_at is None
    assert incident.acknowledged_at is not None


def test_get_incident_by_ref_or_id(session):
    incident = make_incident()
    assert svc.get_incident(session, incident.ref) is incident
    assert svc.get_incident(session, incident.ref.lower()) is incident
    assert svc.get_incident(session, str(incident.id)) is incident
    with pytest.raises(NotFound):
        svc.get_incident(session, "INC-999999")
    with pytest.raises(NotFound):
        svc.get_incident(session, "nonsense")


def test_roles_and_notes_go_to_timeline(session):
    user = make_user(name="Carla Commander")
    incident = make_incident()
    svc.set_role(session, incident, "commander", user.id, by=user)
    svc.add_note(session, incident, "Rolled back **v2.3**", by=user)
    with pytest.raises(Invalid):
        svc.add_note(session, incident, "   ")
    kinds = [(e.kind, e.text) for e in incident.timeline]
    assert (EntryKind.ROLE, "Incident commander: Carla Commander") in kinds
    assert (EntryKind.NOTE, "Note") in kinds


def test_an_entry_is_on_the_timeline_whether_or_not_it_was_loaded(session):
    """An entry on an unchanged incident is linked by its foreign key (a cheaper flush); a timeline already loaded
    in the session is kept in step, and one read later finds the entry too, in the same transaction."""
    loaded, unloaded = make_incident(title="Loaded"), make_incident(title="Not loaded")
    session.commit()
    before = len(loaded.timeline)  # loaded now
    note = svc.add_note(session, loaded, "Seen first")
    assert len(loaded.timeline) == before + 1 and loaded.timeline[-1] is note
    assert "timeline" not in sa.inspect(unloaded).dict
    other = svc.add_note(session, unloaded, "Seen later")
    assert other.id is not None and other.incident is unloaded  # flushed, and the link resolves from the key
    assert [e for e in unloaded.timeline if e.kind == EntryKind.NOTE] == [other]
    session.commit()
    assert [e.body for e in unloaded.timeline if e.kind == EntryKind.NOTE] == ["Seen later"]


def test_list_filters(session):
    a, b = make_service(name="Search"), make_service(name="Billing")
    i1 = make_incident(title="Search is slow", severity="SEV3", service_id=a.id, tags=["latency"])
    i2 = make_incident(title="Billing double charge", severity="SEV1", service_id=b.id)
    svc.resolve_incident(session, i2)
    session.commit()

    def ids(**kw):
        return [i.id for i in svc.list_incidents(session, svc.IncidentFilter(**kw)).items]

    assert ids() == [i2.id, i1.id]
    assert ids(severity=["SEV1"]) == [i2.id]
    assert ids(status=["resolved"]) == [i2.id]
    assert ids(open_only=True) == [i1.id]
    assert ids(service=a.slug) == [i1.id]
    assert ids(team=str(b.team_id)) == [i2.id]
    assert ids(q="double") == [i2.id]
    assert ids(q=i1.ref) == [i1.id]
    assert ids(q="100%") == []
    assert ids(tag="latency") == [i1.id]
    page = svc.list_incidents(session, svc.IncidentFilter(), page=2, per_page=1)
    assert (page.total, page.pages, [i.id for i in page.items]) == (2, 2, [i1.id])


def test_unknown_enum_values_are_422_not_500(session):
    with pytest.raises(Invalid, match="Unknown severity 'SEV9'"):
        make_incident(severity="SEV9")
    incident = make_incident()
    with pytest.raises(Invalid, match="Unknown severity"):
        svc.update_incident(session, incident, severity="huge")
    with pytest.raises(Invalid, match="Unknown status"):
        svc.list_incidents(session, svc.IncidentFilter(status=["nope"]))
