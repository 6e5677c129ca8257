"""The incident JSON API, through real bearer tokens against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from incidents.extensions import db
from incidents.incident.models import Incident
from tests.factories import ApiClient, make_incident, make_service, make_team, make_token, make_user


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def test_create_returns_201_location_and_the_full_incident(api, responder):
    service = make_service(name="Payments API", slug="payments")
    response = api.post("/api/v1/incidents", json={
        "title": "Checkout errors", "severity": "SEV1", "service": "payments", "tags": ["Checkout", "db"],
        "summary": "**5xx** on checkout <script>alert(1)</script>", "detected_at": "2024-05-01T10:00:00Z",
        "started_at": "2024-05-01T09:50:00+02:00", "commander_id": responder.id,
    })
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/incidents/{body['ref']}")
    assert body["ref"] == f"INC-{body['id']}"
    assert body["url"] == f"http://localhost/incidents/{body['ref']}"
    assert (body["title"], body["severity"], body["status"]) == ("Checkout errors", "SEV1", "triggered")
    assert body["service"] == {"id": service.id, "slug": "payments", "name": "Payments API"}
    assert body["team"]["id"] == service.team_id  # placed with the service's team
    assert body["tags"] == ["checkout", "db"]
    assert body["commander"] == {"id": responder.id, "name": responder.name}
    assert body["commander_id"] == responder.id and body["scribe"] is None
    assert "<strong>5xx</strong>" in body["summary_html"] and "<script" not in body["summary_html"]
    assert _iso(body["detected_at"]) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert _iso(body["started_at"]) == datetime(2024, 5, 1, 7, 50, tzinfo=UTC)
    for field in ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at"):
        assert body[field] is None
    _iso(body["created_at"]), _iso(body["updated_at"])

    again = api.get(response.headers["Location"])
    assert again.status_code == 200 and again.get_json() == body
    assert api.get(f"/api/v1/incidents/{body['id']}").get_json()["ref"] == body["ref"]
    assert db.session.get(Incident, body["id"]).created_by_id == responder.id


def test_create_reads_times_without_offset_as_utc(api):
    body = api.post("/api/v1/incidents", json={"title": "t", "severity": "SEV3",
                                               "detected_at": "2024-05-01T10:00:00"}).get_json()
    assert _iso(body["detected_at"]) == datetime(2024, 5, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize("payload, field", [
    ({"severity": "SEV1"}, "title"),
    ({"title": "", "severity": "SEV1"}, "title"),
    ({"title": "x" * 201, "severity": "SEV1"}, "title"),
    ({"title": "t"}, "severity"),
    ({"title": "t", "severity": "SEV9"}, "severity"),
    ({"title": 5, "severity": "SEV1"}, "title"),
    ({"title": "t", "severity": "SEV1", "colour": "red"}, "colour"),
    ({"title": "t", "severity": "SEV1", "tags": "db"}, "tags"),
    ({"title": "t", "severity": "SEV1", "tags": ["not a tag!"]}, "tags"),
    ({"title": "t", "severity": "SEV1", "detected_at": "yesterday"}, "detected_at"),
    ({"title": "t", "severity": "SEV1", "detected_at": "99999-01-01T00:00:00Z"}, "detected_at"),
    ({"title": "t", "severity": "SEV1", "commander_id": 10**30}, "commander_id"),
    ({"title": "t", "severity": "SEV1", "commander_id": "7"}, "commander_id"),
    ({"title": "t", "severity": "SEV1", "commander_id": 999_999}, "commander"),
    ({"title": "t", "severity": "SEV1", "service": "nope"}, "service"),
    ({"title": "t", "severity": "SEV1", "service": 10**30}, "service"),
    ({"title": "t", "severity": "SEV1", "team": ["x"]}, "team"),
    ({"title": "t", "severity": "SEV1", "started_at": "2024-05-02T00:00:00Z",
      "detected_at": "2024-05-01T00:00:00Z"}, "started_at"),
])
def test_create_invalid_fields_are_422_with_field_messages(api, payload, field):
    response = api.post("/api/v1/incidents", json=payload)
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["fields"], error
    assert db.session.query(Incident).count() == 0


@pytest.mark.parametrize("raw", ['{"title": "t", "severity": "SEV1", "commander_id": 1e999}',
                                 '{"title": "t", "severity": "SEV1", "commander_id": 1.5}',
                                 '{"title": "t", "severity": "SEV1", "commander_id": -1}'])
def test_numbers_json_allows_but_the_field_does_not_are_422(api, raw):
    response = api.client.post("/api/v1/incidents", data=raw, headers=api.headers, content_type="application/json")
    assert response.status_code == 422
    assert "commander_id" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("data, message", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "JSON object, not an array"),
    ('"text"', "JSON object, not a string"),
    ("null", "JSON object, not null"),
    ('{"title": NaN, "severity": "SEV1"}', "not valid JSON"),
    (b'{"title": "\xff"}', "UTF-8"),
])
def test_body_that_is_not_a_json_object_is_400(api, data, message):
    response = api.client.post("/api/v1/incidents", data=data, headers=api.headers,
                               content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and message in error["message"]


def test_list_filters_and_pagination(api, app):
    team = make_team(slug="core")
    service = make_service(slug="search", team_id=make_team().id)
    a = make_incident(title="Search slow", severity="SEV1", service_id=service.id, tags=["latency"])
    b = make_incident(title="Login broken", severity="SEV2", team_id=team.id)
    c = make_incident(title="Cache cold", severity="SEV3")
    api.patch(f"/api/v1/incidents/{b.ref}", json={"status": "acknowledged"})
    api.patch(f"/api/v1/incidents/{c.ref}", json={"status": "resolved", "resolution": "Warmed"})

    def refs(query=""):
        response = api.get(f"/api/v1/incidents{query}")
        assert response.status_code == 200, response.get_json()
        return [i["ref"] for i in response.get_json()["items"]]

    assert refs() == [c.ref, b.ref, a.ref]  # newest first
    assert refs("?status=triggered") == [a.ref]
    assert refs("?status=triggered,acknowledged") == [b.ref, a.ref]
    assert refs("?status=triggered&status=resolved") == [c.ref, a.ref]
    assert refs("?severity=SEV2,SEV3") == [c.ref, b.ref]
    assert refs("?service=search") == [a.ref]
    assert refs(f"?service={service.id}") == [a.ref]
    assert refs("?team=core") == [b.ref]
    assert refs("?tag=LATENCY") == [a.ref]
    assert refs("?q=login") == [b.ref]
    assert refs(f"?q={c.ref}") == [c.ref]
    assert refs("?q=INC-" + "9" * 18) == []
    assert refs("?open=true") == [b.ref, a.ref]

    page = api.get("/api/v1/incidents?per_page=2&page=2").get_json()
    assert set(page) == {"items", "page", "pages", "total", "at_least", "next"}
    assert (page["page"], page["pages"], page["total"], page["at_least"], page["next"]) == (2, 2, 3, False, None)
    assert [i["ref"] for i in page["items"]] == [a.ref]

    app.config["MAX_PER_PAGE"] = 2
    try:
        capped = api.get("/api/v1/incidents?per_page=1000").get_json()
        assert len(capped["items"]) == 2 and capped["pages"] == 2
    finally:
        app.config["MAX_PER_PAGE"] = 200


@pytest.mark.parametrize("query, field", [
    ("status=bogus", "status"),
    ("severity=SEV0", "severity"),
    ("page=0", "page"),
    ("page=" + "9" * 40, "page"),
    ("per_page=-1", "per_page"),
    ("per_page=lots", "per_page"),
    ("open=perhaps", "open"),
    ("service=nowhere", "service"),
    ("team=" + "9" * 40, "team"),
])
def test_list_bad_query_parameters_are_422(api, query, field):
    response = api.get(f"/api/v1/incidents?{query}")
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("ref", ["INC-999999", "999999", "INC-" + "9" * 18, "9" * 40, "nonsense"])
def test_unknown_incident_is_404(api, ref):
    for response in (api.get(f"/api/v1/incidents/{ref}"), api.patch(f"/api/v1/incidents/{ref}", json={}),
                     api.get(f"/api/v1/incidents/{ref}/timeline"),
                     api.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "x"})):
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_patch_edits_fields_roles_and_placement(api, responder):
    scribe = make_user(name="Sam Scribe")
    service = make_service(slug="billing")
    incident = make_incident(commander_id=responder.id)
    response = api.patch(f"/api/v1/incidents/{incident.ref}", json={
        "title": "Billing double charges", "severity": "SEV1", "summary": "Refunds _pending_",
        "service": "billing", "tags": ["money"], "scribe_id": scribe.id, "commander_id": None,
        "detected_at": "2030-01-01T00:00:00Z",
    })
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["title"], body["severity"], body["tags"]) == ("Billing double charges", "SEV1", ["money"])
    assert body["summary_html"] == "<p>Refunds <em>pending</em></p>"
    assert body["service"]["slug"] == "billing" and body["team"]["id"] == service.team_id
    assert body["scribe"] == {"id": scribe.id, "name": "Sam Scribe"} and body["commander"] is None
    assert _iso(body["detected_at"]) == datetime(2030, 1, 1, tzinfo=UTC)

    texts = [e["text"] for e in api.get(f"/api/v1/incidents/{incident.ref}/timeline").get_json()["items"]]
    assert "Severity: SEV2 -> SEV1" in texts and "Scribe: Sam Scribe" in texts and "Incident commander cleared" in texts

    cleared = api.patch(f"/api/v1/incidents/{incident.ref}", json={"service": None, "team": None}).get_json()
    assert cleared["service"] is None and cleared["team"] is None


@pytest.mark.parametrize("payload, field", [
    ({"title": None}, "title"), ({"status": "exploded"}, "status"), ({"severity": 1}, "severity"),
    ({"scribe_id": True}, "scribe_id"), ({"ref": "INC-1"}, "ref"), ({"started_at": "2999-01-01T00:00:00Z"},
                                                                    "started_at"),
])
def test_patch_invalid_fields_are_422(api, payload, field):
    incident = make_incident()
    response = api.patch(f"/api/v1/incidents/{incident.ref}", json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_patch_status_walks_every_transition_and_sets_milestones(api):
    incident = make_incident()
    url = f"/api/v1/incidents/{incident.ref}"
    milestones = ("acknowledged_at", "mitigated_at", "resolved_at", "closed_at")

    def move(status):
        response = api.patch(url, json={"status": status, "resolution": "Rolled back"})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["status"] == status
        return {m: body[m] for m in milestones}

    assert move("acknowledged")["acknowledged_at"] is not None
    assert move("investigating")["mitigated_at"] is None
    times = move("mitigated")
    assert times["mitigated_at"] is not None and times["resolved_at"] is None
    assert move("investigating")["mitigated_at"] == times["mitigated_at"]  # back from mitigated keeps the time
    times = move("resolved")
    assert times["resolved_at"] is not None and times["closed_at"] is None
    times = move("closed")
    assert times["closed_at"] is not None and times["resolved_at"] is not None
    reopened = move("investigating")  # reopen clears the resolution times
    assert reopened["resolved_at"] is None and reopened["closed_at"] is None
    assert reopened["acknowledged_at"] is not None

    straight = make_incident()  # resolving unacknowledged work fills the earlier milestones
    body = api.patch(f"/api/v1/incidents/{straight.ref}", json={"status": "resolved", "resolution": "Fixed"}).get_json()
    assert body["acknowledged_at"] == body["mitigated_at"] == body["resolved_at"] is not None

    entries = api.get(f"{url}/timeline?per_page=100").get_json()["items"]
    moves = [(e["data"]["from"], e["data"]["to"]) for e in entries if e["kind"] == "status"]
    assert moves == [("triggered", "acknowledged"), ("acknowledged", "investigating"),
                     ("investigating", "mitigated"), ("mitigated", "investigating"),
                     ("investigating", "resolved"), ("resolved", "closed"), ("closed", "investigating")]


@pytest.mark.parametrize("start, to, message", [
    ([], "closed", "only an incident that is resolved can be closed"),
    (["acknowledged"], "triggered", "Cannot move INC-{id} back to triggered"),
    (["acknowledged"], "acknowledged", "INC-{id} is already acknowledged"),
    (["resolved"], "mitigated", "Cannot mitigate INC-{id}: it is resolved"),
])
def test_invalid_transition_is_409_and_changes_nothing(api, start, to, message):
    incident = make_incident(title="Before")
    url = f"/api/v1/incidents/{incident.ref}"
    for status in start:
        assert api.patch(url, json={"status": status, "resolution": "Fixed"}).status_code == 200
    entries = api.get(f"{url}/timeline").get_json()["total"]
    response = api.patch(url, json={"status": to, "title": "After"})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "invalid_transition"
    assert message.format(id=incident.id) in error["message"]
    after = api.get(url).get_json()
    assert after["title"] == "Before" and after["status"] == (start[-1] if start else "triggered")
    assert api.get(f"{url}/timeline").get_json()["total"] == entries


def test_timeline_notes_and_pagination(api, responder):
    incident = make_incident()
    url = f"/api/v1/incidents/{incident.ref}/timeline"
    response = api.post(url, json={"body": "Rolled back **v42** <img src=x onerror=alert(1)>",
                                   "occurred_at": "2020-01-01T00:00:00Z"})
    assert response.status_code == 201, response.get_json()
    note = response.get_json()
    assert note["kind"] == "note" and note["author"] == {"id": responder.id, "name": responder.name}
    assert "<strong>v42</strong>" in note["body_html"] and "onerror" not in note["body_html"]
    assert _iso(note["occurred_at"]) == datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(3):
        api.post(url, json={"body": f"note {i}"})

    first = api.get(f"{url}?per_page=2").get_json()
    assert (first["page"], first["pages"], first["total"]) == (1, 3, 5)
    assert first["items"][0]["id"] == note["id"]  # oldest first: the backdated note leads
    assert [e["body"] for e in api.get(f"{url}?per_page=2&page=3").get_json()["items"]] == ["note 2"]

    for bad in ({}, {"body": ""}, {"body": "x", "occurred_at": "soon"}, {"body": "x", "kind": "status"}):
        response = api.post(url, json=bad)
        assert response.status_code == 422 and response.get_json()["error"]["fields"]


def test_viewer_reads_but_cannot_write(client, viewer):
    incident = make_incident()
    api = ApiClient(client, make_token(viewer))
    assert api.get("/api/v1/incidents").status_code == 200
    assert api.get(f"/api/v1/incidents/{incident.ref}/timeline").status_code == 200
    for response in (api.post("/api/v1/incidents", json={"title": "t", "severity": "SEV1"}),
                     api.patch(f"/api/v1/incidents/{incident.ref}", json={"status": "acknowledged"}),
                     api.post(f"/api/v1/incidents/{incident.ref}/timeline", json={"body": "hi"})):
        assert response.status_code == 403
        error = response.get_json()["error"]
        assert error["code"] == "forbidden" and "responder" in error["message"]
    assert api.get(f"/api/v1/incidents/{incident.ref}").get_json()["status"] == "triggered"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer inc_wrong"}, {"Authorization": "Basic abc"},
])
def test_missing_or_invalid_token_is_401(client, responder, headers):
    incident = make_incident()
    for response in (client.get("/api/v1/incidents", headers=headers),
                     client.get(f"/api/v1/incidents/{incident.ref}", headers=headers),
                     client.patch(f"/api/v1/incidents/{incident.ref}", json={"status": "resolved"}, headers=headers),
                     client.post("/api/v1/incidents", json={"title": "t", "severity": "SEV1"}, headers=headers),
                     client.get("/api/v1/me", headers=headers)):
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"


def test_revoked_token_and_deactivated_user_are_401(client, responder):
    from incidents.auth import services as auth

    api = ApiClient(client, make_token(responder))
    assert api.get("/api/v1/me").status_code == 200
    auth.revoke_token(db.session, responder.tokens[-1].id, by=responder)
    db.session.commit()
    assert api.get("/api/v1/me").status_code == 401

    other = make_user(role="responder")
    api = ApiClient(client, make_token(other))
    other.active = False
    db.session.commit()
    assert api.post("/api/v1/incidents", json={"title": "t", "severity": "SEV1"}).status_code == 401


def test_me_is_the_tokens_user(api, responder):
    assert api.get("/api/v1/me").get_json() == {"id": responder.id, "email": responder.email,
                                                "name": responder.name, "role": "responder"}


def test_unknown_api_path_and_method_answer_json_errors(api):
    missing = api.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong = api.delete("/api/v1/incidents")
    assert wrong.status_code == 405 and "error" in wrong.get_json()
