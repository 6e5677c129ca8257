"""`incidents demo`: a dozen coherent stories, their alerts delivered through real integrations, their reviews."""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from incidents.action_item.models import ActionItem, ItemStatus
from incidents.alert.models import Alert, Delivery, Integration, Outcome
from incidents.alert.sources import parse
from incidents.auth import services as auth
from incidents.auth.models import Role, User
from incidents.catalog.models import Service, Team
from incidents.demo import DEMO_PASSWORD, SERVICES, USERS, load_demo
from incidents.incident.models import EntryKind, Incident, IncidentRole, Severity, Status, TimelineEntry
from incidents.postmortem import review
from incidents.postmortem.models import ContributingFactor, Postmortem, PostmortemStatus
from tests.conftest import empty_tables

COUNTED = (Team, Service, User, Integration, Incident, TimelineEntry, Alert, Delivery, Postmortem,
           ContributingFactor, ActionItem)


def _count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def _loaded(session, now=None) -> list[Incident]:
    load_demo(session, now=now)
    session.commit()
    return list(session.scalars(sa.select(Incident).order_by(Incident.id)))


def test_a_dozen_stories_over_three_teams_with_three_still_open(session):
    summary = load_demo(session)
    session.commit()
    assert DEMO_PASSWORD in summary and "admin@demo.example.com" in summary
    found = list(session.scalars(sa.select(Incident).order_by(Incident.id)))
    assert 8 <= len(found) <= 12
    assert {i.team.slug for i in found} == {"payments", "platform", "mobile"}
    assert {i.service.slug for i in found} == set(SERVICES)
    assert all(i.team == i.service.team and i.tags and i.summary for i in found)
    assert {i.severity for i in found} == set(Severity)
    assert {u.role for u in session.scalars(sa.select(User))} == set(Role)
    assert len({i.title for i in found}) == len(found)  # no story told twice
    open_ = [i for i in found if i.is_open]
    assert 2 <= len(open_) <= 3 and len({i.status for i in open_}) == len(open_)
    sev1 = [i for i in open_ if i.severity == Severity.SEV1]
    assert sev1 and sev1[0].status == Status.INVESTIGATING and sev1[0].commander is not None
    urgent = [i for i in open_ if i.severity in (Severity.SEV1, Severity.SEV2)]
    assert urgent and all(i.chat_url.startswith("https://") and i.runbook_url.startswith("https://") for i in urgent)
    # Stakeholders heard from the big ones, and the next update is promised for later, not overdue.
    now = datetime.now(UTC)
    for incident in urgent:
        updates = incident.updates
        assert 1 <= len(updates) <= 2 and all(u.author is not None and u.impact and u.actions for u in updates)
        assert incident.next_update_at == updates[0].next_update_at and not incident.update_overdue(now)
    assert all(i.next_update_at is None and not i.updates for i in found if not i.is_open)
    closed = [i for i in found if not i.is_open]
    assert all(i.resolution and i.commander for i in closed)
    # Big incidents get the three roles, from the team that owns the service (the comms lead may be the admin).
    team_of = {name: team for _key, name, _role, team in USERS}
    for incident in found:
        if incident.severity in (Severity.SEV1, Severity.SEV2) and incident.commander is not None:
            assert team_of[incident.commander.name] == incident.team.slug, incident.ref
            assert incident.scribe is None or team_of[incident.scribe.name] == incident.team.slug, incident.ref
    assert any(i.role_holder(r) for i in found for r in IncidentRole)


def test_incidents_from_alerts_have_integrations_and_stored_deliveries(session):
    found = _loaded(session)
    alerted = [i for i in found if session.scalar(sa.select(sa.func.count()).where(Alert.incident_id == i.id))]
    by_hand = [i for i in found if i not in alerted]
    assert len(alerted) >= 8 and by_hand and all(i.created_by is not None for i in by_hand)
    sources = set()
    for incident in alerted:
        for alert in session.scalars(sa.select(Alert).where(Alert.incident_id == incident.id)):
            integration = alert.integration
            assert integration.source == alert.source and integration.service == incident.service, incident.ref
            # A delivery row names the first alert of its body; the timeline names the delivery of every alert.
            ids = {e.data["delivery_id"] for e in incident.timeline
                   if e.kind == EntryKind.ALERT and e.data.get("alert_id") == alert.id and e.data.get("delivery_id")}
            deliveries = list(session.scalars(sa.select(Delivery).where(
                sa.or_(Delivery.alert_id == alert.id, Delivery.id.in_(ids)))))
            assert deliveries, f"{incident.ref}: alert {alert.id} has no stored delivery"
            for delivery in deliveries:
                assert delivery.integration_id == integration.id and delivery.outcome == Outcome.PROCESSED
                # The stored body is what the sender sent: its own parser reads this alert from it again.
                headers = {k.lower(): v for k, v in delivery.headers.items()}
                events = parse(delivery.source.value, json.loads(delivery.body), headers, integration.options or {})
                assert alert.fingerprint in {e.fingerprint for e in events}, delivery.id
                assert delivery.received_at <= incident.updated_at or not incident.is_open
            sources.add(alert.source.value)
        opened = [e for e in incident.timeline if e.kind == EntryKind.ALERT and e.data.get("delivery_id")]
        assert opened and all(session.get(Delivery, e.data["delivery_id"]) for e in opened), incident.ref
    assert {"alertmanager", "sentry", "grafana", "opsgenie"} <= sources
    # Integrations existed before their first delivery.
    for integration in session.scalars(sa.select(Integration)):
        first = session.scalar(sa.select(sa.func.min(Delivery.received_at))
                               .where(Delivery.integration_id == integration.id))
        assert first is not None and integration.created_at < first


def test_postmortems_and_their_action_items_belong_to_their_incident(session):
    found = _loaded(session)
    now = datetime.now(UTC)
    team_of = {name: team for _key, name, _role, team in USERS}
    reviews = list(session.scalars(sa.select(Postmortem)))
    assert {pm.status for pm in reviews} == set(PostmortemStatus)
    assert {pm.incident_id for pm in reviews} == {i.id for i in found if not i.is_open}
    titles, factors = [], []
    for pm in reviews:
        incident = pm.incident
        assert pm.title == incident.title and pm.factors
        assert incident.resolved_at < pm.created_at <= pm.updated_at <= now
        assert pm.section("summary" if pm.section("summary") else "overview").body
        if pm.status == PostmortemStatus.PUBLISHED:
            assert review.quality_gates(pm) == [] and pm.created_at < pm.published_at <= now
        for factor in pm.factors:
            assert factor.postmortem_id == pm.id
            factors.append(factor.description)
        for item in pm.action_items:
            assert item.postmortem_id == pm.id and incident.resolved_at < item.created_at <= now
            assert item.closed_at is None or item.created_at < item.closed_at <= now
            # Owned by the team whose service it was.
            assert item.owner is None or team_of[item.owner.name] == incident.team.slug, item.title
            titles.append(item.title)
    assert len(titles) == len(set(titles)) and len(factors) == len(set(factors))  # nothing copied between stories
    items = list(session.scalars(sa.select(ActionItem)))
    statuses = {i.status for i in items}
    assert statuses == set(ItemStatus)
    assert all(i.wont_do_reason for i in items if i.status == ItemStatus.WONT_DO)
    overdue = [i for i in items if not i.status.is_closed and i.due_date and i.due_date < now.date()]
    assert len(overdue) == 1


def test_repeats_are_recurrences_of_the_same_service(session):
    found = _loaded(session)
    repeats = [i for i in found if i.repeat_of_id]
    assert len(repeats) == 2
    for incident in repeats:
        earlier = incident.repeat_of
        assert earlier.service == incident.service and earlier.id < incident.id
        assert earlier.resolved_at is not None and earlier.resolved_at < incident.created_at
        # The same alert again: both incidents have an alert with the same fingerprint from the same integration.
        before = set(session.execute(sa.select(Alert.integration_id, Alert.fingerprint)
                                     .where(Alert.incident_id == earlier.id)).all())
        after = set(session.execute(sa.select(Alert.integration_id, Alert.fingerprint)
                                    .where(Alert.incident_id == incident.id)).all())
        assert before & after, incident.ref
        assert any(f"repeat of {earlier.ref}" in e.text for e in incident.timeline)


def test_each_timeline_is_chronological_and_starts_with_the_declaration(session):
    for incident in _loaded(session):
        entries = sorted(incident.timeline, key=lambda e: e.id)  # in the order the loader wrote them
        assert entries and entries[0].kind == EntryKind.CREATED, incident.ref
        times = [e.occurred_at for e in entries]
        assert times == sorted(times), incident.ref
        assert incident.started_at <= incident.detected_at == incident.created_at == times[0]
        assert incident.updated_at == times[-1]
        statuses = [e.data["to"] for e in entries if e.kind == EntryKind.STATUS]
        assert (statuses[-1] if statuses else "triggered") == incident.status.value
        milestones = [incident.detected_at, incident.acknowledged_at, incident.mitigated_at,
                      incident.resolved_at, incident.closed_at]
        reached = [m for m in milestones if m is not None]
        assert reached == sorted(reached), incident.ref
        assert any(e.kind == EntryKind.NOTE and e.author is not None for e in entries), incident.ref


def test_the_stories_fit_any_now(session):
    """Stories are placed relative to `now`: a load at another moment keeps every time in the past."""
    now = datetime(2026, 3, 2, 0, 20, tzinfo=UTC)
    found = _loaded(session, now=now)
    latest = session.scalar(sa.select(sa.func.max(TimelineEntry.occurred_at)))
    assert latest <= now and min(i.created_at for i in found) >= now - timedelta(days=80)
    assert session.scalar(sa.select(sa.func.max(Delivery.received_at))) <= now


def test_demo_users_can_sign_in_with_the_shared_password(session):
    load_demo(session)
    session.commit()
    user = auth.authenticate(session, "priya@demo.example.com", DEMO_PASSWORD, "127.0.0.1", auth.LoginLimits())
    assert user is not None and user.role == Role.RESPONDER


def test_demo_runs_twice_without_duplicating(session):
    load_demo(session)
    session.commit()
    before = {m: _count(session, m) for m in COUNTED}
    again = load_demo(session)
    session.commit()
    assert "already loaded" in again
    assert {m: _count(session, m) for m in COUNTED} == before


def test_demo_is_reproducible(session):
    def snapshot():
        found = session.scalars(sa.select(Incident).order_by(Incident.id))
        return ([(i.title, i.severity, i.status, i.repeat_of.title if i.repeat_of else None) for i in found],
                session.execute(sa.select(ActionItem.title, ActionItem.status).order_by(ActionItem.id)).all())

    load_demo(session)
    session.commit()
    first = snapshot()
    session.commit()
    empty_tables()
    load_demo(session)
    session.commit()
    assert snapshot() == first


def test_every_demo_page_renders(client, session):
    """The pages a visitor opens first show the stories: lists, each incident, review, alert, delivery."""
    from tests.conftest import login

    load_demo(session)
    session.commit()
    login(client, session.scalar(sa.select(User).where(User.email == "admin@demo.example.com")))
    urls = ["/", "/alerts", "/deliveries", "/postmortems", "/action-items", "/debt", "/admin/integrations"]
    urls += [f"/incidents/{i.ref}" for i in session.scalars(sa.select(Incident))]
    urls += [f"/postmortems/{pm.id}" for pm in session.scalars(sa.select(Postmortem))]
    urls += [f"/alerts/{a.id}" for a in session.scalars(sa.select(Alert))]
    urls += [f"/deliveries/{d.id}" for d in session.scalars(sa.select(Delivery))]
    urls += [f"/admin/integrations/{i.id}" for i in session.scalars(sa.select(Integration))]
    for url in urls:
        assert client.get(url).status_code == 200, url
    page = client.get(f"/incidents/{session.scalar(sa.select(Incident).where(Incident.repeat_of_id.is_not(None))).ref}")
    assert b"repeat of INC-" in page.data
