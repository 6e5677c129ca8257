import sqlalchemy as sa

from incidents.auth import services as auth
from incidents.auth.models import Role, User
from incidents.catalog.models import Service, Team
from incidents.demo import DEMO_PASSWORD, load_demo
from incidents.incident.models import EntryKind, Incident, IncidentRole, Severity, Status, TimelineEntry
from tests.conftest import empty_tables


def _count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_demo_covers_every_severity_status_and_role(session):
    summary = load_demo(session)
    session.commit()
    assert DEMO_PASSWORD in summary and "admin@demo.example.com" in summary
    found = session.scalars(sa.select(Incident)).all()
    assert 30 <= len(found) <= 60
    assert {i.severity for i in found} == set(Severity)
    assert {i.status for i in found} == set(Status)
    assert {u.role for u in session.scalars(sa.select(User))} == set(Role)
    assert all(i.service is not None and i.team == i.service.team and i.tags for i in found)
    assert any(i.role_holder(r) for i in found for r in IncidentRole)
    assert session.scalar(sa.select(sa.func.count()).where(TimelineEntry.kind == EntryKind.NOTE)) > 0


def test_demo_timelines_are_real_and_chronological(session):
    load_demo(session)
    session.commit()
    for incident in session.scalars(sa.select(Incident)):
        entries = sorted(incident.timeline, key=lambda e: e.id)  # in the order the loader wrote them
        assert entries and entries[0].kind == EntryKind.CREATED
        times = [e.occurred_at for e in entries]
        assert times == sorted(times), incident.ref
        assert incident.started_at <= incident.detected_at <= times[0] <= incident.updated_at
        statuses = [e.data["to"] for e in entries if e.kind == EntryKind.STATUS]
        assert (statuses[-1] if statuses else "triggered") == incident.status.value
        milestones = [incident.detected_at, incident.acknowledged_at, incident.mitigated_at,
                      incident.resolved_at, incident.closed_at]
        reached = [m for m in milestones if m is not None]
        assert reached == sorted(reached), incident.ref
        assert incident.created_at == incident.detected_at


def test_demo_users_can_sign_in_with_the_shared_password(session):
    load_demo(session)
    session.commit()
    user = auth.authenticate(session, "priya@demo.example.com", DEMO_PASSWORD, "127.0.0.1", auth.LoginLimits())
    assert user is not None and user.role == Role.RESPONDER


def test_demo_runs_twice_without_duplicating(session):
    load_demo(session)
    session.commit()
    before = {m: _count(session, m) for m in (Team, Service, User, Incident, TimelineEntry)}
    again = load_demo(session)
    session.commit()
    assert "already loaded" in again
    assert {m: _count(session, m) for m in (Team, Service, User, Incident, TimelineEntry)} == before


def test_demo_is_reproducible(session):
    load_demo(session)
    session.commit()
    first = session.execute(sa.select(Incident.title, Incident.severity, Incident.status).order_by(Incident.id)).all()
    session.commit()
    empty_tables()
    load_demo(session)
    session.commit()
    second = session.execute(sa.select(Incident.title, Incident.severity, Incident.status).order_by(Incident.id)).all()
    assert first == second
