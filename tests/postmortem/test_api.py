import pytest

from incidents.extensions import db
from tests.factories import make_incident, make_token, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident


def put(api, url, json):
    return api.client.put(url, json=json, headers=api.headers)


def test_start_get_and_second_start_conflicts(api):
    incident = make_resolved_incident(title="Checkout 500s")
    r = api.post(f"/api/v1/incidents/{incident.ref}/postmortem", json={"template": "full-blameless"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert r.headers["Location"] == f"/api/v1/postmortems/{body['id']}"
    got = api.get(f"/api/v1/postmortems/{body['id']}").get_json()
    assert got["incident"]["ref"] == incident.ref and got["status"] == "draft"
    assert got["template"] == {"slug": "full-blameless", "name": "Full blameless review", "version": 1}
    first = got["sections"][0]
    assert set(first) >= {"key", "title", "kind", "required", "body", "version"}
    assert (first["key"], first["kind"], first["required"], first["version"]) == ("summary", "markdown", True, 1)
    timeline = next(x for x in got["sections"] if x["kind"] == "timeline")
    assert "**Detected**" in timeline["body"]
    assert {d["key"] for d in got["impact"]} >= {"time_to_detect", "time_to_resolve"}
    again = api.post(f"/api/v1/incidents/{incident.id}/postmortem", json={"template": "lightweight"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "conflict"


@pytest.mark.parametrize("payload, status", [
    (None, 400), ({}, 422), ({"template": ""}, 422), ({"template": "nope"}, 422), ({"template": 3}, 422),
    ({"template": "lightweight", "extra": 1}, 422),
])
def test_start_with_bad_input(api, payload, status):
    incident = make_resolved_incident()
    r = api.post(f"/api/v1/incidents/{incident.ref}/postmortem", json=payload)
    assert r.status_code == status
    assert "error" in r.get_json()


def test_start_on_unknown_incident_is_404(api):
    assert api.post("/api/v1/incidents/INC-999999/postmortem", json={"template": "lightweight"}).status_code == 404


def test_save_section_and_stale_version_conflict(api, client):
    pm = make_postmortem()
    url = f"/api/v1/postmortems/{pm.id}/sections/summary"
    r = put(api, url, {"body": "Ann's summary", "version": 1})
    assert r.status_code == 200 and r.get_json()["version"] == 2
    other = type(api)(client, make_token(make_user(name="Bob Second")))
    stale = put(other, url, {"body": "Bob's summary", "version": 1})
    assert stale.status_code == 409
    err = stale.get_json()["error"]
    assert err["code"] == "version_conflict"
    assert err["current"]["body"] == "Ann's summary" and err["current"]["version"] == 2
    assert err["current"]["author"] == "Rita Responder"
    assert err["yours"] == {"body": "Bob's summary", "version": 1}
    db.session.expire_all()
    assert api.get(f"/api/v1/postmortems/{pm.id}").get_json()["sections"][0]["body"] == "Ann's summary"
    merged = put(other, url, {"body": "Ann's summary\nBob's summary", "version": 2})
    assert merged.status_code == 200 and merged.get_json()["version"] == 3
    history = api.get(f"{url}/history").get_json()["items"]
    assert [(h["version"], h["author"]) for h in history] == [(1, None), (2, "Rita Responder"), (3, "Bob Second")]


@pytest.mark.parametrize("payload", [{"body": "x"}, {"version": 1}, {"body": "x", "version": "1"},
                                     {"body": None, "version": 1}, {"body": "x", "version": 0}])
def test_save_section_bad_input_is_422(api, payload):
    pm = make_postmortem()
    assert put(api, f"/api/v1/postmortems/{pm.id}/sections/summary", payload).status_code == 422


def test_save_unknown_section_or_postmortem_is_404(api):
    pm = make_postmortem()
    assert put(api, f"/api/v1/postmortems/{pm.id}/sections/nope", {"body": "x", "version": 1}).status_code == 404
    assert put(api, "/api/v1/postmortems/999999/sections/summary", {"body": "x", "version": 1}).status_code == 404


def test_publish_reports_each_unmet_gate_then_publishes(api):
    pm = make_postmortem(template="lightweight")
    assert api.post(f"/api/v1/postmortems/{pm.id}/publish").status_code == 409  # still a draft
    assert api.post(f"/api/v1/postmortems/{pm.id}/review").status_code == 200
    r = api.post(f"/api/v1/postmortems/{pm.id}/publish")
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["code"] == "quality_gates"
    assert [(m["gate"], m["target"]) for m in err["missing"]] == [
        ("required_section", "summary"), ("required_section", "action_items"), ("contributing_factor", None)]
    put(api, f"/api/v1/postmortems/{pm.id}/sections/summary", {"body": "Short summary", "version": 1})
    f = api.post(f"/api/v1/postmortems/{pm.id}/contributing-factors",
                 json={"category": "capacity", "description": "Pool exhausted"})
    assert f.status_code == 201 and f.get_json()["category"]["slug"] == "capacity"
    item = api.post(f"/api/v1/postmortems/{pm.id}/action-items", json={"title": "Alert on pool usage"})
    assert item.status_code == 201
    r = api.post(f"/api/v1/postmortems/{pm.id}/publish")
    assert [m["gate"] for m in r.get_json()["error"]["missing"]] == [
        "action_item_owner", "action_item_due_date", "action_item_type"]
    owner = make_user()
    patched = api.patch(f"/api/v1/action-items/{item.get_json()['id']}",
                        json={"owner_id": owner.id, "due_date": "2031-03-01", "type": "detect"})
    assert patched.status_code == 200
    r = api.post(f"/api/v1/postmortems/{pm.id}/publish")
    assert r.status_code == 200 and r.get_json()["status"] == "published"
    assert put(api, f"/api/v1/postmortems/{pm.id}/sections/summary",
               {"body": "late", "version": 2}).status_code == 409


def test_reopen_is_for_admins(api, client):
    pm = fill_for_publishing(make_postmortem())
    api.post(f"/api/v1/postmortems/{pm.id}/review")
    assert api.post(f"/api/v1/postmortems/{pm.id}/publish").status_code == 200
    assert api.post(f"/api/v1/postmortems/{pm.id}/reopen").status_code == 403
    admin = type(api)(client, make_token(make_user(role="admin")))
    r = admin.post(f"/api/v1/postmortems/{pm.id}/reopen", json={"reason": "new logs"})
    assert r.status_code == 200 and r.get_json()["status"] == "draft"
    assert r.get_json()["history"][-1]["kind"] == "reopened"


def test_action_items_crud_and_filters(api):
    owner = make_user(email="owner@example.com")
    pm = make_postmortem()
    r = api.post(f"/api/v1/postmortems/{pm.id}/action-items", json={
        "title": "Canary config pushes", "owner_id": owner.id, "due_date": "2031-01-15", "type": "prevent",
        "priority": "high", "estimate": 5, "description": "Stage 1% first"})
    assert r.status_code == 201, r.get_json()
    item = r.get_json()
    assert (item["owner"]["email"], item["type"], item["priority"], item["estimate"], item["status"]) == (
        "owner@example.com", "prevent", "high", 5, "open")
    assert api.get(f"/api/v1/action-items/{item['id']}").get_json()["title"] == "Canary config pushes"
    listed = api.get("/api/v1/action-items?owner=owner@example.com&status=open").get_json()
    assert [i["id"] for i in listed["items"]] == [item["id"]] and listed["total"] == 1
    assert api.get("/api/v1/action-items?status=done").get_json()["total"] == 0
    assert api.get(f"/api/v1/action-items?team={pm.incident.team_id or 999999}").status_code in (200, 404)
    bad = api.patch(f"/api/v1/action-items/{item['id']}", json={"status": "wont_do"})
    assert bad.status_code == 422 and "wont_do_reason" in bad.get_json()["error"]["fields"]
    ok = api.patch(f"/api/v1/action-items/{item['id']}", json={"status": "wont_do", "wont_do_reason": "Replaced"})
    assert ok.get_json()["status"] == "wont_do"
    assert api.patch(f"/api/v1/action-items/{item['id']}", json={"type": "guess"}).status_code == 422
    assert api.patch(f"/api/v1/action-items/{item['id']}", json=[1]).status_code == 400  # not a JSON object
    assert api.get("/api/v1/action-items/999999").status_code == 404
    assert api.get("/api/v1/action-items?per_page=0").status_code == 422
    assert api.get("/api/v1/action-items?page=x").status_code == 422


def test_list_and_search(api):
    pm = make_postmortem(make_resolved_incident(title="Redis failover"))
    make_postmortem(make_resolved_incident(title="DNS outage"))
    r = api.get("/api/v1/postmortems?q=redis")
    assert [i["id"] for i in r.get_json()["items"]] == [pm.id]
    assert api.get("/api/v1/postmortems?status=draft&per_page=1").get_json()["pages"] == 2
    assert api.get("/api/v1/postmortems?since=yesterday").status_code == 422
    assert api.get("/api/v1/postmortems?status=bogus").status_code == 422


def test_blameless_check(api):
    r = api.post("/api/v1/blameless-check", json={"text": "Obviously we should have known"})
    assert r.status_code == 200
    findings = r.get_json()["findings"]
    assert [(f["start"], f["end"], f["phrase"]) for f in findings] == [(0, 9, "Obviously"), (13, 24, "should have")]
    assert all(f["suggestion"] for f in findings)
    assert api.post("/api/v1/blameless-check", json={"nope": 1}).status_code == 422
    assert api.post("/api/v1/blameless-check", data="not json").status_code == 400


def test_viewers_read_but_do_not_write(client, viewer):
    from tests.factories import ApiClient

    pm = make_postmortem()
    v = ApiClient(client, make_token(viewer))
    assert v.get(f"/api/v1/postmortems/{pm.id}").status_code == 200
    assert v.post("/api/v1/blameless-check", json={"text": "fine"}).status_code == 200
    assert put(v, f"/api/v1/postmortems/{pm.id}/sections/summary", {"body": "x", "version": 1}).status_code == 403
    assert v.post(f"/api/v1/incidents/{make_incident().ref}/postmortem", json={"template": "lightweight"}
                  ).status_code == 403
    assert client.get(f"/api/v1/postmortems/{pm.id}").status_code == 401


def test_postmortem_routes_are_in_the_openapi_document(client):
    """The app's one OpenAPI document carries every post-mortem and action-item route and their schemas."""
    document = client.get("/api/v1/openapi.json").get_json()
    paths = set(document["paths"])
    assert {"/api/v1/incidents/{ref}/postmortem", "/api/v1/postmortems/{postmortem_id}",
            "/api/v1/postmortems/{postmortem_id}/sections/{key}", "/api/v1/postmortems/{postmortem_id}/publish",
            "/api/v1/postmortems/{postmortem_id}/action-items", "/api/v1/action-items",
            "/api/v1/action-items/{item_id}", "/api/v1/blameless-check"} <= paths
    for schema in ("Postmortem", "SectionConflict", "QualityGatesError", "ActionItem", "BlamelessCheckResult"):
        assert any(k.startswith(schema) for k in document["components"]["schemas"])


def test_nul_characters_are_refused_as_invalid_input_on_every_database(api):
    """PostgreSQL cannot store NUL: every text input answers 422 instead of failing in SQL."""
    pm = make_postmortem()
    base = f"/api/v1/postmortems/{pm.id}"
    responses = [
        put(api, f"{base}/sections/summary", {"body": "a\x00b", "version": 1}),
        api.post(f"{base}/action-items", json={"title": "a\x00b"}),
        api.post(f"{base}/contributing-factors", json={"category": "process", "description": "\x00"}),
        api.post(f"{base}/comments", json={"section": "summary", "body": "x\x00"}),
        api.get("/api/v1/postmortems?q=%00"),
        api.get("/api/v1/postmortems?team=a%00"),
        api.get("/api/v1/action-items?owner=a%00"),
        api.post(f"{base}/contributing-factors", json={"category": "pro\x00cess"}),
        api.post(f"/api/v1/incidents/{make_incident().ref}/postmortem", json={"template": "light\x00weight"}),
    ]
    assert [r.status_code for r in responses] == [422] * 9
    assert responses[0].get_json()["error"]["fields"] == {"body": ["Contains a NUL character."]}
