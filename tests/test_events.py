"""Domain events: the catalogue and its subscribers, and each subscriber runs once, in its phase.

Real services on the real database. A non-immediate queue stands in for the worker, so the jobs an after-commit
subscriber queues are counted instead of run. In-transaction work rolls back with the change; after-commit
handlers never run for a change (or a savepoint) that rolled back, and run once after the commit, whether the
change was written through the ORM (create_incident) or core INSERTs (declare_incident)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from incidents import events
from incidents.action_item import services as items
from incidents.alert import services as alert_services
from incidents.alert.models import Alert
from incidents.alert.sources import parse
from incidents.auth import services as auth
from incidents.database import utcnow
from incidents.incident import services as incidents
from incidents.incident.models import Incident
from incidents.jobs import JobQueue, QueueMemoryHuey
from incidents.notify.jobs import queue_overdue_reminders
from incidents.postmortem import blameless
from incidents.postmortem import services as pm_services
from incidents.postmortem import templates as pm_templates
from incidents.report import services as report_services
from incidents.tracker import services as tracker
from incidents.tracker.models import ShortcutExport
from tests.alert.conftest import fixture as alert_fixture
from tests.alert.conftest import make_integration
from tests.factories import make_incident, make_service, make_team, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident

AFTER, IN_TX = events.AFTER_COMMIT, events.IN_TRANSACTION

# Adding a subscriber is a conscious change: add it here and to the table in incidents/events.py.
AUDIT = (IN_TX, "incidents.audit.recording.record")
ROLLUP_INCIDENT, ROLLUP_PM, ROLLUP_ITEM = ((IN_TX, f"incidents.insights.rollup.{name}")
                                          for name in ("on_incident", "on_postmortem", "on_action_item"))
EXPECTED = {
    "incident.declared": [(AFTER, "incidents.notify.jobs.announce_declared"),
                          (AFTER, "incidents.slack.jobs.open_channel"),
                          (IN_TX, "incidents.search.subscribers.index_incident"), ROLLUP_INCIDENT, AUDIT],
    "incident.status_changed": [(AFTER, "incidents.notify.jobs.announce_status_change"),
                                (AFTER, "incidents.slack.jobs.follow_change"), ROLLUP_INCIDENT, AUDIT],
    "incident.severity_changed": [(AFTER, "incidents.slack.jobs.follow_change")],
    "incident.role_assigned": [(AFTER, "incidents.slack.jobs.follow_change"), AUDIT],
    "incident.update_posted": [(AFTER, "incidents.notify.jobs.announce_update"),
                               (AFTER, "incidents.slack.jobs.follow_change")],
    "incident.note_added": [(IN_TX, "incidents.search.subscribers.index_incident")],
    "incident.updated": [(AFTER, "incidents.slack.jobs.follow_change"),
                         (IN_TX, "incidents.search.subscribers.index_incident"), ROLLUP_INCIDENT, AUDIT],
    "alert.received": [],
    "postmortem.started": [(IN_TX, "incidents.search.subscribers.index_postmortem"), ROLLUP_PM, AUDIT],
    "postmortem.published": [(AFTER, "incidents.notify.jobs.announce_publication"),
                             (IN_TX, "incidents.tracker.jobs.export_on_publish"), ROLLUP_PM, AUDIT],
    "postmortem.reopened": [ROLLUP_PM, AUDIT],
    "postmortem.updated": [(IN_TX, "incidents.search.subscribers.index_postmortem"), AUDIT],
    "postmortem.factor_added": [(IN_TX, "incidents.search.subscribers.index_postmortem"), ROLLUP_PM, AUDIT],
    "postmortem.factor_removed": [(IN_TX, "incidents.search.subscribers.index_postmortem"), ROLLUP_PM, AUDIT],
    "alert.integration_created": [AUDIT],
    "alert.integration_updated": [AUDIT],
    "alert.integration_token_rotated": [AUDIT],
    "postmortem.template_changed": [AUDIT],
    "postmortem.category_changed": [AUDIT],
    "postmortem.phrase_changed": [AUDIT],
    "action_item.overdue": [(AFTER, "incidents.notify.jobs.remind_overdue")],
    "action_item.updated": [(IN_TX, "incidents.search.subscribers.index_action_item"), ROLLUP_ITEM, AUDIT],
    "action_item.created": [(IN_TX, "incidents.search.subscribers.index_action_item"), ROLLUP_ITEM, AUDIT],
    "action_item.deleted": [(IN_TX, "incidents.search.subscribers.index_action_item"), ROLLUP_ITEM, AUDIT],
    "tracker.settings_changed": [AUDIT],
    "report.recipients_changed": [AUDIT],
    "auth.signed_in": [AUDIT],
    "auth.sign_in_failed": [AUDIT],
    "auth.user_created": [AUDIT],
    "auth.user_updated": [AUDIT],
    "auth.token_created": [AUDIT],
    "auth.token_revoked": [AUDIT],
}


def test_every_event_and_its_subscribers(app):
    assert list(events.subscribers()) == list(events.EVENTS)
    assert events.subscribers() == EXPECTED


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def queue(app):
    """The app's queue swapped for one that only stores what is enqueued."""
    original = app.extensions["incidents.jobs"]
    swapped = JobQueue(app, QueueMemoryHuey("events-test", immediate=False))
    app.extensions["incidents.jobs"] = swapped
    yield swapped
    app.extensions["incidents.jobs"] = original


def queued(queue: JobQueue, name: str | None = None) -> list[tuple]:
    """(job name, ids) of every job enqueued so far (or only those of job `name`, as ids)."""
    jobs = [(task.name, tuple(task.args)) for task in queue.huey.pending()]
    return jobs if name is None else [ids for job, ids in jobs if job == name]


def notifications(queue: JobQueue) -> list[tuple[int, str, str]]:
    return [(incident_id, (e := json.loads(event))["kind"], e["key"])
            for incident_id, event in queued(queue, "send_notification")]


@pytest.fixture
def announcing(app):
    app.config["NOTIFY_ON_COMMIT"] = True
    yield
    app.config["NOTIFY_ON_COMMIT"] = False


class Probes:
    """A recorder subscribed to every event in both phases, beside the app's own subscribers."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []

    def in_transaction(self, _session, event: events.Event) -> None:
        self.calls.append((IN_TX, event.name, event.data))

    def after_commit(self, event: events.Event) -> None:
        self.calls.append((AFTER, event.name, event.data))

    def of(self, phase: str, name: str) -> list[dict]:
        return [data for p, n, data in self.calls if p == phase and n == name]


@pytest.fixture
def probes(app):
    original = events.registry(app)
    copy = events.Registry()
    copy.subscribers = {name: list(subs) for name, subs in original.subscribers.items()}
    app.extensions["incidents.events"] = copy
    probes = Probes()
    for name in events.EVENTS:
        events.subscribe(app, name, IN_TX, probes.in_transaction)
        events.subscribe(app, name, AFTER, probes.after_commit)
    yield probes
    app.extensions["incidents.events"] = original


# --- every service that announces something: the event, once, in each phase ------------------------------------
# Each scenario builds what it needs (committed), then returns the change to make (not committed) and what the
# event must carry. tests/alert/test_events.py follows alert.received through the webhook's batched path too.

TODAY = date(2026, 11, 26)


def _declaration(session, incident_id: int, severity: str) -> dict:
    incident = session.get(Incident, incident_id)
    return {"incident_id": incident_id, "severity": severity, "started_at": incident.started_at.isoformat(),
            "team_id": incident.team_id, "service_id": incident.service_id}


def _declared_orm(session):
    service = make_service()
    return (lambda: incidents.create_incident(session, title="Checkout 502", severity="SEV1",
                                              service_id=service.id).id,
            lambda incident_id: _declaration(session, incident_id, "SEV1"))


def _declared_core(session):
    service = make_service()
    return (lambda: incidents.declare_incident(session, title="Checkout 502", severity="SEV2",
                                               service_id=service.id),
            lambda incident_id: _declaration(session, incident_id, "SEV2"))


def _status_changed(session):
    incident = make_incident()

    def change():
        incidents.acknowledge_incident(session, incident)
        return incident.timeline[-1].id

    return change, lambda entry_id: {"incident_id": incident.id, "entry_id": entry_id, "before": "triggered",
                                     "after": "acknowledged"}


def _reopened(session):
    incident = make_resolved_incident()

    def change():
        incidents.transition(session, incident, "investigating")
        return incident.timeline[-1].id

    return change, lambda entry_id: {"incident_id": incident.id, "entry_id": entry_id, "before": "resolved",
                                     "after": "investigating"}


def _severity_changed(session):
    incident = make_incident(severity="SEV3")
    return (lambda: incidents.update_incident(session, incident, severity="SEV1"),
            lambda _: {"incident_id": incident.id, "before": "SEV3", "after": "SEV1"})


def _updated(session):
    incident = make_incident(title="Slow search", severity="SEV3", tags=["search"])
    return (lambda: incidents.update_incident(session, incident, title="Search down", severity="SEV2",
                                              tags=["search", "db"], summary=incident.summary),
            lambda _: {"incident_id": incident.id, "changes": {
                "title": ["Slow search", "Search down"], "severity": ["SEV3", "SEV2"],
                "tags": [["search"], ["db", "search"]]}})


def _role_assigned(session):
    incident, user = make_incident(), make_user()

    def change():
        incidents.set_role(session, incident, "commander", user.id)
        return incident.timeline[-1].id

    return change, lambda entry_id: {"incident_id": incident.id, "role": "commander", "user_id": user.id,
                                     "before_user_id": None, "entry_id": entry_id}


def _note_added(session):
    incident = make_incident()
    return (lambda: incidents.add_note(session, incident, "Rolled back").id,
            lambda entry_id: {"incident_id": incident.id, "entry_id": entry_id})


def _update_posted(session):
    incident = make_incident()

    def change():
        update = incidents.post_status_update(session, incident, impact="Checkout fails for EU cards",
                                              actions="Rolling back 1f3a2c")
        return update.id, incident.timeline[-1].id

    return change, lambda ids: {"incident_id": incident.id, "update_id": ids[0], "entry_id": ids[1]}


def _published(session):
    pm = fill_for_publishing(make_postmortem())
    pm_services.submit_for_review(session, pm)
    session.commit()
    return (lambda: pm_services.publish_postmortem(session, pm),
            lambda _: {"postmortem_id": pm.id, "incident_id": pm.incident_id})


def _pm_reopened(session):
    pm = fill_for_publishing(make_postmortem())
    pm_services.submit_for_review(session, pm)
    pm_services.publish_postmortem(session, pm)
    session.commit()
    admin = make_user(role="admin")
    return (lambda: pm_services.reopen_postmortem(session, pm, by=admin, reason=" Missed a factor "),
            lambda _: {"postmortem_id": pm.id, "incident_id": pm.incident_id, "reason": "Missed a factor"})


def _pm_updated(session):
    pm = make_postmortem()
    section = next(s for s in pm.sections if not s.body)
    key, version = section.key, section.version
    return (lambda: pm_services.save_section(session, pm, key, "What happened.", version),
            lambda _: {"postmortem_id": pm.id, "changes": {f"sections.{key}": ["", "What happened."]}})


def _pm_started(session):
    incident = make_resolved_incident()

    def change():
        return pm_services.start_postmortem(session, incident, "full-blameless").id

    return change, lambda pm_id: {"postmortem_id": pm_id, "incident_id": incident.id}


def _factor_added(session):
    pm = make_postmortem()
    return (lambda: pm_services.add_factor(session, pm, "configuration", "A flag default").id,
            lambda factor_id: {"postmortem_id": pm.id, "factor_id": factor_id})


def _factor_removed(session):
    pm = make_postmortem()
    factor = pm_services.add_factor(session, pm, "configuration", "A flag default")
    session.commit()
    factor_id = factor.id
    return (lambda: pm_services.remove_factor(session, pm, factor_id),
            lambda _: {"postmortem_id": pm.id, "factor_id": factor_id})


def _item_updated(session):
    owner = make_user()
    pm = make_postmortem()
    item = items.create_action_item(session, pm, title="Add a timeout", due_date=TODAY)
    session.commit()
    return (lambda: items.update_action_item(session, item, owner_id=owner.id, status="in_progress", title=item.title),
            lambda _: {"action_item_id": item.id, "changes": {"owner_id": [None, owner.id],
                                                              "status": ["open", "in_progress"]}})


def _overdue(session):
    pm = make_postmortem()
    item = items.create_action_item(session, pm, title="Add a timeout", due_date=TODAY - timedelta(days=1))
    items.create_action_item(session, pm, title="Not yet", due_date=TODAY + timedelta(days=1))
    session.commit()
    return (lambda: items.announce_overdue(session, TODAY),
            lambda _: {"action_item_id": item.id, "incident_id": pm.incident_id, "since": TODAY.isoformat()})


def _alert_received(session):
    row, token = make_integration("rollbar", "shop")
    info = alert_services.integration_for_token(session, "rollbar", token)
    raw = json.dumps(alert_fixture("rollbar_new_item_production"))
    parsed = parse("rollbar", json.loads(raw))[0]

    def change():
        result = alert_services.ingest(session, info, parsed, body=raw, headers={}, received_at=utcnow(),
                                       key=alert_services.dedup_key(parsed, raw))
        return result.alert_id, result.delivery_id, session.get(Alert, result.alert_id).incident_id

    return change, lambda ids: {"alert_id": ids[0], "delivery_id": ids[1], "kind": "trigger", "incident_id": ids[2]}


LIMITS = auth.LoginLimits(per_account_address=100, per_account=100, per_address=100, delay=1, window=60)


def _signed_in(session):
    user = make_user()
    return (lambda: auth.authenticate(session, user.email, "correct horse battery", "192.0.2.1", LIMITS).id,
            lambda user_id: {"user_id": user_id, "method": "password", "address": "192.0.2.1"})


def _sign_in_failed(session):
    user = make_user()
    return (lambda: auth.authenticate(session, user.email.upper(), "wrong password!", "192.0.2.1", LIMITS),
            lambda _: {"email": user.email, "address": "192.0.2.1", "reason": "bad_password"})


def _user_created(session):
    return (lambda: auth.create_user(session, email="new@example.com", name="New", role="viewer",
                                     password="a long enough password", via="cli").id,
            lambda user_id: {"user_id": user_id, "role": "viewer", "via": "cli"})


def _user_updated(session):
    make_user(role="admin")
    user = make_user()
    return (lambda: auth.update_user(session, user, role="viewer", active=False, password="another long password"),
            lambda _: {"user_id": user.id, "via": "admin", "changes": {
                "role": ["responder", "viewer"], "active": [True, False], "password": ["(set)", "(changed)"]}})


def _token_created(session):
    user = make_user()
    return (lambda: auth.create_token(session, user, "ci")[0].id,
            lambda token_id: {"token_id": token_id, "user_id": user.id, "scope": "write", "expires_at": None})


def _token_created_scoped(session):
    user = make_user()

    def change():
        token = auth.create_token(session, user, "ci", scope="read", expires_in_days=30)[0]
        return token.id, token.expires_at.isoformat()

    return change, lambda r: {"token_id": r[0], "user_id": user.id, "scope": "read", "expires_at": r[1]}


def _integration_created(session):
    def change():
        return alert_services.create_integration(session, source="rollbar", name="shop")[0].id

    return change, lambda integration_id: {"integration_id": integration_id, "source": "rollbar", "name": "shop"}


def _integration_updated(session):
    row, _ = make_integration("rollbar", "shop")
    rules = [{"environments": ["staging"], "action": "suppress"}]
    return (lambda: alert_services.update_integration(session, row, name="shop eu", rules=rules, active=False),
            lambda _: {"integration_id": row.id, "changes": {
                "name": ["shop", "shop eu"], "rules": [None, rules], "active": [True, False]}})


def _integration_rotated(session):
    row, _ = make_integration("rollbar", "shop")
    old = row.token_hint
    return (lambda: alert_services.rotate_token(session, row),
            lambda plain: {"integration_id": row.id, "changes": {"token_hint": [old, plain[-4:]]}})


def _template_changed(session):
    tpl = pm_templates.get_template(session, "lightweight")
    name = tpl.name
    return (lambda: pm_templates.update_template(session, tpl, name="Quick review"),
            lambda _: {"template_id": tpl.id, "changes": {"name": [name, "Quick review"]}})


def _category_changed(session):
    def change():
        return pm_templates.create_category(session, name="Vendor", description="Third parties").id

    return change, lambda cat_id: {"category_id": cat_id, "changes": {
        "slug": [None, "vendor"], "name": [None, "Vendor"], "description": [None, "Third parties"],
        "active": [None, True]}}


def _phrase_changed(session):
    row = blameless.create_phrase(session, phrase="should have known", suggestion="What made it hard to see?")
    session.commit()
    return (lambda: blameless.update_phrase(session, row.id, suggestion=row.suggestion, category=row.category,
                                            active=False),
            lambda _: {"phrase_id": row.id, "changes": {"active": [True, False]}})


def _item_created(session):
    pm = make_postmortem()
    return (lambda: items.create_action_item(session, pm, title="Add a timeout", due_date=TODAY).id,
            lambda item_id: {"action_item_id": item_id, "postmortem_id": pm.id, "changes": {
                "title": [None, "Add a timeout"], "description": [None, ""], "due_date": [None, TODAY.isoformat()],
                "priority": [None, "medium"], "status": [None, "open"], "wont_do_reason": [None, ""]}})


def _item_deleted(session):
    pm = make_postmortem()
    item = items.create_action_item(session, pm, title="Add a timeout")
    session.commit()
    item_id = item.id
    return (lambda: items.delete_action_item(session, item),
            lambda _: {"action_item_id": item_id, "postmortem_id": pm.id, "changes": {
                "title": ["Add a timeout", None], "description": ["", None], "priority": ["medium", None],
                "status": ["open", None], "wont_do_reason": ["", None]}})


def _tracker_settings(session):
    team = make_team()
    return (lambda: tracker.save_settings(session, team.id, workflow_state_id=500, workflow_state_name="Ready",
                                          auto_export=True),
            lambda _: {"team_id": team.id, "changes": {"workflow_state_id": [None, 500],
                                                       "workflow_state_name": [None, "Ready"],
                                                       "auto_export": [None, True]}})


def _recipients(session):
    report_services.set_recipients(session, None, "b@example.com")
    session.commit()
    return (lambda: report_services.set_recipients(session, None, "c@example.com, a@example.com"),
            lambda _: {"team_id": None, "changes": {"recipients": [["b@example.com"],
                                                                   ["a@example.com", "c@example.com"]]}})


def _token_revoked(session):
    user = make_user()
    token, _ = auth.create_token(session, user, "ci")
    session.commit()
    return (lambda: auth.revoke_token(session, token.id, by=user),
            lambda _: {"token_id": token.id, "user_id": user.id})


SCENARIOS: dict[str, Callable] = {
    "alert.received (ingest, core)": _alert_received,
    "incident.declared (create_incident)": _declared_orm,
    "incident.declared (declare_incident, core)": _declared_core,
    "incident.status_changed": _status_changed,
    "incident.status_changed (reopen)": _reopened,
    "incident.severity_changed": _severity_changed,
    "incident.updated": _updated,
    "incident.role_assigned": _role_assigned,
    "incident.note_added": _note_added,
    "incident.update_posted": _update_posted,
    "postmortem.published": _published,
    "postmortem.started": _pm_started,
    "postmortem.reopened": _pm_reopened,
    "postmortem.updated": _pm_updated,
    "postmortem.factor_added": _factor_added,
    "postmortem.factor_removed": _factor_removed,
    "action_item.updated": _item_updated,
    "action_item.overdue": _overdue,
    "auth.signed_in": _signed_in,
    "auth.sign_in_failed": _sign_in_failed,
    "auth.user_created": _user_created,
    "auth.user_updated": _user_updated,
    "auth.token_created": _token_created,
    "auth.token_created (scope, expiry)": _token_created_scoped,
    "alert.integration_created": _integration_created,
    "alert.integration_updated": _integration_updated,
    "alert.integration_token_rotated": _integration_rotated,
    "postmortem.template_changed": _template_changed,
    "postmortem.category_changed": _category_changed,
    "postmortem.phrase_changed": _phrase_changed,
    "action_item.created": _item_created,
    "action_item.deleted": _item_deleted,
    "tracker.settings_changed": _tracker_settings,
    "report.recipients_changed": _recipients,
    "auth.token_revoked": _token_revoked,
}


def _event(scenario: str) -> str:
    return scenario.split(" ")[0]


def test_every_event_has_a_scenario():
    assert {_event(s) for s in SCENARIOS} == set(events.EVENTS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_an_event_runs_in_the_transaction_then_once_after_the_commit(scenario, session, probes):
    change, expected = SCENARIOS[scenario](session)
    name = _event(scenario)
    probes.calls.clear()
    result = change()
    assert probes.of(IN_TX, name) == [expected(result)]
    assert probes.of(AFTER, name) == []  # nothing before the commit
    session.commit()
    assert probes.of(AFTER, name) == [expected(result)]
    session.commit()
    assert len(probes.of(AFTER, name)) == 1  # once


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_rolled_back_change_runs_no_after_commit_handler(scenario, session, probes):
    change, _ = SCENARIOS[scenario](session)
    name = _event(scenario)
    probes.calls.clear()
    change()
    assert len(probes.of(IN_TX, name)) == 1
    session.rollback()
    session.commit()
    assert probes.of(AFTER, name) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_rolled_back_savepoint_runs_no_after_commit_handler(scenario, session, probes):
    change, _ = SCENARIOS[scenario](session)
    name = _event(scenario)
    probes.calls.clear()
    savepoint = session.begin_nested()
    change()
    savepoint.rollback()
    session.commit()
    assert len(probes.of(IN_TX, name)) == 1 and probes.of(AFTER, name) == []


# --- the real subscribers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("declare", ["create_incident", "declare_incident"])
def test_a_declaration_is_announced_once_after_its_commit(declare, announcing, session, queue):
    service = make_service()
    incident_id = getattr(incidents, declare)(session, title="Checkout 502", severity="SEV1", service_id=service.id)
    incident_id = getattr(incident_id, "id", incident_id)
    assert queued(queue) == []
    session.commit()
    assert notifications(queue) == [(incident_id, "opened", f"incident:{incident_id}:opened")]
    session.commit()
    assert len(queued(queue)) == 1


@pytest.mark.parametrize("declare", ["create_incident", "declare_incident"])
def test_a_rolled_back_declaration_is_not_announced(declare, announcing, session, queue):
    service = make_service()
    getattr(incidents, declare)(session, title="Never committed", severity="SEV1", service_id=service.id)
    session.rollback()
    session.commit()
    savepoint = session.begin_nested()
    getattr(incidents, declare)(session, title="Rolled back inside", severity="SEV1", service_id=service.id)
    savepoint.rollback()
    session.commit()
    assert queued(queue) == []


def test_each_status_change_is_announced_once_after_its_commit(announcing, session, queue):
    incident = make_incident(severity="SEV1")
    queue.huey.flush()
    incidents.acknowledge_incident(session, incident)
    incidents.resolve_incident(session, incident)
    assert queued(queue) == []
    session.commit()
    entries = [e.id for e in incident.timeline if e.kind == "status"]
    assert notifications(queue) == [(incident.id, "status_changed", f"timeline:{entry_id}") for entry_id in entries]
    assert len(entries) == 2

    incidents.close_incident(session, incident)
    session.rollback()
    session.commit()
    assert len(queued(queue)) == 2


def test_nothing_is_announced_when_notify_on_commit_is_off(session, queue):
    incident = make_incident(severity="SEV1")
    incidents.acknowledge_incident(session, incident)
    session.commit()
    assert queued(queue) == []


@pytest.fixture
def auto_export(app, session, monkeypatch):
    """Shortcut configured (the jobs are only queued here, never run) and auto export on for every team."""
    monkeypatch.setitem(app.config, "SHORTCUT_API_TOKEN", "test-token")
    tracker.save_settings(session, None, workflow_state_id=None, auto_export=True)
    session.commit()


def _in_review(session):
    pm = fill_for_publishing(make_postmortem())
    pm_services.submit_for_review(session, pm)
    session.commit()
    return pm


def _exports(session) -> list[int]:
    return list(session.scalars(sa.select(ShortcutExport.action_item_id)))


def test_publishing_writes_the_outbox_in_its_transaction_and_announces_after_commit(announcing, auto_export,
                                                                                    session, queue):
    pm = _in_review(session)
    [item] = pm.action_items
    queue.huey.flush()
    pm_services.publish_postmortem(session, pm)
    assert _exports(session) == [item.id]  # the outbox row is part of the publishing transaction
    assert queued(queue) == []
    session.commit()
    export_id = session.scalar(sa.select(ShortcutExport.id))
    assert queued(queue, "export_action_item") == [(export_id,)]
    assert notifications(queue) == [(pm.incident_id, "postmortem_published", f"postmortem:{pm.id}:published")]
    session.commit()
    assert len(queued(queue)) == 2


def test_a_rolled_back_publish_leaves_no_outbox_row_and_queues_nothing(announcing, auto_export, session, queue):
    pm = _in_review(session)
    queue.huey.flush()
    pm_services.publish_postmortem(session, pm)
    session.rollback()
    session.commit()
    assert _exports(session) == [] and queued(queue) == []

    savepoint = session.begin_nested()
    pm_services.publish_postmortem(session, pm)
    assert len(_exports(session)) == 1
    savepoint.rollback()
    session.commit()
    assert _exports(session) == [] and queued(queue) == []
    assert not pm.is_published


def test_overdue_reminders_are_queued_once_after_the_scan_commits(session, queue):
    pm = make_postmortem(make_resolved_incident(severity="SEV4"))
    late = items.create_action_item(session, pm, title="Add a timeout", due_date=TODAY - timedelta(days=1))
    session.commit()
    queue.huey.flush()
    assert queue_overdue_reminders(TODAY) == 1
    assert notifications(queue) == [(pm.incident_id, "action_item_overdue",
                                     f"action_item:{late.id}:overdue:{TODAY.isoformat()}")]
    items.announce_overdue(session, TODAY)
    session.rollback()
    session.commit()
    assert len(queued(queue)) == 1


def test_an_after_commit_handler_runs_in_the_context_of_its_emitter(announcing, session, queue):
    """The webhook writer commits several requests' deliveries at once: each job keeps its own request's id."""
    from incidents import logs

    service = make_service()
    ids = []
    for request_id in ("req-a", "req-b"):
        token = logs.request_id.set(request_id)
        try:
            ids.append(incidents.declare_incident(session, title=request_id, severity="SEV1", service_id=service.id))
        finally:
            logs.request_id.reset(token)
    token = logs.request_id.set("req-committer")
    try:
        session.commit()
    finally:
        logs.request_id.reset(token)
    assert [(task.args[0], task.kwargs.get("request_id")) for task in queue.huey.pending()] == [
        (ids[0], "req-a"), (ids[1], "req-b")]
