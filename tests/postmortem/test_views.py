import re

from flask import render_template_string

from incidents.extensions import db
from incidents.postmortem import services as svc
from incidents.postmortem.models import PostmortemStatus
from tests.conftest import csrf_token, login, post_form
from tests.factories import make_incident, make_service, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident


def text(response) -> str:
    return response.get_data(as_text=True)


def version_on(page: str) -> int:
    return int(re.search(r'name="version" value="(\d+)"', page).group(1))


def test_incident_panel_offers_templates_and_prompts_for_resolved_sev1(responder_client):
    incident = make_resolved_incident(severity="SEV1")
    page = text(responder_client.get(f"/incidents/{incident.ref}/postmortem"))
    assert "start a blameless post-mortem" in page
    for name in ("Full blameless review", "PagerDuty-style", "Lightweight"):
        assert name in page
    assert "Start post-mortem" in page
    quiet = text(responder_client.get(f"/incidents/{make_incident(severity='SEV3').ref}/postmortem"))
    assert "start a blameless post-mortem" not in quiet


def test_panel_is_includable_into_the_incident_page(app):
    pm = make_postmortem()
    with app.test_request_context():
        html = render_template_string('{% include "postmortem/_incident_panel.html" %}', incident=pm.incident)
    assert f"Post-mortem #{pm.id}" in html and "draft" in html


def test_list_prompts_for_resolved_sev1_sev2_without_a_postmortem(viewer_client):
    waiting = make_resolved_incident(severity="SEV2", title="Queue stuck")
    make_resolved_incident(severity="SEV3", title="Minor blip")
    make_postmortem(make_resolved_incident(severity="SEV1", title="Already reviewed"))
    page = text(viewer_client.get("/postmortems"))
    assert f"{waiting.ref}: Queue stuck" in page
    assert "Minor blip" not in page and "Already reviewed</a> <span" not in page


def test_start_from_the_form_then_second_start_conflicts(responder_client):
    incident = make_resolved_incident()
    r = post_form(responder_client, f"/incidents/{incident.ref}/postmortem", {"template": "lightweight"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/sections/summary")
    again = post_form(responder_client, f"/incidents/{incident.ref}/postmortem", {"template": "lightweight"})
    assert again.status_code == 409 and "already has a post-mortem" in text(again)
    missing = post_form(responder_client, f"/incidents/{make_resolved_incident().ref}/postmortem", {"template": ""})
    assert missing.status_code == 404


def test_section_page_shows_guidance_and_saves_a_version(responder_client):
    pm = make_postmortem()
    page = text(responder_client.get(f"/postmortems/{pm.id}/sections/detection"))
    assert "Step 4 of 12: Detection" in page
    assert "How did we find out" in page  # guidance beside the text
    assert 'name="version" value="1"' in page
    r = post_form(responder_client, f"/postmortems/{pm.id}/sections/detection",
                  {"body": "An alert fired; we should have paged sooner.", "version": "1", "go": "next",
                   "next": "response"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/sections/response")
    followed = text(responder_client.get(f"/postmortems/{pm.id}/sections/detection"))
    assert "Version 2, saved by Rita Responder" in followed
    assert "blameless coach has 1 suggestion(s) for this text; it is saved either way" in followed


def test_two_editors_of_one_section_get_a_merge_view_and_both_texts_survive(client):
    ann, bob = make_user(name="Ann Editor"), make_user(name="Bob Editor")
    pm = make_postmortem()
    url = f"/postmortems/{pm.id}/sections/summary"
    # Both open the section at version 1.
    login(client, ann)
    ann_version = version_on(text(client.get(url)))
    login(client, bob)
    bob_version = version_on(text(client.get(url)))
    assert ann_version == bob_version == 1
    login(client, ann)
    assert post_form(client, url, {"body": "Ann: the cache expired.", "version": ann_version}).status_code == 302
    login(client, bob)
    merge = post_form(client, url, {"body": "Bob: retries amplified load.", "version": bob_version})
    assert merge.status_code == 409
    page = text(merge)
    assert "Ann Editor saved" in page and "Nothing was overwritten" in page
    assert 'data-merge="theirs">Ann: the cache expired.</pre>' in page
    assert 'data-merge="yours">Bob: retries amplified load.</pre>' in page
    assert version_on(page) == 2
    db.session.expire_all()
    assert svc.get_postmortem(db.session, pm.id).section("summary").body == "Ann: the cache expired."  # kept
    merged = "Ann: the cache expired.\nBob: retries amplified load."
    assert post_form(client, url, {"body": merged, "version": "2"}).status_code == 302
    history = text(client.get(f"{url}/history"))
    assert "Version 3 · Bob Editor" in history and "Version 2 · Ann Editor" in history
    assert '<span class="add">+Bob: retries amplified load.</span>' in history
    assert '<span class="add">+Ann: the cache expired.</span>' in history


def test_bad_section_input_is_a_clear_4xx(responder_client):
    pm = make_postmortem()
    url = f"/postmortems/{pm.id}/sections/summary"
    assert post_form(responder_client, url, {"body": "x"}).status_code == 400
    assert post_form(responder_client, url, {"body": "x" * (svc.MAX_BODY + 1), "version": "1"}).status_code == 422
    assert post_form(responder_client, f"/postmortems/{pm.id}/sections/nope", {"body": "x", "version": "1"}
                     ).status_code == 404
    assert responder_client.get("/postmortems/999999").status_code == 404
    assert responder_client.post(url, data={"body": "no csrf", "version": "1"}).status_code == 400


def test_viewers_read_but_cannot_edit(viewer_client):
    pm = make_postmortem()
    assert viewer_client.get(f"/postmortems/{pm.id}").status_code == 200
    assert viewer_client.get("/postmortems").status_code == 200
    assert viewer_client.get(f"/postmortems/{pm.id}/sections/summary").status_code == 403
    assert post_form(viewer_client, f"/postmortems/{pm.id}/sections/summary", {"body": "x", "version": "1"}
                     ).status_code == 403
    assert viewer_client.get("/admin/postmortem-templates").status_code == 403


def test_factors_participants_comments_and_action_items_by_form(responder_client):
    pm = make_postmortem()
    owner = make_user(name="Olive Owner")
    base = f"/postmortems/{pm.id}"
    assert post_form(responder_client, f"{base}/factors", {"category": "dependency", "description": "DNS TTL"}
                     ).status_code == 302
    bad = post_form(responder_client, f"{base}/factors", {"category": ""})
    assert bad.status_code == 422 and "Choose a contributing-factor category" in text(bad)
    assert post_form(responder_client, f"{base}/participants", {"user_id": owner.id, "role": "SME"}).status_code == 302
    assert post_form(responder_client, f"{base}/comments", {"section": "summary", "body": "Add numbers?"}
                     ).status_code == 302
    assert post_form(responder_client, f"{base}/comments", {"section": "nope", "body": "x"}).status_code == 422
    r = post_form(responder_client, f"{base}/action-items", {"title": "Lower DNS TTL", "owner_id": owner.id,
                                                            "due_date": "2031-05-01", "type": "mitigate",
                                                            "priority": "high", "estimate": "2"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/sections/action_items#action-items")
    bad_item = post_form(responder_client, f"{base}/action-items", {"title": "x", "due_date": "soon"})
    assert bad_item.status_code == 422 and "Due date must be YYYY-MM-DD" in text(bad_item)
    db.session.expire_all()
    pm = svc.get_postmortem(db.session, pm.id)
    item = pm.action_items[0]
    assert (item.owner.name, item.type.value, item.estimate) == ("Olive Owner", "mitigate", 2)
    wont = post_form(responder_client, f"/action-items/{item.id}", {"status": "wont_do", "wont_do_reason": ""})
    assert wont.status_code == 422 and "won" in text(wont)
    assert post_form(responder_client, f"/action-items/{item.id}", {"status": "done"}).status_code == 302
    page = text(responder_client.get(f"{base}/sections/factors"))
    assert "DNS TTL" in page
    assert "Add numbers?" in text(responder_client.get(f"{base}/sections/summary"))
    assert "Olive Owner" in text(responder_client.get(f"{base}/sections/participants"))


def test_publish_is_stopped_by_gates_with_the_exact_list_then_goes_through(responder_client, admin):
    pm = make_postmortem(template="lightweight")
    base = f"/postmortems/{pm.id}"
    assert post_form(responder_client, f"{base}/review").status_code == 302
    stopped = post_form(responder_client, f"{base}/publish")
    assert stopped.status_code == 422
    gates = re.findall(r'<li data-gate="([a-z_]+)"><a href="[^"]+">([^<]+)</a></li>', text(stopped))
    assert gates == [
        ("required_section", "Required section \u201cSummary\u201d is empty."),
        ("required_section", "Required section \u201cAction items\u201d is empty."),
        ("contributing_factor", "Add at least one contributing factor."),
    ]
    fill_for_publishing(svc.get_postmortem(db.session, pm.id))
    assert post_form(responder_client, f"{base}/publish").status_code == 302
    db.session.expire_all()
    assert svc.get_postmortem(db.session, pm.id).status == PostmortemStatus.PUBLISHED
    # Read-only now: the editor sends you to the read view, and saving is refused.
    assert responder_client.get(f"{base}/sections/summary").status_code == 302
    refused = post_form(responder_client, f"{base}/sections/summary", {"body": "late", "version": "2"})
    assert refused.status_code == 409 and "read-only" in text(refused)
    assert post_form(responder_client, f"{base}/reopen").status_code == 403
    login(responder_client, admin)
    assert post_form(responder_client, f"{base}/reopen", {"reason": "customer data"}).status_code == 302
    view = text(responder_client.get(base))
    assert "Status: published -&gt; draft (customer data) · Ada Admin" in view


def test_read_view_renders_markdown_inert(responder_client):
    pm = make_postmortem()
    nasty = ("Hi <script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror=alert(3)> "
             "<a href=\"#\" onclick=\"alert(4)\">c</a> <iframe src=\"//evil\"></iframe> **bold**")
    svc.save_section(db.session, pm, "summary", nasty, 1)
    svc.add_comment(db.session, pm, "summary", "<script>alert(5)</script>")
    db.session.commit()
    read = text(responder_client.get(f"/postmortems/{pm.id}"))
    assert "<script>" not in read and "javascript:" not in read and "<iframe" not in read
    assert "onerror" not in read and "onclick" not in read
    editor = text(responder_client.get(f"/postmortems/{pm.id}/sections/summary"))
    # The editor shows the raw text, escaped inside the textarea: nothing in it is live markup.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in editor
    for live in ("<script>", 'href="javascript:', "<img src=x", ' onclick="', "<iframe"):
        assert live not in editor
    assert "<strong>bold</strong>" in text(responder_client.get(f"/postmortems/{pm.id}"))


def test_markdown_download(responder_client):
    pm = make_postmortem()
    r = responder_client.get(f"/postmortems/{pm.id}.md")
    assert r.status_code == 200 and r.mimetype == "text/markdown"
    assert f'filename="postmortem-{pm.incident.ref.lower()}.md"' in r.headers["Content-Disposition"]
    assert text(r).startswith(f"# Post-mortem: {pm.title}")


def test_list_filters_and_search(responder_client):
    service = make_service(name="Payments")
    pm = make_postmortem(make_resolved_incident(title="Card declines", service_id=service.id))
    make_postmortem(make_resolved_incident(title="Slow search"))
    svc.save_section(db.session, pm, "summary", "The tokeniser rejected valid cards", 1)
    db.session.commit()
    assert "Card declines" in text(responder_client.get("/postmortems?q=tokeniser"))
    assert "Slow search" not in text(responder_client.get("/postmortems?q=tokeniser"))
    assert "Slow search" not in text(responder_client.get(f"/postmortems?service={service.slug}"))
    assert "Card declines" in text(responder_client.get(f"/postmortems?team={service.team.slug}&status=draft"))
    assert responder_client.get("/postmortems?since=tomorrow").status_code == 422
    assert responder_client.get("/postmortems?team=nope").status_code == 404


def test_coach_endpoint_for_the_page_needs_session_and_csrf(responder_client):
    assert responder_client.post("/postmortems/blameless-check", json={"text": "careless"}).status_code == 400
    token = csrf_token(responder_client)
    r = responder_client.post("/postmortems/blameless-check", json={"text": "That was careless."},
                              headers={"X-CSRFToken": token})
    assert r.status_code == 200
    assert [(f["start"], f["end"], f["phrase"]) for f in r.get_json()["findings"]] == [(9, 17, "careless")]
    assert responder_client.post("/postmortems/blameless-check", json={"nope": 1},
                                 headers={"X-CSRFToken": token}).status_code == 422


def test_admin_edits_templates_taxonomy_and_word_list(admin_client):
    r = post_form(admin_client, "/admin/postmortem-templates/new", {
        "name": "Security review", "rows": "3",
        "key-0": "summary", "title-0": "Summary", "kind-0": "markdown", "required-0": "on", "position-0": "2",
        "key-1": "exposure", "title-1": "Exposure", "kind-1": "impact", "guidance-1": "What data?", "position-1": "1",
        "key-2": "", "title-2": ""})
    assert r.status_code == 302
    tpl = svc.get_template(db.session, "security-review")
    assert [s["key"] for s in tpl.sections] == ["exposure", "summary"] and tpl.version == 1
    bad = post_form(admin_client, "/admin/postmortem-templates/new", {"name": "Broken", "rows": "1",
                                                                        "key-0": "Bad Key", "title-0": "x"})
    assert bad.status_code == 422 and "Key: lowercase" in text(bad)
    edit = post_form(admin_client, f"/admin/postmortem-templates/{tpl.id}", {
        "name": "Security review", "active": "on", "rows": "2",
        "key-0": "exposure", "title-0": "Exposure", "kind-0": "impact", "position-0": "0",
        "key-1": "summary", "title-1": "Summary", "kind-1": "markdown", "delete-1": "on"})
    assert edit.status_code == 302
    db.session.expire_all()
    tpl = svc.get_template(db.session, "security-review")
    assert tpl.version == 2 and [s["key"] for s in tpl.sections] == ["exposure"]
    assert "Security review" in text(admin_client.get("/admin/postmortem-templates"))
    assert post_form(admin_client, "/admin/contributing-factors", {"name": "Vendor outage"}).status_code == 302
    assert "vendor-outage" in [c.slug for c in svc.list_categories(db.session)]
    assert post_form(admin_client, "/admin/blameless-phrases", {
        "phrase": "dropped the ball", "category": "blame", "suggestion": "Describe the gap."}).status_code == 302
    assert post_form(admin_client, "/admin/blameless-phrases", {"phrase": "", "suggestion": "",
                                                               "category": "blame"}).status_code == 422
    assert "dropped the ball" in text(admin_client.get("/admin/blameless-phrases"))
    token = csrf_token(admin_client)
    found = admin_client.post("/postmortems/blameless-check", json={"text": "they dropped the ball"},
                              headers={"X-CSRFToken": token}).get_json()["findings"]
    assert [f["phrase"] for f in found] == ["dropped the ball"]
