"""The generic source: any JSON webhook, read with the integration's JMESPath mapping. Realistic bodies (an
Uptime Kuma notification, a Datadog-like batch) go through `/webhooks/generic`; the mapping is checked at
creation by the service, the CLI and the admin form; the form's preview shows the events and saves nothing."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.alert import services
from incidents.alert.models import Alert, AlertStatus, Delivery, Integration, Outcome
from incidents.alert.sources import Kind, OptionsError, ParseError, generic, parse
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.incident.models import Incident, TimelineEntry
from tests.alert.conftest import make_integration, post
from tests.conftest import post_form

# Uptime Kuma's webhook notification (application/json): heartbeat status 0 is down, 1 is up.
KUMA_DOWN = {
    "heartbeat": {"monitorID": 7, "status": 0, "time": "2026-11-30 01:12:00.123", "important": True,
                  "msg": "connect ECONNREFUSED 10.0.0.5:443", "duration": 60},
    "monitor": {"id": 7, "name": "Checkout API", "url": "https://checkout.example.com/health", "type": "http",
                "tags": [{"name": "env", "value": "prod"}, {"name": "team", "value": "payments"}]},
    "msg": "[Checkout API] [🔴 Down] connect ECONNREFUSED 10.0.0.5:443",
}
KUMA_MAPPING = {
    "fingerprint": "join(':', ['kuma', to_string(monitor.id)])",
    "title": "msg",
    "description": "heartbeat.msg",
    "severity": "'critical'",
    "status": "heartbeat.status",
    "resolved": [1],
    "link": "monitor.url",
    "environment": "monitor.tags[?name=='env'].value | [0]",
    "tags": "monitor.tags[].join(':', [name, value])",
}

# A Datadog-like batch: several monitors per body, each with its own transition.
BATCH = {
    "batch_id": "b-42",
    "alerts": [
        {"id": "1001", "title": "[Triggered] CPU high on web-1", "priority": "P1", "transition": "Triggered",
         "url": "https://app.datadoghq.example/monitors/1001", "tags": {"env": "prod", "host": "web-1"}},
        {"id": "1002", "title": "[Warn] Disk 80% on db-1", "priority": "P3", "transition": "Warn",
         "url": "https://app.datadoghq.example/monitors/1002", "tags": {"env": "prod", "host": "db-1"}},
    ],
}
BATCH_MAPPING = {
    "alerts": "alerts",
    "fingerprint": "id",
    "title": "title",
    "severity": "priority == 'P1' && 'critical' || 'warning'",
    "status": "transition",
    "resolved": ["Recovered"],
    "link": "url",
    "environment": "tags.env",
    "tags": "tags",
}


def rows(model) -> list:
    db.session.rollback()  # a fresh snapshot: the writer committed on its own connection
    return list(db.session.scalars(sa.select(model).order_by(model.id)))


def by_fingerprint() -> dict[str, Alert]:
    return {a.fingerprint: a for a in rows(Alert)}


def timeline(incident_id: int) -> list[str]:
    return list(db.session.scalars(sa.select(TimelineEntry.text).where(TimelineEntry.incident_id == incident_id)
                                   .order_by(TimelineEntry.id)))


# --- pure parsing ------------------------------------------------------------------------------------------

def test_parse_reads_the_mapped_fields():
    (event,) = parse("generic", KUMA_DOWN, {}, {"mapping": generic.check_mapping(KUMA_MAPPING)})
    assert (event.kind, event.event, event.bump) == (Kind.TRIGGER, "firing", True)
    assert (event.fingerprint, event.title, event.severity, event.environment, event.link) == (
        "kuma:7", KUMA_DOWN["msg"], "critical", "prod", "https://checkout.example.com/health")
    assert event.tags == ("env:prod", "team:payments") and event.description == "connect ECONNREFUSED 10.0.0.5:443"
    up = copy.deepcopy(KUMA_DOWN)
    up["heartbeat"]["status"] = 1
    assert parse("generic", up, {}, {"mapping": generic.check_mapping(KUMA_MAPPING)})[0].kind == Kind.CLOSE


def test_parse_without_a_fingerprint_names_the_expression():
    mapping = generic.check_mapping({"fingerprint": "alert.key", "title": "msg"})
    with pytest.raises(ParseError, match=r"fingerprint expression 'alert.key' yields nothing"):
        parse("generic", {"msg": "no key here"}, {}, {"mapping": mapping})
    with pytest.raises(ParseError, match="alerts expression 'items' yields no array"):
        parse("generic", {"items": {"a": 1}}, {}, {"mapping": {**mapping, "alerts": "items"}})
    with pytest.raises(ParseError, match="no mapping"):
        parse("generic", {"msg": "x"}, {}, {})


def test_a_list_fingerprint_links_tags_and_runtime_errors():
    mapping = generic.check_mapping({"fingerprint": "[host, check]", "title": "title", "link": "link",
                                     "tags": "labels"})
    (event,) = parse("generic", {"host": "web-1", "check": "disk", "title": "Disk", "link": "javascript:alert(1)",
                                 "labels": ["Blue Team", {"not": "text"}, "blue team"]}, {}, {"mapping": mapping})
    assert event.fingerprint == '["web-1","disk"]' and event.link is None and event.tags == ("blue-team",)
    broken = generic.check_mapping({"fingerprint": "length(id)", "title": "title"})
    with pytest.raises(ParseError, match="fingerprint expression 'length\\(id\\)' failed"):
        parse("generic", {"id": 5}, {}, {"mapping": broken})


@pytest.mark.parametrize(("mapping", "field"), [
    ({"title": "msg"}, "mapping.fingerprint"),
    ({"fingerprint": "id"}, "mapping.title"),
    ({"fingerprint": "id[", "title": "msg"}, "mapping.fingerprint"),
    ({"fingerprint": "id", "title": "msg", "priority": "p"}, "mapping.priority"),
    ({"fingerprint": "id", "title": "msg", "resolved": ["ok"]}, "mapping.resolved"),
    ({"fingerprint": "id", "title": "msg", "status": "s", "resolved": "ok"}, "mapping.resolved"),
    ({"fingerprint": 3, "title": "msg"}, "mapping.fingerprint"),
    (None, "mapping.fingerprint"),
])
def test_check_mapping_names_the_bad_field(mapping, field):
    with pytest.raises(OptionsError) as refused:
        generic.check_mapping(mapping)
    assert field in refused.value.fields and field in str(refused.value)


# --- through the endpoint ------------------------------------------------------------------------------------

def test_uptime_kuma_down_again_and_up_opens_updates_and_resolves(client):
    _row, token = make_integration("generic", "uptime-kuma", options={"mapping": KUMA_MAPPING})

    down = post(client, "generic", KUMA_DOWN, token)
    assert down.status_code == 200 and down.json["outcome"] == "processed"
    (alert,) = rows(Alert)
    assert (alert.fingerprint, alert.status, alert.severity, alert.environment, alert.occurrence_count) == (
        "kuma:7", AlertStatus.OPEN, "critical", "prod", 1)
    assert {"env:prod", "team:payments"} <= set(alert.tags)
    incident = db.session.get(Incident, alert.incident_id)
    assert incident.severity.value == "SEV1" and {"generic", "env:prod", "team:payments"} <= set(incident.tags)
    assert timeline(incident.id)[1] == f"Opened from Generic webhook alert: {KUMA_DOWN['msg']}"

    assert post(client, "generic", KUMA_DOWN, token).json["outcome"] == "duplicate"  # the sender's retry
    later = copy.deepcopy(KUMA_DOWN)
    later["heartbeat"]["time"] = "2026-11-30 01:13:00.456"
    assert post(client, "generic", later, token).json["outcome"] == "processed"
    (alert,) = rows(Alert)
    assert (alert.occurrence_count, alert.incident_id) == (2, incident.id)
    assert len(rows(Incident)) == 1

    up = copy.deepcopy(later)
    up["heartbeat"].update(status=1, msg="200 - OK")
    up["msg"] = "[Checkout API] [✅ Up] 200 - OK"
    assert post(client, "generic", up, token).json["outcome"] == "processed"
    (alert,) = rows(Alert)
    assert not alert.is_open
    assert timeline(incident.id)[-1] == "Generic webhook: alert resolved (status '1')"
    assert [d.outcome for d in rows(Delivery)] == [Outcome.PROCESSED] * 3


def test_an_alerts_array_makes_several_alerts(client):
    _row, token = make_integration("generic", "datadog-like", options={"mapping": BATCH_MAPPING})
    answer = post(client, "generic", BATCH, token)
    assert answer.status_code == 200 and len(answer.json["alerts"]) == 2
    found = by_fingerprint()
    assert sorted(found) == ["1001", "1002"]
    assert (found["1001"].severity, found["1002"].severity) == ("critical", "warning")
    assert found["1001"].incident_id is not None and found["1002"].incident_id is None  # the default rules
    assert {"env:prod", "host:web-1"} <= set(found["1001"].tags)
    assert found["1001"].link == "https://app.datadoghq.example/monitors/1001"

    recovered = {"batch_id": "b-43", "alerts": [{**BATCH["alerts"][0], "transition": "Recovered"}]}
    assert post(client, "generic", recovered, token).json["outcome"] == "processed"
    found = by_fingerprint()
    assert not found["1001"].is_open and found["1002"].is_open

    empty = post(client, "generic", {"batch_id": "b-44", "alerts": []}, token)
    assert empty.status_code == 200 and empty.json["outcome"] == "ignored"


def test_a_body_without_the_fingerprint_is_400_kept_rejected_and_replays_after_a_fix(client):
    row, token = make_integration("generic", "kuma", options={"mapping": KUMA_MAPPING | {"fingerprint": "monitor.uid"}})
    answer = post(client, "generic", KUMA_DOWN, token)
    assert answer.status_code == 400 and answer.json["outcome"] == "rejected"
    assert "'monitor.uid'" in answer.json["error"]["message"]
    (delivery,) = rows(Delivery)
    assert delivery.outcome == Outcome.REJECTED and "monitor.uid" in delivery.error and rows(Alert) == []

    row = db.session.get(Integration, row.id)
    services.update_integration(db.session, row, options={"mapping": KUMA_MAPPING})
    db.session.commit()
    replayed = services.replay_delivery(db.session, db.session.get(Delivery, delivery.id))
    db.session.commit()
    assert replayed.outcome == Outcome.PROCESSED and [a.fingerprint for a in rows(Alert)] == ["kuma:7"]


def test_a_wrong_token_is_401_and_stores_nothing(client):
    make_integration("generic", "kuma", options={"mapping": KUMA_MAPPING})
    assert post(client, "generic", KUMA_DOWN, "whk_not-the-token-at-all-000000").status_code == 401
    assert rows(Delivery) == []


# --- creation: service, CLI, form -----------------------------------------------------------------------------

def test_the_service_refuses_a_generic_integration_without_a_good_mapping(app):
    with pytest.raises(Invalid) as missing:
        services.create_integration(db.session, source="generic", name="none")
    assert set(missing.value.fields) == {"mapping.fingerprint", "mapping.title"}
    with pytest.raises(Invalid) as bad:
        services.create_integration(db.session, source="generic", name="bad",
                                    options={"mapping": {"fingerprint": "id[", "title": "t"}})
    assert list(bad.value.fields) == ["mapping.fingerprint"] and bad.value.status == 422
    db.session.rollback()
    assert rows(Integration) == []


def test_cli_takes_the_mapping_as_a_json_file(app, client, tmp_path):
    runner = app.test_cli_runner()
    good = tmp_path / "kuma.json"
    good.write_text(json.dumps(KUMA_MAPPING))
    made = runner.invoke(args=["integrations", "add", "generic", "kuma", "--mapping", str(good)])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().split("token=", 1)[1]
    assert rows(Integration)[0].options["mapping"]["fingerprint"] == KUMA_MAPPING["fingerprint"]
    assert post(client, "generic", KUMA_DOWN, token).json["outcome"] == "processed"

    missing = runner.invoke(args=["integrations", "add", "generic", "x", "--mapping", str(tmp_path / "nope.json")])
    assert missing.exit_code == 1 and "Cannot read the mapping file" in missing.output and "nope.json" in missing.output
    assert "Traceback" not in missing.output
    broken = tmp_path / "broken.json"
    broken.write_text("{\"fingerprint\": ")
    invalid = runner.invoke(args=["integrations", "add", "generic", "x", "--mapping", str(broken)])
    assert invalid.exit_code == 1 and "not valid JSON" in invalid.output
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"fingerprint": "id", "title": "msg", "severity": "level[", "colour": "red"}))
    refused = runner.invoke(args=["integrations", "add", "generic", "x", "--mapping", str(wrong)])
    assert refused.exit_code == 1
    assert "mapping.severity" in refused.output and "mapping.colour" in refused.output
    none = runner.invoke(args=["integrations", "add", "generic", "x"])
    assert none.exit_code == 1 and "needs a mapping" in none.output
    other = runner.invoke(args=["integrations", "add", "rollbar", "x", "--mapping", str(good)])
    assert other.exit_code == 1 and "generic" in other.output
    assert len(rows(Integration)) == 1


def _form(mapping: dict, **extra) -> dict:
    data = {"source": "generic", "name": "kuma", "rules": ""}
    for key, value in mapping.items():
        data[f"mapping.{key}"] = ", ".join(map(str, value)) if isinstance(value, list) else value
    return data | extra


def test_the_form_creates_with_a_mapping_and_refuses_a_bad_one(admin_client):
    bad = post_form(admin_client, "/admin/integrations", _form({"fingerprint": "monitor.id", "title": "msg[",
                                                                 "tags": "t"}))
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "Not a JMESPath expression" in html
    assert 'value="monitor.id"' in html  # what was typed is kept
    assert rows(Integration) == []

    made = post_form(admin_client, "/admin/integrations", _form(KUMA_MAPPING))
    assert made.status_code == 201
    (row,) = rows(Integration)
    assert row.options["mapping"] == generic.check_mapping(KUMA_MAPPING)

    page = admin_client.get(f"/admin/integrations/{row.id}").get_data(as_text=True)
    assert 'name="mapping.fingerprint"' in page and "to_string(monitor.id)" in page
    # Enter in a field submits the form's first button: Save, not Preview.
    assert page.index('<button class="primary">Save</button>') < page.index("/preview")
    rollbar, _token = make_integration("rollbar", "shop")
    assert 'name="mapping.' not in admin_client.get(f"/admin/integrations/{rollbar.id}").get_data(as_text=True)
    saved = post_form(admin_client, f"/admin/integrations/{row.id}",
                      {"name": "kuma", "active": "on", "default_rules": "on", **{
                          k: v for k, v in _form(KUMA_MAPPING | {"title": "monitor.name"}).items()
                          if k.startswith("mapping.")}})
    assert saved.status_code == 302 and rows(Integration)[0].options["mapping"]["title"] == "monitor.name"
    refused = post_form(admin_client, f"/admin/integrations/{row.id}",
                        {"name": "kuma", "active": "on", "default_rules": "on", "mapping.fingerprint": "",
                         "mapping.title": "msg"})
    assert refused.status_code == 422 and rows(Integration)[0].options["mapping"]["fingerprint"]

    other = admin_client.get("/admin/integrations").get_data(as_text=True)
    assert "Generic webhook" in other and "/webhooks/generic</code>" in other
    assert other.index('<button class="primary">Add integration</button>') < other.index('formaction="/admin')


def test_the_preview_shows_the_events_and_saves_nothing(admin_client):
    sample = json.dumps(BATCH)
    shown = post_form(admin_client, "/admin/integrations/preview", _form(BATCH_MAPPING, sample=sample))
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200
    assert "[Triggered] CPU high on web-1" in html and "[Warn] Disk 80% on db-1" in html
    assert "<code>1001</code>" in html and "host:web-1" in html and "2 events; nothing was saved." in html
    assert "&#34;batch_id&#34;" in html or "&quot;batch_id&quot;" in html  # the sample is kept
    assert rows(Integration) == [] and rows(Delivery) == [] and rows(Alert) == []

    unread = post_form(admin_client, "/admin/integrations/preview",
                       _form(BATCH_MAPPING | {"fingerprint": "uid"}, sample=sample))
    assert unread.status_code == 200 and "fingerprint expression &#39;uid&#39; yields nothing" in unread.get_data(
        as_text=True)
    not_json = post_form(admin_client, "/admin/integrations/preview", _form(BATCH_MAPPING, sample="{oops"))
    assert not_json.status_code == 422 and "Not valid JSON" in not_json.get_data(as_text=True)
    bad_mapping = post_form(admin_client, "/admin/integrations/preview",
                            _form({"fingerprint": "id", "title": "&&"}, sample=sample))
    assert bad_mapping.status_code == 422 and "Not a JMESPath expression" in bad_mapping.get_data(as_text=True)
    assert admin_client.post("/admin/integrations/preview", data=_form(BATCH_MAPPING, sample=sample)).status_code \
        == 400  # CSRF

    row, _token = make_integration("generic", "kuma", options={"mapping": KUMA_MAPPING})
    before = rows(Integration)[0].updated_at
    edited = post_form(admin_client, f"/admin/integrations/{row.id}/preview",
                       {"name": "kuma", **{k: v for k, v in _form(KUMA_MAPPING | {"title": "monitor.name"}).items()
                                           if k.startswith("mapping.")}, "sample": json.dumps(KUMA_DOWN)})
    html = edited.get_data(as_text=True)
    assert edited.status_code == 200 and "<td>Checkout API</td>" in html and "kuma:7" in html
    assert 'value="monitor.name"' in html
    (saved,) = rows(Integration)
    assert saved.options["mapping"]["title"] == "msg" and saved.updated_at == before


def test_the_preview_is_admin_only(client, responder):
    from tests.conftest import login

    login(client, responder)
    assert post_form(client, "/admin/integrations/preview", _form(BATCH_MAPPING, sample="{}")).status_code == 403


# --- any body, never a crash -----------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
_json = st.recursive(_scalars, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["id", "msg", "alerts", "tags", "status", "url"]) | st.text(
                         max_size=5), children, max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(payload=st.dictionaries(st.sampled_from(["id", "msg", "alerts", "tags", "status", "url"]), _json, max_size=6))
def test_any_body_is_events_or_a_parse_error(payload):
    """Whatever the body, the generic parser returns storable events or a ParseError (400): never a crash."""
    mapping = generic.check_mapping({"alerts": "alerts", "fingerprint": "[id, msg]", "title": "msg",
                                     "severity": "status", "status": "status", "link": "url", "tags": "tags",
                                     "environment": "length(tags)"})
    for options in ({"mapping": mapping}, {"mapping": {k: v for k, v in mapping.items() if k != "alerts"}}):
        try:
            events = parse("generic", payload, {}, options)
        except ParseError:
            continue
        for event in events:
            assert event.kind == Kind.IGNORE or (event.fingerprint and len(event.fingerprint) <= 255)
            assert len(event.title) <= 500 and all(len(t) <= 50 for t in event.tags)
