"""Rules that route, for every source, through `POST /webhooks/<source>`: route to a service and its team, attach to
the open incident of a service, suppress, a title regex, a payload field, old-shape rules unchanged; the rules
editor (rows, not JSON), an invalid regex refused with its field named, and "test against the last 50 alerts"."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from incidents.alert import services
from incidents.alert.models import Alert, Delivery, Integration
from incidents.alert.services.rules import decide, validate_rules
from incidents.alert.sources import Kind, ParsedEvent
from incidents.database import utcnow
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.incident.models import Incident, Severity, TimelineEntry
from tests.alert.conftest import fixture, make_integration, post
from tests.conftest import PAYLOADS, post_form
from tests.factories import make_incident, make_service, make_team


def _fresh():
    db.session.rollback()  # the writer committed on its own connection
    db.session.expire_all()


def _incidents() -> list[Incident]:
    _fresh()
    return list(db.session.scalars(sa.select(Incident).order_by(Incident.id)))


def _alerts() -> list[Alert]:
    _fresh()
    return list(db.session.scalars(sa.select(Alert).order_by(Alert.id)))


def _timeline(incident_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(TimelineEntry.text).where(TimelineEntry.incident_id == incident_id)
                                   .order_by(TimelineEntry.id)))


def _alertmanager_group() -> dict:
    path = PAYLOADS / "alertmanager" / "zulip_alert_firing_2alerts.json"
    if not path.is_file():
        pytest.skip(f"shared samples not present at {path.parent}")
    return json.loads(path.read_text())


def test_route_opens_on_the_rules_service_and_its_team(client):
    home = make_service(name="Shop")
    payments = make_service(name="Payments")
    _row, token = make_integration("opsgenie", "ops", service=home.slug, rules=[
        {"title_contains": "CHECKOUT api", "action": "route", "service": payments.slug, "incident_severity": "SEV2"},
        {"incident_severity": "SEV4"}])

    answer = post(client, "opsgenie", fixture("opsgenie_create_p1"), token)

    assert answer.status_code == 200 and answer.json["outcome"] == "processed"
    [incident] = _incidents()
    assert (incident.service_id, incident.team_id, incident.severity) == (payments.id, payments.team_id,
                                                                          Severity.SEV2)
    assert incident.id == answer.json["incident"]
    assert _timeline(incident.id)[-1].endswith("(routed by rule 1)")


def test_route_to_a_team_only(client):
    team = make_team(name="Database")
    _row, token = make_integration("rollbar", "shop", rules=[
        {"events": ["new_item"], "action": "route", "team": team.slug, "incident_severity": "SEV3"}])
    assert post(client, "rollbar", fixture("rollbar_new_item_production"), token).status_code == 200
    [incident] = _incidents()
    assert incident.team_id == team.id and incident.service_id is None and incident.severity == Severity.SEV3


def test_attach_joins_the_open_incident_of_the_service(client):
    service = make_service(name="Checkout")
    resolved = make_incident(title="Old outage", service_id=service.id)
    resolved.status = "resolved"
    db.session.commit()
    open_one = make_incident(title="Checkout down", service_id=service.id)
    _row, token = make_integration("opsgenie", "ops", service=service.slug, rules=[
        {"events": ["Create"], "action": "attach", "incident_severity": "SEV1"}])

    answer = post(client, "opsgenie", fixture("opsgenie_create_p1"), token)

    assert answer.status_code == 200 and answer.json["incident"] == open_one.id
    assert len(_incidents()) == 2  # nothing new was opened
    [alert] = _alerts()
    assert alert.incident_id == open_one.id
    assert _timeline(open_one.id)[-1] == "Alert attached by rule 1: Checkout API 5xx rate above 5%"


def test_attach_opens_one_when_none_is_open_then_the_group_joins_it(client):
    service = make_service(name="Hosts")
    _row, token = make_integration("alertmanager", "prod-cluster", service=service.slug, rules=[
        {"events": ["firing"], "tags": ["host:andromeda"], "action": "attach", "incident_severity": "SEV2"}])

    answer = post(client, "alertmanager", _alertmanager_group(), token)

    assert answer.status_code == 200
    [incident] = _incidents()  # two alerts, one incident: the first opened it, the second attached
    assert incident.service_id == service.id and incident.severity == Severity.SEV2
    assert {a.incident_id for a in _alerts()} == {incident.id} and len(_alerts()) == 2
    lines = _timeline(incident.id)
    assert sum(line.startswith("Opened from Alertmanager alert") for line in lines) == 1
    assert sum(line.startswith("Alert attached by rule 1") for line in lines) == 1


def test_suppress_stores_and_counts_but_opens_nothing(client):
    _row, token = make_integration("rollbar", "shop", rules=[
        {"title_contains": "keyerror", "action": "suppress"}, {"incident_severity": "SEV1"}])
    payload = fixture("rollbar_new_item_production")

    assert post(client, "rollbar", payload, token).json["outcome"] == "processed"
    assert post(client, "rollbar", fixture("rollbar_occurrence"), token).status_code == 200

    assert _incidents() == []
    [alert] = _alerts()
    assert alert.incident_id is None and alert.occurrence_count == 2
    assert alert.suppressed == "suppress: stored and counted, nothing else (rule 1)"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 2


def test_a_regex_rule_and_a_payload_field_rule(client):
    _row, token = make_integration("alertmanager", "prod-cluster", rules=[
        {"title_regex": r"(?i)^high (cpu|gpu) core temp", "field": "commonLabels.severity", "equals": "warning",
         "incident_severity": "SEV1"},
        {"title_regex": r"(?i)^high (cpu|gpu) core temp", "field": "commonLabels.severity", "equals": "critical",
         "incident_severity": "SEV3"}])
    post(client, "alertmanager", _alertmanager_group(), token)
    assert {i.severity for i in _incidents()} == {Severity.SEV3}  # rule 2: the field is "critical"


def test_old_shape_rules_mean_what_they_meant(client):
    _row, token = make_integration("rollbar", "shop", rules=[
        {"events": ["new_item"], "environments": ["staging"], "incident_severity": "SEV1"},
        {"events": ["new_item"], "severities": ["error"], "incident_severity": None},
        {"incident_severity": "SEV2"}])
    post(client, "rollbar", fixture("rollbar_new_item_production"), token)  # rule 2: kept as an alert only
    assert _incidents() == [] and _alerts()[0].suppressed is None
    # The sources' defaults are still valid rules, and the same event decides as before.
    ev = ParsedEvent("opsgenie", "Create", Kind.TRIGGER, severity="P1")
    rules = services.default_rules("opsgenie")
    assert validate_rules(rules) == rules
    assert decide(rules, ev, "Create").action == "open" and decide(rules, ev, "Create").severity == Severity.SEV1
    assert services.match_rules(rules, ev, "Close") is None


@pytest.mark.parametrize(("rule", "field"), [
    ({"title_regex": "(unclosed", "incident_severity": "SEV1"}, "rules.1.title_regex"),
    ({"title_regex": r"(a)\1", "incident_severity": "SEV1"}, "rules.1.title_regex"),  # backreference: not RE2
    ({"field": "a.[", "equals": "x"}, "rules.1.field"),
    ({"action": "route", "incident_severity": "SEV1"}, "rules.1.service"),
    ({"action": "attach"}, "rules.1.incident_severity"),
    ({"action": "explode"}, "rules.1.action"),
])
def test_invalid_rules_are_refused_by_the_service_with_the_field_named(app, rule, field):
    with pytest.raises(Invalid) as refused:
        services.create_integration(db.session, source="rollbar", name="bad", rules=[rule])
    assert field in refused.value.fields and "Rule 1" in refused.value.message


def test_routing_to_an_unknown_service_is_refused(app):
    with pytest.raises(Invalid) as refused:
        services.create_integration(db.session, source="rollbar", name="bad", rules=[
            {"action": "route", "service": "nowhere", "incident_severity": "SEV1"}])
    assert "rules.1.service" in refused.value.fields


def test_the_editor_saves_rows_and_refuses_a_bad_regex_naming_the_field(admin_client):
    service = make_service(name="Payments")
    row, _token = make_integration("rollbar", "shop")
    page = admin_client.get(f"/admin/integrations/{row.id}").get_data(as_text=True)
    assert 'name="rules.1.events"' in page and "<textarea" not in page  # rows of the defaults, not raw JSON

    bad = post_form(admin_client, f"/admin/integrations/{row.id}", {
        "name": "shop", "rules.1.title_regex": "([a-z", "rules.1.action": "suppress"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "title_regex is not a valid RE2 expression" in html
    assert 'value="([a-z"' in html  # the row comes back as typed
    _fresh()
    assert db.session.get(Integration, row.id).rules is None

    ok = post_form(admin_client, f"/admin/integrations/{row.id}", {
        "name": "shop", "active": "on",
        "rules.1.title_regex": "^KeyError", "rules.1.tags": "team:db, critical", "rules.1.action": "route",
        "rules.1.service": service.slug, "rules.1.incident_severity": "SEV2",
        "rules.2.environments": "staging", "rules.2.action": "suppress", "rules.2.delete": "1",
        "rules.3.field": "data.item.level", "rules.3.equals": "40", "rules.3.action": "alert_only",
        "rules.4.action": ""})
    assert ok.status_code == 302
    _fresh()
    assert db.session.get(Integration, row.id).rules == [
        {"tags": ["team:db", "critical"], "title_regex": "^KeyError", "service": service.slug,
         "incident_severity": "SEV2", "action": "route"},
        {"field": "data.item.level", "equals": "40", "action": "alert_only"}]


def test_test_against_the_last_50_alerts_writes_nothing(admin_client):
    row, token = make_integration("rollbar", "shop")  # the defaults: production errors open SEV2
    staging = fixture("rollbar_new_item_production")
    staging["data"]["item"]["id"] = 900000002
    staging["data"]["item"]["title"] = "Flaky test"
    staging["data"]["item"]["environment"] = "staging"
    post(admin_client, "rollbar", staging, token)
    post(admin_client, "rollbar", fixture("rollbar_new_item_production"), token)
    _fresh()
    before = (db.session.scalar(sa.select(sa.func.count()).select_from(Incident)),
              [(a.id, a.incident_id, a.suppressed, a.event_count) for a in _alerts()], row.rules)

    response = post_form(admin_client, f"/admin/integrations/{row.id}/rules/test", {
        "rules.1.title_contains": "flaky", "rules.1.action": "suppress",
        "rules.2.field": "data.item.level", "rules.2.equals": "40", "rules.2.action": "open",
        "rules.2.incident_severity": "SEV1"})

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "nothing was saved" in html
    assert "suppress: stored and counted, nothing else (rule 1)" in html
    assert "open a SEV1 incident (rule 2)" in html  # the payload field read from the stored body
    _fresh()
    assert before == (db.session.scalar(sa.select(sa.func.count()).select_from(Incident)),
                      [(a.id, a.incident_id, a.suppressed, a.event_count) for a in _alerts()],
                      db.session.get(Integration, row.id).rules)

    bad = post_form(admin_client, f"/admin/integrations/{row.id}/rules/test",
                    {"rules.1.title_regex": "(?<=x)y", "rules.1.action": "suppress"})
    assert bad.status_code == 422 and "title_regex" in bad.get_data(as_text=True)


def test_rules_pages_are_admin_only(responder_client):
    row, _token = make_integration("rollbar", "shop")
    assert post_form(responder_client, f"/admin/integrations/{row.id}/rules/test", {}).status_code == 403


def test_a_regex_that_does_not_match_falls_through_to_the_next_rule(client):
    _row, token = make_integration("rollbar", "shop", rules=[
        {"title_regex": r"^TypeError\b", "action": "suppress"},
        {"title_regex": r"KeyError: '\w+'$", "incident_severity": "SEV4"}])
    post(client, "rollbar", fixture("rollbar_new_item_production"), token)
    [incident] = _incidents()
    assert incident.severity == Severity.SEV4 and _alerts()[0].suppressed is None


def test_the_preview_shows_the_last_50_alerts_only(admin_client):
    row, _token = make_integration("rollbar", "shop")
    now = utcnow()
    db.session.execute(sa.insert(Alert), [
        {"integration_id": row.id, "source": "rollbar", "fingerprint": f"item-{n}", "title": f"Alert number {n}",
         "first_seen_at": now, "last_seen_at": now, "last_event": "new_item", "created_at": now,
         "updated_at": now} for n in range(55)])
    db.session.commit()
    html = post_form(admin_client, f"/admin/integrations/{row.id}/rules/test",
                     {"rules.1.title_contains": "number", "rules.1.action": "alert_only"}).get_data(as_text=True)
    assert "on the last 50 alert(s)" in html and html.count("keep as an alert only (rule 1)") == 50
