"""Shortcut pages: the card on every action item row, the Export buttons, and the admin settings page."""

from __future__ import annotations

from incidents.extensions import db
from incidents.tracker import services
from incidents.tracker.models import ExportStatus
from tests.conftest import post_form
from tests.tracker.fake_shortcut import Fault
from tests.tracker.helpers import make_exportable_item
from tests.tracker.test_export import export_of, the_one_story


def test_export_button_creates_the_card_and_the_row_shows_it(shortcut_app, fake_shortcut, responder_client):
    item = make_exportable_item()
    page = responder_client.get(f"/postmortems/{item.postmortem_id}").get_data(as_text=True)
    assert "Export to Shortcut" in page and "not in Shortcut" in page and "Send all to Shortcut" in page
    response = post_form(responder_client, f"/action-items/{item.id}/export", follow_redirects=True)
    assert response.status_code == 200
    story = the_one_story(fake_shortcut, item.id)
    page = response.get_data(as_text=True)
    assert f'href="{story["app_url"]}"' in page and f"#{story['id']}" in page and "unstarted" in page
    assert "Export to Shortcut" not in page  # one card per item: no button once sent
    listing = responder_client.get("/action-items").get_data(as_text=True)
    assert story["app_url"] in listing


def test_send_all_button(shortcut_app, fake_shortcut, responder_client):
    first = make_exportable_item()
    second = make_exportable_item(first.postmortem, title="Canary config pushes")
    post_form(responder_client, f"/postmortems/{first.postmortem_id}/export")
    the_one_story(fake_shortcut, first.id)
    the_one_story(fake_shortcut, second.id)


def test_failed_export_shows_its_error_and_a_retry_button(shortcut_app, fake_shortcut, responder_client):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.status_code(502)] * 3)
    post_form(responder_client, f"/action-items/{item.id}/export")
    page = responder_client.get("/action-items").get_data(as_text=True)
    assert "pending" in page and "HTTP 502" in page and "Retry export" in page and "attempt 1" in page


def test_viewers_see_the_card_but_no_button(shortcut_app, viewer_client):
    item = make_exportable_item()
    page = viewer_client.get(f"/postmortems/{item.postmortem_id}").get_data(as_text=True)
    assert "not in Shortcut" in page and "Export to Shortcut" not in page
    assert post_form(viewer_client, f"/action-items/{item.id}/export").status_code == 403


def test_export_button_without_configuration_says_so(app, responder_client):
    item = make_exportable_item()
    page = post_form(responder_client, f"/action-items/{item.id}/export", follow_redirects=True)
    assert "Shortcut is not configured" in page.get_data(as_text=True)


def test_settings_page_lists_workflows_and_the_circuit(shortcut_app, fake_shortcut, admin_client):
    page = admin_client.get("/admin/shortcut").get_data(as_text=True)
    for state in ("Backlog", "To Do", "In Progress", "Done"):
        assert state in page
    assert "Engineering" in page and "closed" in page and "Test connection" in page
    assert "http://incidents.test/webhooks/shortcut" in page
    assert 'href="/admin/shortcut"' in admin_client.get("/incidents").get_data(as_text=True)  # in the top nav
    response = post_form(admin_client, "/admin/shortcut/test", follow_redirects=True)
    assert "Connected to Shortcut workspace" in response.get_data(as_text=True)
    assert fake_shortcut.calls("getCurrentMemberInfo")


def test_test_connection_reports_a_failure(shortcut_app, fake_shortcut, admin_client, monkeypatch):
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_API_TOKEN", "wrong-token")
    response = post_form(admin_client, "/admin/shortcut/test", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Shortcut connection failed" in page and "401" in page


def test_settings_are_admin_only(shortcut_app, responder_client):
    assert responder_client.get("/admin/shortcut").status_code == 403
    assert post_form(responder_client, "/admin/shortcut/settings", {"team_id": ""}).status_code == 403


def test_admin_chooses_a_state_per_team(shortcut_app, fake_shortcut, admin_client, api):
    item = make_exportable_item()
    team_id = item.postmortem.incident.team_id
    started = fake_shortcut.state_id("started")
    post_form(admin_client, "/admin/shortcut/settings",
              {"team_id": str(team_id), "workflow_state_id": str(started), "auto_export": "on"})
    row = services.settings_for(db.session, team_id)
    assert (row.workflow_state_id, row.workflow_state_name, row.auto_export) == (
        started, "Engineering / In Progress", True)
    assert "Engineering / In Progress" in admin_client.get("/admin/shortcut").get_data(as_text=True)
    api.post(f"/api/v1/action-items/{item.id}/export")
    assert the_one_story(fake_shortcut, item.id)["workflow_state_id"] == started


def test_admin_gives_up_on_an_export(shortcut_app, fake_shortcut, admin_client):
    item = make_exportable_item()
    fake_shortcut.inject("createStory", *[Fault.status_code(500)] * 3)
    post_form(admin_client, f"/action-items/{item.id}/export")
    export = export_of(item.id)
    page = admin_client.get("/admin/shortcut").get_data(as_text=True)
    assert item.title in page and "Give up" in page
    post_form(admin_client, f"/admin/shortcut/exports/{export.id}/give-up")
    assert export_of(item.id).status == ExportStatus.ABANDONED
    assert item.title not in admin_client.get("/admin/shortcut").get_data(as_text=True)


def test_the_editing_page_shows_the_card_and_its_button(shortcut_app, fake_shortcut, responder_client):
    item = make_exportable_item()
    key = next(s.key for s in item.postmortem.sections if s.kind.value == "action_items")
    page = responder_client.get(f"/postmortems/{item.postmortem_id}/sections/{key}").get_data(as_text=True)
    assert "not in Shortcut" in page and "Export to Shortcut" in page
    post_form(responder_client, f"/action-items/{item.id}/export",
              {"next": f"/postmortems/{item.postmortem_id}/sections/{key}"})
    story = the_one_story(fake_shortcut, item.id)
    page = responder_client.get(f"/postmortems/{item.postmortem_id}/sections/{key}").get_data(as_text=True)
    assert story["app_url"] in page and "Export to Shortcut" not in page


def test_an_open_circuit_defers_exports_and_shows_on_the_settings_page(shortcut_app, fake_shortcut, admin_client,
                                                                      monkeypatch):
    monkeypatch.setitem(shortcut_app.config, "SHORTCUT_CIRCUIT_THRESHOLD", 1)
    item = make_exportable_item()
    fake_shortcut.inject("listMembers", Fault.status_code(500))  # the first failure opens the circuit
    post_form(admin_client, f"/action-items/{item.id}/export")
    export = export_of(item.id)
    assert export.status == ExportStatus.PENDING and "suspended" in export.last_error
    assert len(fake_shortcut.calls("createStory")) == 0  # nothing else was tried while it is open
    page = admin_client.get("/admin/shortcut").get_data(as_text=True)
    assert "open · 1 failure(s)" in page and "HTTP 500" in page
