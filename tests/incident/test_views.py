"""The incident pages through real requests: forms with CSRF, roles, filters, the status buttons."""

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from incidents.incident import services as svc
from incidents.incident.models import EntryKind, Incident, Status
from tests.conftest import post_form
from tests.factories import make_incident, make_service, make_team, make_user


def refs(html: str) -> list[str]:
    """Incident refs of the list rows, in page order."""
    return re.findall(r'<td data-label="Ref"><a href="[^"]+">(INC-\d+)</a>', html)


# --- list --------------------------------------------------------------------------------------------

def test_empty_list_explains_what_to_do(responder_client):
    html = responder_client.get("/").get_data(as_text=True)
    assert "No open incidents — declare one" in html
    assert 'href="/incidents/new"' in html


def test_an_admins_empty_list_and_menu_point_to_the_demo_and_every_admin_page(admin_client):
    html = admin_client.get("/").get_data(as_text=True)
    assert "<code>incidents demo</code>" in html
    for path in ("/admin/integrations", "/admin/postmortem-templates", "/admin/contributing-factors",
                 "/admin/blameless-phrases", "/debt/settings", "/admin/users"):
        assert f'href="{path}"' in html, path
        assert admin_client.get(path).status_code == 200, path


def test_a_responder_is_not_offered_admin_pages_or_the_demo(responder_client):
    html = responder_client.get("/").get_data(as_text=True)
    assert "incidents demo" not in html and 'href="/admin/blameless-phrases"' not in html


def test_viewer_sees_no_declare_button(viewer_client):
    html = viewer_client.get("/").get_data(as_text=True)
    assert "/incidents/new" not in html
    assert "a responder or admin declares them" in html


def test_list_shows_open_by_default_with_columns(viewer_client, session):
    service = make_service(name="Checkout API")
    live = make_incident(title="Checkout 500s", severity="SEV1", service_id=service.id, tags=["payments"])
    done = make_incident(title="Old blip")
    svc.resolve_incident(session, done)
    session.commit()
    response = viewer_client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert refs(html) == [live.ref]
    assert "sev-sev1" in html and "st-triggered" in html
    assert "Checkout API" in html and service.team.name in html and "payments" in html
    assert "open " in html  # age of an open incident
    html = viewer_client.get("/?show=all").get_data(as_text=True)
    assert refs(html) == [done.ref, live.ref]
    assert "lasted " in html


def test_list_filters(viewer_client, session):
    checkout = make_service(name="Checkout")
    search = make_service(name="Search")
    a = make_incident(title="Card payments failing", severity="SEV1", service_id=checkout.id, tags=["pci"])
    b = make_incident(title="Slow search", severity="SEV3", service_id=search.id)
    c = make_incident(title="Search index stale", severity="SEV2", service_id=search.id, tags=["pci"])
    svc.transition(session, c, "acknowledged")
    session.commit()

    def shown(query: str) -> list[str]:
        response = viewer_client.get("/?" + query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return refs(response.get_data(as_text=True))

    assert shown("severity=SEV1&severity=SEV3") == [b.ref, a.ref]
    assert shown("status=acknowledged") == [c.ref]
    assert shown("status=triggered&status=acknowledged") == [c.ref, b.ref, a.ref]
    assert shown(f"service={search.slug}") == [c.ref, b.ref]
    assert shown(f"service={checkout.id}") == [a.ref]
    assert shown(f"team={checkout.team.slug}") == [a.ref]
    assert shown("tag=PCI") == [c.ref, a.ref]
    assert shown("q=search") == [c.ref, b.ref]
    assert shown(f"q={a.ref}") == [a.ref]
    assert shown(f"q={a.id}") == [a.ref]
    assert shown("q=nothing-like-this") == []
    assert "No incidents match these filters" in viewer_client.get("/?q=zzz").get_data(as_text=True)


def test_bad_filter_values_are_4xx_not_500(viewer_client):
    assert viewer_client.get("/?status=exploded").status_code == 400
    assert viewer_client.get("/?severity=SEV9").status_code == 400
    assert viewer_client.get("/?show=some").status_code == 400
    assert viewer_client.get("/?service=no-such-service").status_code == 404
    assert viewer_client.get("/?page=abc").status_code == 200
    assert viewer_client.get("/?per_page=-5").status_code == 200


def test_pagination_keeps_filters(app, viewer_client, session):
    app.config["PER_PAGE"] = 3
    try:
        made = [make_incident(title=f"Disk full {n}", tags=["disk"]) for n in range(7)]
        make_incident(title="Unrelated")
        newest_first = [i.ref for i in reversed(made)]
        page1 = viewer_client.get("/?tag=disk").get_data(as_text=True)
        assert refs(page1) == newest_first[:3]
        assert "Page 1 of 3 · 7 in all" in page1
        next_link = re.search(r'<a href="([^"]+)">Older', page1).group(1).replace("&amp;", "&")
        assert "tag=disk" in next_link and "page=2" in next_link
        assert refs(viewer_client.get(next_link).get_data(as_text=True)) == newest_first[3:6]
        assert refs(viewer_client.get("/?tag=disk&page=3").get_data(as_text=True)) == newest_first[6:]
        assert "This page is past the end" in viewer_client.get("/?tag=disk&page=9").get_data(as_text=True)
        assert refs(viewer_client.get("/?tag=disk&per_page=10").get_data(as_text=True)) == newest_first
        app.config["MAX_PER_PAGE"] = 5
        assert len(refs(viewer_client.get("/?tag=disk&per_page=100").get_data(as_text=True))) == 5
    finally:
        app.config["PER_PAGE"], app.config["MAX_PER_PAGE"] = 25, 200


def test_list_query_count_does_not_grow_with_rows(viewer_client, session, app):
    from incidents.extensions import db

    for n in range(3):
        make_incident(title=f"Few {n}", service_id=make_service().id)

    def count_queries() -> int:
        seen = []

        def listener(_conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith("SELECT"):
                seen.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", listener)
        try:
            session.expunge_all()
            assert viewer_client.get("/").status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    count_queries()  # warm-up: the first request also checks whether any user exists
    few = count_queries()
    for n in range(20):
        make_incident(title=f"Many {n}", service_id=make_service().id, tags=[f"t{n}"])
    assert count_queries() == few


# --- the incident page ---------------------------------------------------------------------------------

def test_incident_page_by_ref_or_id(viewer_client, session):
    service = make_service(name="Checkout")
    incident = make_incident(title="Checkout down", service_id=service.id, summary="**Bold** impact",
                             tags=["eu"])
    for path in (f"/incidents/{incident.ref}", f"/incidents/{incident.id}", f"/incidents/inc-{incident.id}"):
        response = viewer_client.get(path)
        assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Checkout down" in html and "<strong>Bold</strong> impact" in html
    assert "Time to acknowledge" in html and "Incident commander" in html
    assert "Incident declared (SEV2)" in html
    # viewers read, but get no write controls
    assert "/status" not in html and "Add note" not in html and "/edit" not in html
    assert viewer_client.get("/incidents/INC-999999").status_code == 404
    assert viewer_client.get("/incidents/nonsense").status_code == 404


def test_full_flow_through_the_forms(responder_client, session, responder):
    service = make_service(name="Payments API")
    response = post_form(responder_client, "/incidents/new", {
        "title": "Payments timing out", "severity": "SEV1", "service_id": str(service.id), "team_id": "",
        "tags": "payments, EU", "summary": "Users *cannot* pay.",
    })
    assert response.status_code == 302
    incident = session.scalars(sa.select(Incident)).one()
    assert response.headers["Location"].endswith(f"/incidents/{incident.ref}")
    assert incident.team == service.team and incident.tags == ["eu", "payments"]
    assert incident.created_by == responder
    assert incident.commander == responder  # the declarer runs it until someone else takes over
    assert incident.next_update_at is not None  # stakeholders are owed a first update

    page = responder_client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
    assert "Acknowledge" in page and "<em>cannot</em>" in page

    for status in ("acknowledged", "investigating", "mitigated", "resolved", "closed"):
        html = responder_client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
        assert f'name="status" value="{status}"' in html  # the button is on the page
        form = {"status": status} | ({"resolution": "Raised the pool size."} if status == "resolved" else {})
        response = post_form(responder_client, f"/incidents/{incident.ref}/status", form)
        assert response.status_code == 302
        session.refresh(incident)
        assert incident.status == Status(status)

    response = post_form(responder_client, f"/incidents/{incident.ref}/notes",
                         {"body": "Rolled back **v2.3**; errors gone."})
    assert response.status_code == 302
    html = responder_client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
    for text in ("Incident declared (SEV1)", "Status: triggered -&gt; acknowledged",
                 "Status: acknowledged -&gt; investigating", "Status: investigating -&gt; mitigated",
                 "Status: mitigated -&gt; resolved", "Status: resolved -&gt; closed",
                 "Rolled back <strong>v2.3</strong>; errors gone."):
        assert text in html
    assert html.count('class="entry kind-') == 8  # declared, commander, five moves, the note
    entries = html[html.index('<ol class="timeline entries">'):]  # closed: oldest first
    assert entries.index("Incident declared") < entries.index("resolved -&gt; closed") < entries.index("Rolled back")
    assert "Rita Responder" in html
    # closed: the only way on is to reopen
    assert 'value="investigating"' in html and "Reopen" in html and 'value="closed"' not in html


def test_invalid_transition_shows_the_reason_not_500(responder_client, session):
    incident = make_incident()
    response = post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "closed"})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert f"Cannot close {incident.ref}: it is triggered" in html
    assert 'value="acknowledged"' in html  # the buttons that do work are there
    response = post_form(responder_client, f"/incidents/{incident.ref}/status", {"status": "exploded"})
    assert response.status_code == 422 and "Unknown status" in response.get_data(as_text=True)
    response = post_form(responder_client, f"/incidents/{incident.ref}/status", {})
    assert response.status_code == 422
    session.refresh(incident)
    assert incident.status == Status.TRIGGERED and len(incident.timeline) == 1


def test_empty_note_is_refused_inline(responder_client, session):
    incident = make_incident()
    response = post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "   "})
    assert response.status_code == 422
    assert 'class="field-error"' in response.get_data(as_text=True)


def test_assign_roles(responder_client, session, responder):
    incident = make_incident()
    other = make_user(name="Omar Oncall")
    make_user(name="Vera Viewer", role="viewer")
    html = responder_client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
    assert "Omar Oncall" in html and "Vera Viewer" not in html  # viewers cannot hold roles
    response = post_form(responder_client, f"/incidents/{incident.ref}/roles",
                         {"commander": str(other.id), "comms_lead": str(responder.id), "scribe": ""})
    assert response.status_code == 302
    session.refresh(incident)
    assert incident.commander == other and incident.comms_lead == responder and incident.scribe is None
    html = responder_client.get(f"/incidents/{incident.ref}").get_data(as_text=True)
    assert "Incident commander: Omar Oncall" in html
    response = post_form(responder_client, f"/incidents/{incident.ref}/roles", {"commander": "99999"})
    assert response.status_code == 422 and "Unknown user." in response.get_data(as_text=True)
    response = post_form(responder_client, f"/incidents/{incident.ref}/roles", {"scribe": "abc"})
    assert response.status_code == 422


def test_script_in_summary_and_note_is_never_live(responder_client, session):
    incident = make_incident(summary="<script>alert('sum')</script> hello", title="<script>alert('t')</script>")
    post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "<script>alert('note')</script>"})
    post_form(responder_client, f"/incidents/{incident.ref}/roles", {"commander": ""})
    for path in (f"/incidents/{incident.ref}", "/"):
        html = responder_client.get(path).get_data(as_text=True)
        assert "<script>alert" not in html
        # The app itself uses no inline script either: only files of its own, which the CSP allows.
        assert set(re.findall(r"<script[^>]*>", html)) <= {
            '<script src="/static/topbar.js">', '<script src="/static/forms.js" defer>',
            '<script src="/static/incident.js" defer>', '<script src="/static/copy.js" defer>'}
    assert "&lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt;" in html


# --- create and edit forms -----------------------------------------------------------------------------

def test_create_form_shows_errors_inline_and_keeps_input(responder_client, session):
    make_service(name="Checkout")
    html = responder_client.get("/incidents/new").get_data(as_text=True)
    assert "Declare an incident" in html and 'name="csrf_token"' in html and "Checkout" in html
    response = post_form(responder_client, "/incidents/new", {
        "title": "  ", "severity": "SEV9", "tags": "ok, bad tag!", "summary": "keep me", "started_at": "yesterday",
    })
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert html.count('class="field-error"') == 3  # title, severity, started_at
    assert "keep me" in html and 'value="ok, bad tag!"' in html
    # fields fine, the service's own rules refuse: still inline
    response = post_form(responder_client, "/incidents/new", {"title": "X", "severity": "SEV2", "tags": "bad tag!"})
    assert response.status_code == 422 and "Invalid tag" in response.get_data(as_text=True)
    response = post_form(responder_client, "/incidents/new",
                         {"title": "X", "severity": "SEV2", "started_at": "2026-01-02T10:00",
                          "detected_at": "2026-01-02T09:00"})
    assert response.status_code == 422 and "After detected_at." in response.get_data(as_text=True)
    response = post_form(responder_client, "/incidents/new", {"title": "X", "severity": "SEV2", "service_id": "424242"})
    assert response.status_code == 422 and "No service" in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_edit_form_changes_fields_and_times_as_utc(responder_client, session):
    team = make_team(name="Platform")
    old, new = make_service(name="Old svc"), make_service(name="New svc")
    incident = make_incident(title="Before", service_id=old.id, tags=["a"])
    html = responder_client.get(f"/incidents/{incident.ref}/edit").get_data(as_text=True)
    assert 'value="Before"' in html
    response = post_form(responder_client, f"/incidents/{incident.ref}/edit", {
        "title": "After", "severity": "SEV1", "service_id": str(new.id), "team_id": str(team.id),
        "tags": "b, c", "summary": "now known", "started_at": "2026-03-01T08:15", "detected_at": "2026-03-01T08:30",
    })
    assert response.status_code == 302
    session.refresh(incident)
    assert (incident.title, incident.severity.value, incident.service, incident.team) == ("After", "SEV1", new, team)
    assert incident.tags == ["b", "c"] and incident.summary == "now known"
    assert incident.started_at == datetime(2026, 3, 1, 8, 15, tzinfo=UTC)
    assert incident.detected_at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    edits = {e.text for e in incident.timeline if e.kind == EntryKind.EDIT}
    assert {"Severity: SEV2 -> SEV1", "Moved to New svc / Platform"} < edits
    corrected = sorted(t for t in edits if "corrected" in t)  # who moved the milestones, and from what to what
    assert [t.split(":")[0] for t in corrected] == ["Detection corrected", "Impact start corrected"]
    assert corrected[0].endswith("-> 2026-03-01 08:30 UTC") and corrected[1].endswith("-> 2026-03-01 08:15 UTC")
    assert all(e.author is not None for e in incident.timeline if "corrected" in e.text)
    response = post_form(responder_client, f"/incidents/{incident.ref}/edit", {  # the same minutes: no correction
        "title": "After", "severity": "SEV1", "service_id": str(new.id), "team_id": str(team.id),
        "tags": "b, c", "summary": "now known", "started_at": "2026-03-01T08:15", "detected_at": "2026-03-01T08:30"})
    session.refresh(incident)
    assert len([e for e in incident.timeline if "corrected" in e.text]) == 2
    response = post_form(responder_client, f"/incidents/{incident.ref}/edit",
                         {"title": "", "severity": "SEV1", "summary": "typed"})
    assert response.status_code == 422 and "typed" in response.get_data(as_text=True)
    session.refresh(incident)
    assert incident.title == "After"


# --- permissions and CSRF ------------------------------------------------------------------------------

def write_routes(ref: str) -> list[tuple[str, dict]]:
    return [
        ("/incidents/new", {"title": "x", "severity": "SEV2"}),
        (f"/incidents/{ref}/edit", {"title": "x", "severity": "SEV2"}),
        (f"/incidents/{ref}/status", {"status": "acknowledged"}),
        (f"/incidents/{ref}/notes", {"body": "hi"}),
        (f"/incidents/{ref}/roles", {"commander": ""}),
    ]


def test_viewer_gets_403_on_every_write(viewer_client, session):
    incident = make_incident()
    for url, data in write_routes(incident.ref):
        assert post_form(viewer_client, url, data).status_code == 403, url
    assert viewer_client.get("/incidents/new").status_code == 403
    assert viewer_client.get(f"/incidents/{incident.ref}/edit").status_code == 403
    session.refresh(incident)
    assert incident.status == Status.TRIGGERED and len(incident.timeline) == 1


@pytest.mark.parametrize("index", range(5))
def test_post_without_csrf_token_is_rejected(responder_client, session, index):
    incident = make_incident()
    url, data = write_routes(incident.ref)[index]
    response = responder_client.post(url, data=data)
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)


def test_anonymous_is_sent_to_sign_in(client, session, admin):
    incident = make_incident()
    response = client.get(f"/incidents/{incident.ref}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
