"""Reviewing and publishing a post-mortem: the blameless coach's findings for reviewers and as a warning at
publish, quality-gate errors that link to the field they name, the new action item form, and the Shortcut
buttons that only a configured Shortcut gets."""

from __future__ import annotations

import re
from html import unescape

import pytest

from incidents.action_item import services as items
from incidents.extensions import db
from incidents.postmortem import services as svc
from incidents.postmortem.models import PostmortemStatus
from tests.conftest import login, post_form
from tests.factories import make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem

BLAMING = "Bob forgot to renew the certificate. Human error."


def text(response) -> str:
    return response.get_data(as_text=True)


def in_review(pm):
    svc.submit_for_review(db.session, pm)
    db.session.commit()
    return pm


def save(pm, key: str, body: str):
    svc.save_section(db.session, pm, key, body, pm.section(key).version)
    db.session.commit()


def ids_on(page: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', page))


# --- the blameless coach ------------------------------------------------------------------------------------


def test_reviewers_see_the_coach_findings_per_section_with_suggestions(viewer_client):
    pm = fill_for_publishing(make_postmortem())
    save(pm, "summary", BLAMING)
    save(pm, "went_poorly", "We should have caught it in staging.")
    assert "blameless-coach" not in text(viewer_client.get(f"/postmortems/{pm.id}"))  # a draft: not yet
    in_review(pm)
    page = text(viewer_client.get(f"/postmortems/{pm.id}"))
    coach = page[page.index('id="blameless-coach"'):]
    coach = coach[:coach.index("</section>")]
    sections = re.findall(r'<h3><a href="#section-([a-z_]+)">([^<]+)</a></h3>', coach)
    assert [key for key, _ in sections] == ["summary", "went_poorly"]  # in the post-mortem's order
    assert {f"section-{key}" for key, _ in sections} <= ids_on(page)  # each link lands on its section
    summary = coach[coach.index("#section-summary"):coach.index("#section-went_poorly")]
    assert "<mark>Bob forgot</mark> — Make the system, not the person, the subject" in summary
    assert "<mark>Human error</mark> — " in summary
    poorly = coach[coach.index("#section-went_poorly"):]
    assert "<mark>should have</mark> — " in poorly
    assert "3 phrases flagged" in coach and "publishing is not blocked" in coach


def test_publishing_with_findings_succeeds_with_a_warning_linking_to_the_sections(responder_client):
    pm = in_review(fill_for_publishing(make_postmortem()))
    save(pm, "summary", BLAMING)
    r = post_form(responder_client, f"/postmortems/{pm.id}/publish")
    assert r.status_code == 302  # a warning, never a block
    db.session.expire_all()
    assert svc.get_postmortem(db.session, pm.id).status == PostmortemStatus.PUBLISHED
    page = text(responder_client.get(r.headers["Location"]))
    warning = re.search(r'<div class="flash warning" role="status">(.*?)</div>', page, re.S)
    assert warning, "no warning flash"
    assert "2 phrases the blameless coach flagged" in warning.group(1)
    [(href, title)] = re.findall(r'<a href="([^"]+)">([^<]+)</a> \(2\)', warning.group(1))
    assert (href, title) == (f"/postmortems/{pm.id}#section-summary", "Summary")
    assert "section-summary" in ids_on(page)


def test_publishing_a_clean_postmortem_has_no_warning(responder_client):
    pm = in_review(fill_for_publishing(make_postmortem()))
    r = post_form(responder_client, f"/postmortems/{pm.id}/publish", follow_redirects=True)
    assert "Published." in text(r) and "blameless coach flagged" not in text(r)


# --- quality gates link to their fields ------------------------------------------------------------------------


def test_each_quality_gate_error_links_to_the_field_it_names(responder_client):
    pm = make_postmortem()
    owner = make_user(name="Olive Owner")
    item = items.create_action_item(db.session, pm, title="Alert on cert expiry", owner_id=owner.id)
    db.session.commit()
    save(pm, "timeline", "- 10:00 something happened")  # neither detection nor mitigation
    in_review(pm)
    stopped = post_form(responder_client, f"/postmortems/{pm.id}/publish")
    assert stopped.status_code == 422
    links = re.findall(r'<li data-gate="([a-z_]+)"><a href="([^"]+)">([^<]+)</a></li>', text(stopped))
    gates = {gate for gate, _, _ in links}
    assert {"required_section", "contributing_factor", "action_item_due_date", "action_item_type",
            "timeline_detection", "timeline_mitigation"} <= gates
    expected = {"contributing_factor": "factors", "action_item_due_date": f"item-{item.id}-due_date",
                "action_item_type": f"item-{item.id}-type", "timeline_detection": "body",
                "timeline_mitigation": "body"}
    for gate, href, message in links:
        path, _, anchor = unescape(href).partition("#")
        assert anchor, f"{message}: no anchor"
        if gate in expected:
            assert anchor == expected[gate], message
        target = text(responder_client.get(path))
        assert anchor in ids_on(target), f"{message}: #{anchor} is not on {path}"
    # The same links on the read view's list of what is left.
    preview = text(responder_client.get(f"/postmortems/{pm.id}"))
    hrefs = re.findall(r'<a href="([^"]+)" data-gate="[a-z_]+">', preview)
    assert sorted(unescape(h) for h in hrefs) == sorted(unescape(h) for _, h, _ in links)


def test_viewers_gate_links_go_to_the_read_view_sections(viewer_client):
    pm = make_postmortem(template="lightweight")
    page = text(viewer_client.get(f"/postmortems/{pm.id}"))
    hrefs = re.findall(r'<a href="([^"]+)" data-gate="[a-z_]+">', page)
    assert hrefs
    for href in hrefs:
        path, _, anchor = unescape(href).partition("#")
        assert path == f"/postmortems/{pm.id}"
        assert anchor in ids_on(page)


# --- the new action item form -------------------------------------------------------------------------------


def test_new_action_item_form_is_its_own_labelled_fieldset(responder_client):
    pm = make_postmortem()
    items.create_action_item(db.session, pm, title="Existing item")
    db.session.commit()
    page = text(responder_client.get(f"/postmortems/{pm.id}/sections/action_items"))
    form = page[page.index(f'<form method="post" action="/postmortems/{pm.id}/action-items"'):]
    form = form[:form.index("</form>")]
    assert 'class="pm-new-item"' in form and "<fieldset>" in form and "<legend>New action item</legend>" in form
    controls = re.findall(r"<(input|select|textarea)\b([^>]*)>", form)
    named = [attrs for _, attrs in controls if 'type="hidden"' not in attrs]
    assert len(named) == 7
    for attrs in named:  # each one inside its <label>, with text, and an id of its own
        control_id = re.search(r'id="([^"]+)"', attrs).group(1)
        assert control_id.startswith("new-item-")
        label = re.search(r"<label[^>]*>([^<]+)<(?:input|select|textarea)\b[^>]*" + re.escape(f'id="{control_id}"'),
                          form)
        assert label and label.group(1).strip(), control_id
    assert "Existing item" not in form  # the items being edited are elsewhere
    assert page.index("Existing item") < page.index("<legend>New action item</legend>")


# --- Shortcut buttons only with Shortcut -----------------------------------------------------------------------


@pytest.fixture
def with_item():
    pm = make_postmortem()
    items.create_action_item(db.session, pm, title="Rotate certificates automatically")
    db.session.commit()
    return pm


def shortcut_bits(page: str) -> dict[str, bool]:
    return {"export": "Export to Shortcut" in page, "send_all": "Send all to Shortcut" in page,
            "card": "not in Shortcut" in page, "hint": "INCIDENTS_SHORTCUT_API_TOKEN" in page}


def test_without_shortcut_no_export_buttons_and_a_hint_for_admins_only(app, client, with_item, monkeypatch):
    monkeypatch.setitem(app.config, "SHORTCUT_API_TOKEN", "")
    pm = with_item
    login(client, make_user(role="responder"))
    for url in (f"/postmortems/{pm.id}", f"/postmortems/{pm.id}/sections/action_items", "/action-items"):
        assert shortcut_bits(text(client.get(url))) == {"export": False, "send_all": False, "card": False,
                                                        "hint": False}, url
    login(client, make_user(role="admin"))
    for url in (f"/postmortems/{pm.id}", f"/postmortems/{pm.id}/sections/action_items", "/action-items"):
        page = text(client.get(url))
        assert shortcut_bits(page) == {"export": False, "send_all": False, "card": False, "hint": True}, url
        hint = re.search(r'<p class="muted small sc-hint no-print">(.*?)</p>', page, re.S).group(1)
        assert 'href="/admin/shortcut"' in hint


def test_with_shortcut_the_export_buttons_and_no_hint(app, client, with_item, monkeypatch):
    monkeypatch.setitem(app.config, "SHORTCUT_API_TOKEN", "a-token")
    pm = with_item
    login(client, make_user(role="admin"))
    assert shortcut_bits(text(client.get(f"/postmortems/{pm.id}"))) == {
        "export": True, "send_all": True, "card": True, "hint": False}
    assert shortcut_bits(text(client.get(f"/postmortems/{pm.id}/sections/action_items"))) == {
        "export": True, "send_all": False, "card": True, "hint": False}
    assert shortcut_bits(text(client.get("/action-items"))) == {
        "export": True, "send_all": False, "card": True, "hint": False}
