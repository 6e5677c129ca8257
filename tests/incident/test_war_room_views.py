"""The incident page as a war room, through real requests: people and "Assign me", status updates and their timer,
links, the stakeholder link and its public page, the timeline's filters and pins, resolving with a resolution."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from incidents.database import utcnow
from incidents.formatting import format_duration
from incidents.incident import services as svc
from incidents.incident.durations import durations
from incidents.incident.models import SEVERITY_COLOURS, EntryKind, IncidentRole, Status, StatusUpdate, TimelineEntry
from tests.conftest import post_form
from tests.factories import make_incident, make_user


def page(client, incident, query: str = "") -> str:
    response = client.get(f"/incidents/{incident.ref}{query}")
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def entry_kinds(html: str) -> list[str]:
    """Kinds of the timeline's entries, in page order (not the pinned list)."""
    return re.findall(r'<li class="entry kind-(\w+)', html)


def post_update(client, incident, **fields):
    data = {"impact": "Card payments fail for EU users.", "actions": "Rolling back the deploy.", "next_in": "30",
            "status": incident.status.value} | fields
    return post_form(client, f"/incidents/{incident.ref}/updates", data)


def issue_link(client, incident, **fields) -> str:
    response = post_form(client, f"/incidents/{incident.ref}/status-link", {"action": "issue"} | fields)
    assert response.status_code == 302
    from incidents.extensions import db

    db.session.refresh(incident)
    assert incident.status_token
    return incident.status_token


# --- the page ------------------------------------------------------------------------------------------------

def test_war_room_header_people_update_links_in_phone_order(responder_client, session):
    incident = make_incident(title="Checkout down", severity="SEV1")
    html = page(responder_client, incident)
    assert 'class="war-room sev-accent-sev1"' in html
    assert re.search(r'data-started="[0-9T:-]+Z" data-prefix="open for ">open for \d+s<', html)
    assert "No status update yet." in html and "Post an update" in html
    for role in IncidentRole:
        assert f'aria-label="Assign me as {role.label.lower()}"' in html
    assert "Chat channel" in html and "Runbook" in html and "Create stakeholder link" in html
    # The DOM order is the phone's reading order: people, then the latest update, then the timeline.
    assert html.index('id="people"') < html.index('id="latest-update"') < html.index('id="timeline"')
    assert " style=" not in html  # the CSP forbids inline styles
    forms = re.findall(r'<form method="post".*?</form>', html, re.S)
    assert len(forms) >= 10 and all('name="csrf_token" value="' in f for f in forms)


def test_a_viewer_reads_the_war_room_without_any_write_control(viewer_client, session):
    incident = make_incident()
    html = page(viewer_client, incident)
    assert "People" in html and "Latest update" in html and "Timeline" in html
    for absent in ("Assign me", "Post an update", "Edit links", "Stakeholder view", "/pin", "/status-link",
                   "/updates", "/links", "Resolve incident"):
        assert absent not in html, absent


def test_durations_on_the_page_are_the_durations_module(viewer_client, session):
    started = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    incident = make_incident(started_at=started, detected_at=started + timedelta(minutes=7))
    svc.acknowledge_incident(session, incident, at=started + timedelta(minutes=19))
    svc.mitigate_incident(session, incident, at=started + timedelta(hours=1, minutes=5))
    svc.transition(session, incident, "resolved", at=started + timedelta(hours=2, minutes=30), resolution="Fixed.")
    session.commit()
    html = page(viewer_client, incident)
    shown = dict(re.findall(r'<dd data-duration="(\w+)">([^<]+)</dd>', html))
    expected = durations(incident)
    assert shown == {row["key"]: format_duration(row["seconds"]) for row in expected.rows()}
    # Mitigation and resolution count from the start of impact (1h 05m and 2h 30m), not from detection.
    assert shown["time_to_mitigate"] == "1h 05m" and shown["time_to_resolve"] == "2h 30m"
    assert shown["time_to_detect"] == "7m" and shown["time_to_acknowledge"] == "12m"
    assert "resolved 2h 30m after impact began" in html
    # The list reads the same module: "lasted" is the time to resolve, an open one shows its impact so far.
    mitigated = make_incident(started_at=started, detected_at=started)
    svc.mitigate_incident(session, mitigated, at=started + timedelta(minutes=40))
    session.commit()
    listing = viewer_client.get("/?show=all").get_data(as_text=True)
    assert "lasted 2h 30m" in listing and "mitigated after 40m" in listing


def test_incident_css_accents_use_the_severity_colours():
    css = (Path(__file__).resolve().parents[2] / "incidents" / "static" / "incident.css").read_text()
    for severity, (background, _text) in SEVERITY_COLOURS.items():
        assert re.search(rf"\.sev-accent-{severity.lower()} {{ --sev:{background};", css), severity


# --- assign me ------------------------------------------------------------------------------------------------

def test_assign_me_takes_a_role_and_bad_roles_are_422(responder_client, session, responder):
    incident = make_incident()
    response = post_form(responder_client, f"/incidents/{incident.ref}/assign-me", {"role": "scribe"})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/incidents/{incident.ref}")
    session.refresh(incident)
    assert incident.scribe == responder
    html = page(responder_client, incident)
    assert "Scribe: Rita Responder" in html  # the timeline says who took it
    assert 'aria-label="Assign me as scribe"' not in html  # already mine
    for bad in ("captain", ""):
        response = post_form(responder_client, f"/incidents/{incident.ref}/assign-me", {"role": bad})
        assert response.status_code == 422
        assert "Choose commander, communications lead or scribe." in response.get_data(as_text=True)
    session.refresh(incident)
    assert incident.commander is None


# --- status updates and the timer --------------------------------------------------------------------------------

def test_posting_an_update_lands_on_the_timeline_and_sets_the_timer(responder_client, session, responder):
    incident = make_incident()
    before = utcnow()
    response = post_update(responder_client, incident, next_in="15", impact="EU card payments **fail**.")
    assert response.status_code == 302
    update = session.scalars(sa.select(StatusUpdate)).one()
    session.refresh(incident)
    assert (update.impact, update.actions, update.author) == ("EU card payments **fail**.",
                                                              "Rolling back the deploy.", responder)
    assert before + timedelta(minutes=15) <= incident.next_update_at <= utcnow() + timedelta(minutes=15)
    html = page(responder_client, incident)
    latest = html[html.index('id="latest-update"'):html.index('class="post-update"')]
    assert "EU card payments <strong>fail</strong>." in latest and "Rolling back the deploy." in latest
    assert re.search(r"Next update due in 1[45] min", latest)
    assert "update overdue" not in html
    assert entry_kinds(html)[0] == "update"  # newest first while open
    entry = session.scalars(sa.select(TimelineEntry).where(TimelineEntry.kind == EntryKind.UPDATE)).one()
    assert entry.data["update_id"] == update.id


def test_an_update_at_a_chosen_time_and_one_that_moves_the_status(responder_client, session):
    incident = make_incident()
    past = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = post_update(responder_client, incident, next_at=past)
    assert response.status_code == 422 and "Must be in the future." in response.get_data(as_text=True)
    at = (utcnow() + timedelta(hours=2)).replace(second=0, microsecond=0)
    response = post_update(responder_client, incident, next_at=at.strftime("%Y-%m-%dT%H:%M"), next_in="15",
                           status="mitigated")
    assert response.status_code == 302
    session.refresh(incident)
    assert incident.status == Status.MITIGATED
    assert incident.next_update_at == at  # the chosen time wins over "in 15 minutes"


def test_a_bad_update_is_422_with_the_fields_marked_and_the_input_kept(responder_client, session):
    incident = make_incident()
    response = post_update(responder_client, incident, impact="  ", actions="Keep this text", next_in="abc",
                           next_at="next tuesday")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Say what users see now." in html and "Use the date picker" in html
    assert ">Keep this text</textarea>" in html
    assert '<details class="post-update" open>' in html
    response = post_update(responder_client, incident, status="exploded")
    assert response.status_code == 422 and "Choose a status from the list." in response.get_data(as_text=True)
    # Resolving through an update needs the resolution too.
    response = post_update(responder_client, incident, status="resolved")
    assert response.status_code == 422 and 'name="resolution"' in response.get_data(as_text=True)
    session.refresh(incident)
    assert incident.status == Status.TRIGGERED and incident.updates == []


def test_an_overdue_update_is_flagged_on_the_page_and_in_the_list(responder_client, session):
    incident = make_incident(title="Overdue one")
    calm = make_incident(title="Calm one")
    assert post_update(responder_client, incident).status_code == 302
    assert post_update(responder_client, calm).status_code == 302
    session.execute(sa.update(type(incident)).where(type(incident).id == incident.id)
                    .values(next_update_at=utcnow() - timedelta(minutes=12, seconds=30)))
    session.commit()
    html = page(responder_client, incident)
    assert re.search(r"Next update overdue by 1[23] min", html)
    assert 'class="chip overdue"' in html and 'class="card latest-update overdue"' in html
    listing = responder_client.get("/").get_data(as_text=True)
    rows = {ref: row for ref, row in re.findall(r'<tr>\s*<td data-label="Ref"><a [^>]+>(INC-\d+)</a>(.*?)</tr>',
                                                   listing, re.S)}
    assert "update overdue" in rows[incident.ref] and "update overdue" not in rows[calm.ref]
    # Once resolved nothing is due any more.
    post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "resolved", "resolution": "Done."})
    assert "update overdue" not in responder_client.get("/?show=all").get_data(as_text=True)


# --- links --------------------------------------------------------------------------------------------------------

def test_links_are_saved_and_only_http_links_are_accepted(responder_client, session):
    incident = make_incident()
    response = post_form(responder_client, f"/incidents/{incident.ref}/links", {
        "chat_url": "https://chat.example.com/inc-1", "call_url": "https://meet.example.com/abc", "runbook_url": ""})
    assert response.status_code == 302
    session.refresh(incident)
    assert (incident.chat_url, incident.call_url, incident.runbook_url) == (
        "https://chat.example.com/inc-1", "https://meet.example.com/abc", "")
    html = page(responder_client, incident)
    assert '<a href="https://chat.example.com/inc-1" rel="noopener noreferrer" target="_blank">' in html
    quick = html[html.index('class="quick-links"'):html.index('id="people"')]  # in the head, before people
    assert ">Chat ↗</a>" in quick and ">Call ↗</a>" in quick and "Runbook ↗" not in quick
    response = post_form(responder_client, f"/incidents/{incident.ref}/links", {
        "chat_url": "javascript:alert(1)", "call_url": "https://meet.example.com/abc", "runbook_url": ""})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'class="field-error"' in html and 'value="javascript:alert(1)"' in html
    assert 'href="javascript:' not in html
    response = post_form(responder_client, f"/incidents/{incident.ref}/links",
                         {"chat_url": "https://x.example/" + "a" * 600})
    assert response.status_code == 422
    session.refresh(incident)
    assert incident.chat_url == "https://chat.example.com/inc-1"


# --- the stakeholder link and its page -----------------------------------------------------------------------------

def test_stakeholder_page_shows_updates_and_never_notes_names_or_internals(app, responder_client, session,
                                                                          responder):
    incident = make_incident(title="Checkout errors", severity="SEV1", summary="Internal: db-7 is **sick**",
                             tags=["secret-tag"])
    post_form(responder_client, f"/incidents/{incident.ref}/assign-me", {"role": "commander"})
    post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "Private note about db-7"})
    post_update(responder_client, incident, impact="Some payments fail.", actions="Failing over.")
    post_update(responder_client, incident, impact="Payments recovering.", actions="Watching error rates.",
                status="mitigated")
    token = issue_link(responder_client, incident)
    assert len(token) >= 32
    html = page(responder_client, incident)
    assert f"/status/{token}" in html and 'data-copy="status-url"' in html

    anonymous = app.test_client()
    response = anonymous.get(f"/status/{token}")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "noindex" in response.headers["X-Robots-Tag"] and response.headers["Referrer-Policy"] == "no-referrer"
    public = response.get_data(as_text=True)
    assert '<meta name="robots" content="noindex, nofollow">' in public
    assert "Checkout errors" in public and "SEV1" in public and "st-mitigated" in public
    impact = public[public.index('id="impact-h"'):public.index('id="updates-h"')]
    assert "Payments recovering." in impact and "Some payments fail." not in impact
    assert public.index("Payments recovering.") < public.rindex("Some payments fail.")  # newest first
    assert "Failing over." in public and "Watching error rates." in public
    for private in ("Private note", "db-7", "secret-tag", "Rita Responder", "responder@example.com", "csrf_token",
                    "<form", "Sign out"):
        assert private not in public, private
    assert " style=" not in public and "<script" not in public


def test_names_only_when_chosen_and_reissue_or_revoke_kills_the_old_link(app, responder_client, session):
    incident = make_incident()
    post_form(responder_client, f"/incidents/{incident.ref}/assign-me", {"role": "commander"})
    anonymous = app.test_client()
    old = issue_link(responder_client, incident)
    assert "Rita Responder" not in anonymous.get(f"/status/{old}").get_data(as_text=True)

    new = issue_link(responder_client, incident, show_names="1")
    assert new != old
    assert anonymous.get(f"/status/{old}").status_code == 404
    public = anonymous.get(f"/status/{new}").get_data(as_text=True)
    assert "Incident commander" in public and "Rita Responder" in public

    response = post_form(responder_client, f"/incidents/{incident.ref}/status-link", {"action": "revoke"})
    assert response.status_code == 302
    session.refresh(incident)
    assert incident.status_token is None
    gone = anonymous.get(f"/status/{new}")
    assert gone.status_code == 404 and gone.headers["Cache-Control"] == "no-store"
    assert "Create stakeholder link" in page(responder_client, incident)
    response = post_form(responder_client, f"/incidents/{incident.ref}/status-link", {"action": "publish"})
    assert response.status_code == 422 and "Choose to issue or revoke the link." in response.get_data(as_text=True)


def test_unknown_status_tokens_are_404_even_before_setup(client, session):
    # No user exists yet: the first-run setup redirect must not swallow the public page.
    for token in ("nope", "x" * 64, "INC-1"):
        response = client.get(f"/status/{token}")
        assert response.status_code == 404, token
        assert response.headers["Cache-Control"] == "no-store"


# --- the timeline --------------------------------------------------------------------------------------------------

def test_timeline_filters_and_order(responder_client, session):
    incident = make_incident()
    post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "first note"})
    post_update(responder_client, incident)
    post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "acknowledged"})
    post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "second note"})

    kinds = entry_kinds(page(responder_client, incident))
    assert kinds[0] == "note" and kinds[-1] == "created"  # open: newest first
    assert kinds.count("note") == 2 and "update" in kinds and "status" in kinds
    assert set(entry_kinds(page(responder_client, incident, "?show=notes"))) == {"note"}
    assert set(entry_kinds(page(responder_client, incident, "?show=notes,updates"))) == {"note", "update"}
    html = page(responder_client, incident, "?show=status&show=updates")
    assert set(entry_kinds(html)) == {"created", "status", "update"}
    assert 'value="status" checked' in html and 'value="updates" checked' in html and "Show everything" in html
    assert responder_client.get(f"/incidents/{incident.ref}?show=gossip").status_code == 400

    post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "resolved", "resolution": "Fixed."})
    kinds = entry_kinds(page(responder_client, incident))
    assert kinds[0] == "created" and kinds[-1] == "status"  # resolved: in the order it happened


def test_pin_and_unpin_entries(responder_client, session):
    incident = make_incident()
    other = make_incident()
    post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "The key finding"})
    note = session.scalars(sa.select(TimelineEntry).where(TimelineEntry.kind == EntryKind.NOTE)).one()
    url = f"/incidents/{incident.ref}/timeline/{note.id}/pin"
    response = post_form(responder_client, url, {"pinned": "1"})
    assert response.status_code == 302 and response.headers["Location"].endswith("#timeline")
    session.refresh(note)
    assert note.pinned
    html = page(responder_client, incident)
    pinned = html[html.index('id="pinned-h"'):html.index('class="note-form"')]
    assert "The key finding" in pinned and ">Unpin</button>" in pinned
    assert html.index('id="pinned-h"') < html.index('<ol class="timeline entries">')
    assert post_form(responder_client, url, {"pinned": "0"}).status_code == 302
    session.refresh(note)
    assert not note.pinned and 'id="pinned-h"' not in page(responder_client, incident)

    response = post_form(responder_client, url, {"pinned": "yes"})
    assert response.status_code == 422 and "Pin (1) or unpin (0)." in response.get_data(as_text=True)
    assert post_form(responder_client, f"/incidents/{other.ref}/timeline/{note.id}/pin",
                     {"pinned": "1"}).status_code == 404
    assert post_form(responder_client, f"/incidents/{incident.ref}/timeline/999999/pin",
                     {"pinned": "1"}).status_code == 404
    session.refresh(note)
    assert not note.pinned


# --- resolving -----------------------------------------------------------------------------------------------------

def test_resolving_needs_a_resolution(responder_client, session):
    incident = make_incident()
    html = page(responder_client, incident)
    assert '<summary class="button' in html and ">Resolve incident</button>" in html
    response = post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "resolved",
                                                                                 "resolution": "  "})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert '<details class="resolve" open>' in html and 'class="field-error"' in html
    session.refresh(incident)
    assert incident.status == Status.TRIGGERED
    response = post_form(responder_client, f"/incidents/{incident.ref}/status",
                         {"status": "resolved", "resolution": "Rolled back **v2.3**."})
    assert response.status_code == 302
    session.refresh(incident)
    assert incident.status == Status.RESOLVED and incident.resolution == "Rolled back **v2.3**."
    assert "Rolled back <strong>v2.3</strong>." in page(responder_client, incident)


# --- permissions and CSRF ------------------------------------------------------------------------------------------

def war_room_writes(incident, entry_id: int) -> list[tuple[str, dict]]:
    ref = incident.ref
    return [
        (f"/incidents/{ref}/updates", {"impact": "x", "actions": "y", "next_in": "30"}),
        (f"/incidents/{ref}/assign-me", {"role": "commander"}),
        (f"/incidents/{ref}/links", {"chat_url": "https://chat.example.com/"}),
        (f"/incidents/{ref}/status-link", {"action": "issue"}),
        (f"/incidents/{ref}/timeline/{entry_id}/pin", {"pinned": "1"}),
        (f"/incidents/{ref}/status", {"status": "resolved", "resolution": "x"}),
    ]


def test_a_viewer_cannot_write_anything(viewer_client, session):
    incident = make_incident()
    entry_id = incident.timeline[0].id
    for url, data in war_room_writes(incident, entry_id):
        assert post_form(viewer_client, url, data).status_code == 403, url
    session.refresh(incident)
    assert incident.commander is None and incident.status_token is None and incident.updates == []
    assert incident.chat_url == "" and not incident.timeline[0].pinned


@pytest.mark.parametrize("index", range(6))
def test_war_room_posts_need_the_csrf_token(responder_client, session, index):
    incident = make_incident()
    url, data = war_room_writes(incident, incident.timeline[0].id)[index]
    response = responder_client.post(url, data=data)
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)


def test_anonymous_writes_go_to_sign_in(client, session):
    make_user(role="admin")
    incident = make_incident()
    for url, data in war_room_writes(incident, incident.timeline[0].id):
        response = post_form(client, url, data)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
