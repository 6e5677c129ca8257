"""Status updates for stakeholders, the next-update timer, the resolution note, links, the stakeholder token and
the declarer as commander: through the API and the services, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from incidents.database import utcnow
from incidents.errors import Invalid, NotFound
from incidents.incident import services as svc
from incidents.incident.durations import durations
from incidents.incident.models import EntryKind, Incident, Status, StatusUpdate
from tests.factories import ApiClient, make_incident, make_token, make_user


def _post(api, ref, **body):
    return api.post(f"/api/v1/incidents/{ref}/updates", json=body)


def test_an_update_is_listed_on_the_timeline_and_sets_the_timer(api, app, session):
    incident = make_incident(title="Checkout 502")
    before = utcnow()
    first = _post(api, incident.ref, impact="EU card payments fail", actions="Rolling back 1f3a2c")
    assert first.status_code == 201, first.get_json()
    assert first.headers["Location"].endswith(f"/api/v1/incidents/{incident.ref}/updates")
    body = first.get_json()
    assert (body["status"], body["impact"], body["actions"]) == ("triggered", "EU card payments fail",
                                                                 "Rolling back 1f3a2c")
    due = datetime.fromisoformat(body["next_update_at"])
    assert before + timedelta(minutes=30) <= due <= utcnow() + timedelta(minutes=30)  # the default interval

    app.config["UPDATE_INTERVAL_MINUTES"] = 5
    try:
        second = _post(api, incident.ref, impact="Recovering", actions="Watching the error rate", status="mitigated")
    finally:
        app.config["UPDATE_INTERVAL_MINUTES"] = 30
    assert second.status_code == 201
    assert second.get_json()["status"] == "mitigated"
    listed = api.get(f"/api/v1/incidents/{incident.ref}/updates").get_json()
    assert [u["impact"] for u in listed["items"]] == ["Recovering", "EU card payments fail"]  # newest first
    assert listed["total"] == 2

    session.expire_all()
    incident = session.get(Incident, incident.id)
    assert incident.status == Status.MITIGATED and incident.mitigated_at is not None
    assert incident.next_update_at - utcnow() <= timedelta(minutes=5)
    kinds = [e.kind for e in incident.timeline]
    assert kinds.count(EntryKind.UPDATE) == 2 and EntryKind.STATUS in kinds  # the move is its own entry
    update_entry = [e for e in incident.timeline if e.kind == EntryKind.UPDATE][-1]
    assert update_entry.text == "Status update (mitigated)" and "Watching the error rate" in update_entry.body
    assert update_entry.author is not None and update_entry.data["update_id"] == second.get_json()["id"]


def test_overdue_is_flagged_in_the_api(api, session):
    incident = make_incident()
    assert api.get(f"/api/v1/incidents/{incident.ref}").get_json()["update_overdue"] is False
    session.execute(sa.update(Incident).where(Incident.id == incident.id)
                    .values(next_update_at=utcnow() - timedelta(minutes=1)))
    session.commit()
    assert api.get(f"/api/v1/incidents/{incident.ref}").get_json()["update_overdue"] is True
    session.expire_all()
    assert session.get(Incident, incident.id).update_overdue(utcnow())


@pytest.mark.parametrize("body, fields", [
    ({"actions": "x"}, {"impact"}),
    ({"impact": "x"}, {"actions"}),
    ({"impact": " ", "actions": "x"}, {"impact"}),
    ({"impact": "x", "actions": "y", "next_update_at": "2020-01-01T00:00:00Z"}, {"next_update_at"}),
    ({"impact": "x", "actions": "y", "status": "resolved"}, {"resolution"}),
    ({"impact": "x", "actions": "y", "status": "nope"}, {"status"}),
])
def test_an_incomplete_update_is_a_422_naming_the_field_and_changes_nothing(api, session, body, fields):
    incident = make_incident()
    response = _post(api, incident.ref, **body)
    assert response.status_code == 422, response.get_json()
    assert set(response.get_json()["error"]["fields"]) == fields
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(StatusUpdate)) == 0
    assert session.get(Incident, incident.id).status == Status.TRIGGERED


def test_viewers_read_updates_but_cannot_post(client, session):
    incident = make_incident()
    svc.post_status_update(session, incident, impact="Slow", actions="Scaling")
    session.commit()
    viewer = ApiClient(client, make_token(make_user(role="viewer")))
    assert viewer.get(f"/api/v1/incidents/{incident.ref}/updates").get_json()["total"] == 1
    assert _post(viewer, incident.ref, impact="x", actions="y").status_code == 403
    assert _post(viewer, "INC-999999", impact="x", actions="y").status_code in (403, 404)


def test_resolving_requires_a_resolution_note(api, session):
    incident = make_incident()
    url = f"/api/v1/incidents/{incident.ref}"
    refused = api.patch(url, json={"status": "resolved", "title": "Renamed"})
    assert refused.status_code == 422
    assert list(refused.get_json()["error"]["fields"]) == ["resolution"]
    session.expire_all()
    assert session.get(Incident, incident.id).title != "Renamed"  # all or nothing
    assert api.patch(url, json={"status": "resolved", "resolution": "  "}).status_code == 422

    done = api.patch(url, json={"status": "resolved", "resolution": "Rolled back release 2026.11.3"})
    assert done.status_code == 200
    assert done.get_json()["resolution"] == "Rolled back release 2026.11.3"
    assert done.get_json()["next_update_at"] is None  # nothing more is owed once resolved
    session.expire_all()
    entry = [e for e in session.get(Incident, incident.id).timeline if e.kind == EntryKind.STATUS][-1]
    assert entry.body == "Rolled back release 2026.11.3"

    reopened = api.patch(url, json={"status": "investigating"}).get_json()
    assert reopened["resolution"] == "" and reopened["next_update_at"] is not None
    # An update that resolves carries the note too.
    response = _post(api, incident.ref, impact="None left", actions="Watching", status="resolved",
                     resolution="Connection pool resized")
    assert response.status_code == 201 and response.get_json()["next_update_at"] is None
    session.expire_all()
    assert session.get(Incident, incident.id).resolution == "Connection pool resized"


def test_links_are_http_only_and_each_change_is_on_the_timeline(api, session):
    incident = make_incident()
    url = f"/api/v1/incidents/{incident.ref}"
    bad = api.patch(url, json={"chat_url": "javascript:alert(1)", "runbook_url": "ftp://x"})
    assert bad.status_code == 422 and set(bad.get_json()["error"]["fields"]) == {"chat_url", "runbook_url"}
    ok = api.patch(url, json={"chat_url": "https://chat.example.com/c/inc-1", "call_url": "https://meet.example.com/x"})
    assert ok.status_code == 200
    assert (ok.get_json()["chat_url"], ok.get_json()["runbook_url"]) == ("https://chat.example.com/c/inc-1", "")
    api.patch(url, json={"chat_url": ""})
    session.expire_all()
    texts = [e.text for e in session.get(Incident, incident.id).timeline if e.kind == EntryKind.EDIT]
    assert texts == ["Chat channel link set", "Call link set", "Chat channel link removed"]


def test_the_stakeholder_token_is_unguessable_revocable_and_reissued(session):
    incident = make_incident()
    token = svc.issue_status_link(session, incident, show_names=True)
    session.commit()
    assert len(token) >= 40 and svc.incident_for_status_token(session, token) == incident
    again = svc.issue_status_link(session, incident)
    session.commit()
    assert again != token and not incident.status_show_names
    with pytest.raises(NotFound):
        svc.incident_for_status_token(session, token)  # the old link stops working
    svc.revoke_status_link(session, incident)
    session.commit()
    for guess in (again, "", "x" * 65):
        with pytest.raises(NotFound):
            svc.incident_for_status_token(session, guess)
    texts = [e.text for e in incident.timeline if e.kind == EntryKind.EDIT]
    assert texts == ["Stakeholder link issued", "Stakeholder link re-issued (the old one no longer works)",
                     "Stakeholder link revoked"]


def test_pins_belong_to_their_incident(session):
    a, b = make_incident(), make_incident()
    entry = a.timeline[0]
    assert svc.set_pinned(session, a, entry.id, True).pinned
    with pytest.raises(NotFound):
        svc.set_pinned(session, b, entry.id, True)


def test_the_declarer_becomes_commander_unless_configured_otherwise(app, session):
    rita = make_user(name="Rita Responder")
    viewer = make_user(role="viewer")
    assert make_incident(created_by=rita).commander == rita
    assert make_incident(created_by=viewer).commander is None  # viewers hold no roles
    assert make_incident().commander is None  # alerts declare with nobody behind them
    app.config["DECLARER_IS_COMMANDER"] = False
    try:
        assert make_incident(created_by=rita).commander is None
    finally:
        app.config["DECLARER_IS_COMMANDER"] = True


def test_correcting_impact_start_refuses_a_detection_after_acknowledgement(session):
    incident = make_incident()
    svc.acknowledge_incident(session, incident)
    session.commit()
    with pytest.raises(Invalid) as e:
        svc.update_incident(session, incident, detected_at=utcnow() + timedelta(hours=1))
    assert "detected_at" in e.value.fields


def test_every_duration_has_one_definition():
    t0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)

    class Milestones:
        started_at, detected_at = t0, t0 + timedelta(minutes=10)
        acknowledged_at, mitigated_at = t0 + timedelta(minutes=15), t0 + timedelta(minutes=40)
        resolved_at = t0 + timedelta(hours=2)

    d = durations(Milestones)
    assert (d.time_to_detect, d.time_to_acknowledge, d.time_to_mitigate, d.time_to_resolve, d.impact) == (
        600, 300, 2400, 7200, 2400)
    Milestones.mitigated_at = Milestones.resolved_at = None
    d = durations(Milestones, now=t0 + timedelta(hours=1))
    assert (d.time_to_mitigate, d.time_to_resolve, d.impact, d.impact_ongoing) == (None, None, 3600, True)
    assert [r["label"] for r in d.rows()][-1] == "Impact so far"
