"""The whole post-mortem flow in a real browser (Playwright + Debian Chromium); skipped where either is absent."""

from __future__ import annotations

import os
import re
import threading

import pytest

from incidents.extensions import db
from incidents.postmortem.models import Postmortem, PostmortemStatus
from tests.factories import PASSWORD, make_user
from tests.postmortem.factories import make_resolved_incident

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("INCIDENTS_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def live_server(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def page(live_server):
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as e:  # a Chromium that cannot start here is an environment gap, not a failure
            pytest.skip(f"Chromium did not start: {e}")
        context = browser.new_context(base_url=live_server)
        context.set_default_timeout(10_000)
        page = context.new_page()
        errors: list[str] = []
        # Script errors (a CSP refusal included); HTTP statuses are asserted by the test itself (422 is expected).
        page.on("console", lambda m: errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                if "blameless-check" in r.url and r.status != 200 else None)
        yield page
        browser.close()
        assert not errors, f"browser errors: {errors}"


def test_postmortem_flow_from_resolved_incident_to_published(app, page):
    user = make_user(name="Rita Responder", email="rita@example.com")
    make_user(name="Olive Owner")
    incident = make_resolved_incident(title="Checkout errors after config push", severity="SEV1")
    ref, email = incident.ref, user.email
    db.session.commit()  # the live server's requests use their own connections: leave no lock behind
    expect = sync_api.expect

    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Start from the resolved SEV1 incident: it prompts for a post-mortem, with a template choice.
    page.goto(f"/incidents/{ref}/postmortem")
    expect(page.get_by_text("start a blameless post-mortem")).to_be_visible()
    page.get_by_label(re.compile("Lightweight")).check()
    page.get_by_role("button", name="Start post-mortem").click()
    expect(page.get_by_role("heading", name=re.compile("Step 1 of 5: Summary"))).to_be_visible()
    expect(page.locator(".pm-guidance")).to_contain_text("busy reader")

    # The coach flags blame wording while typing, and offers a rewrite.
    body = page.locator("textarea#body")
    body.press_sequentially("The on-call engineer failed to roll back", delay=5)
    coach = page.locator("[data-coach-output]")
    expect(coach).to_be_visible()
    expect(coach.locator("li").first).to_contain_text("failed to")
    expect(coach.locator("li").first).to_contain_text("Say what the system allowed")
    body.fill("A config push disabled card tokenisation in eu-west for 40 minutes; a rollback restored it.")
    expect(coach).to_be_hidden()
    page.get_by_role("button", name="Save section").click()
    expect(page.get_by_text("Version 2, saved by Rita Responder")).to_be_visible()

    # The timeline starts from the incident's own timeline.
    page.locator(".pm-steps").get_by_role("link", name="Timeline").click()
    expect(page.locator("textarea#body")).to_have_value(re.compile(r"\*\*Detected\*\*[\s\S]*\*\*Mitigated\*\*"))

    # An action item, still missing owner, due date and type.
    page.locator(".pm-steps").get_by_role("link", name="Action items").click()
    new_item = page.locator("form.pm-new-item")
    new_item.get_by_label("Title").fill("Canary config pushes per region")
    new_item.get_by_role("button", name="Add action item").click()
    expect(page.get_by_text("Action item “Canary config pushes per region” added.")).to_be_visible()

    # Review, then publishing is stopped with exactly what is missing.
    page.get_by_role("link", name=re.compile("Read view")).click()
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_role("button", name="Publish").click()
    gates = page.locator(".pm-gates li")
    expect(gates).to_have_text([
        "Add at least one contributing factor.",
        "Action item “Canary config pushes per region” needs an owner.",
        "Action item “Canary config pushes per region” needs a due date.",
        "Action item “Canary config pushes per region” needs a type.",
    ])

    # Fix it: a contributing factor, and the action item's owner, due date and type.
    page.goto(page.url.replace("/publish", "") + "/sections/factors")
    page.get_by_label("Category").select_option("change")
    page.get_by_label("What made it possible or worse").fill("Config pushes skip the canary stage")
    page.get_by_role("button", name="Add factor").click()
    expect(page.locator(".pm-factors")).to_contain_text("Change or deploy")
    page.locator(".pm-steps").get_by_role("link", name="Action items").click()
    item = page.locator("details.pm-item form").first
    item.get_by_label("Owner").select_option(label="Olive Owner")
    item.get_by_label("Due").fill("2031-06-30")
    item.get_by_label("Type").select_option("prevent")
    item.get_by_role("button", name="Save item").click()
    expect(page.locator("details.pm-item summary")).to_contain_text("prevent · Olive Owner · due 2031-06-30")

    page.get_by_role("link", name=re.compile("Read view")).click()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_text("Published. The post-mortem is now read-only.")).to_be_visible()
    expect(page.locator(".pm-header .pm-status")).to_have_text("published")
    expect(page.get_by_role("button", name="Publish")).to_have_count(0)

    db.session.expire_all()
    pm = db.session.query(Postmortem).one()
    assert pm.status == PostmortemStatus.PUBLISHED and pm.published_at is not None
    assert [f.category.slug for f in pm.factors] == ["change"]
    db.session.commit()


def _sign_in(page, email):
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_save_and_go_to_next_saves_the_new_action_item_typed_in(app, page):
    """Issue 11: "Save and go to next" said "Saved." and threw the new action item away."""
    from incidents.action_item.models import ActionItem
    from tests.postmortem.factories import make_postmortem

    user = make_user(name="Rita Responder", email="rita@example.com")
    make_user(name="Olive Owner")
    pm = make_postmortem()
    key = next(s.key for s in pm.sections if s.kind.value == "action_items")
    pm_id, email = pm.id, user.email
    db.session.commit()
    expect = sync_api.expect
    _sign_in(page, email)

    page.goto(f"/postmortems/{pm_id}/sections/{key}")
    new_item = page.locator("form.pm-new-item")
    new_item.get_by_label("Title").fill("Alert on card tokenisation errors")
    new_item.get_by_label("Owner").select_option(label="Olive Owner")
    new_item.get_by_label("Due").fill("2031-07-01")
    new_item.get_by_label("Type").select_option("detect")
    page.get_by_role("button", name="Save and go to next").click()
    expect(page.get_by_text("Action item “Alert on card tokenisation errors” added.")).to_be_visible()
    expect(page.get_by_text("Saved.")).to_be_visible()
    assert f"/sections/{key}" not in page.url  # it went on to the next section

    db.session.expire_all()
    items = db.session.query(ActionItem).filter_by(postmortem_id=pm_id).all()
    assert [(i.title, i.owner.name, i.due_date.isoformat(), i.type.value) for i in items] == [
        ("Alert on card tokenisation errors", "Olive Owner", "2031-07-01", "detect")]
    db.session.commit()

    # An item that cannot be saved (no title) keeps the user on the page, the input still there, and no "Saved.".
    page.goto(f"/postmortems/{pm_id}/sections/{key}")
    new_item = page.locator("form.pm-new-item")
    new_item.get_by_label("Owner").select_option(label="Olive Owner")
    page.get_by_role("button", name="Save and go to next").click()
    expect(page.locator("[data-subform-errors]")).to_contain_text("Not saved yet")
    assert page.url.endswith(f"/sections/{key}")
    expect(new_item.get_by_label("Owner")).to_have_value(re.compile(r"\d+"))
    expect(page.get_by_text("Saved.")).to_have_count(0)


def test_action_items_tick_only_when_its_gates_pass(app, page):
    """The section tick is the publishing gate: an item without an owner keeps "Action items" unticked."""
    from datetime import date

    from incidents.action_item import services as item_services
    from tests.postmortem.factories import make_postmortem

    user = make_user(name="Rita Responder", email="rita@example.com")
    pm = make_postmortem()
    key = next(s.key for s in pm.sections if s.kind.value == "action_items")
    item = item_services.create_action_item(db.session, pm, title="Canary config pushes", by=user,
                                            due_date=date(2031, 6, 30), type="prevent")
    pm_id, item_id, email, user_id = pm.id, item.id, user.email, user.id
    db.session.commit()
    expect = sync_api.expect
    _sign_in(page, email)

    step = page.locator(".pm-steps li").filter(has_text="Action items")
    page.goto(f"/postmortems/{pm_id}/sections/{key}")
    expect(step.locator(".pm-done")).to_have_count(0)

    item_services.update_action_item(db.session, item_services.get_action_item(db.session, item_id),
                                     owner_id=user_id)
    db.session.commit()
    page.reload()
    expect(step.locator(".pm-done")).to_have_count(1)


def test_leaving_any_form_with_typed_input_asks_first(app, page):
    """Issue 11: any form with unsaved input saves all of it or warns before leaving (forms.js on every page)."""
    user = make_user(name="Rita Responder", email="rita@example.com")
    email = user.email
    db.session.commit()
    _sign_in(page, email)
    dialogs: list[str] = []

    def answer(dialog):
        dialogs.append(dialog.type)
        dialog.dismiss()  # "stay on this page"

    page.on("dialog", answer)
    page.goto("/incidents/new")
    page.get_by_role("link", name="Alerts").first.click()  # nothing typed: leaves without a word
    sync_api.expect(page).to_have_url(re.compile(r"/alerts"))
    assert dialogs == []

    page.goto("/incidents/new")
    page.get_by_label("Title").fill("Checkout answers 502 for a third of requests")
    page.get_by_role("link", name="Alerts").first.click()
    page.wait_for_timeout(500)
    assert dialogs == ["beforeunload"]
    assert page.url.endswith("/incidents/new")  # stayed, with the typed title
    sync_api.expect(page.get_by_label("Title")).to_have_value("Checkout answers 502 for a third of requests")


def test_radio_buttons_and_checkboxes_sit_beside_their_label_text(app, page):
    """Issue 14: every input was display:block, so each template radio sat centred on a line of its own."""
    user = make_user(name="Rita Responder", email="rita@example.com")
    incident = make_resolved_incident(title="Checkout errors", severity="SEV1")
    ref, email = incident.ref, user.email
    db.session.commit()
    page.set_viewport_size({"width": 390, "height": 844})

    def beside(control, text) -> None:
        """The control is left of its text, on the same line, and only as wide as a control."""
        c, t = control.bounding_box(), text.bounding_box() if hasattr(text, "bounding_box") else text
        assert c and t and c["width"] < 40, c
        assert c["x"] + c["width"] <= t["x"] + 1, (c, t)
        assert c["y"] < t["y"] + t["height"] and t["y"] < c["y"] + c["height"], (c, t)  # overlap vertically

    page.goto("/login")
    label_text = page.locator("label.check", has=page.locator("input[name=remember]")).evaluate(
        """label => { const range = document.createRange();
                      const words = [...label.childNodes].find(n => n.nodeType === 3 && n.textContent.trim());
                      range.selectNodeContents(words);
                      const r = range.getBoundingClientRect();
                      return {x: r.x, y: r.y, width: r.width, height: r.height}; }""")
    beside(page.locator("input[name=remember]"), label_text)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"/incidents/{ref}/postmortem")
    choices = page.locator("label.pm-template-choice")
    assert choices.count() >= 3
    for i in range(choices.count()):
        beside(choices.nth(i).locator("input[type=radio]"), choices.nth(i).locator("strong"))
    # One choice per line still.
    boxes = [choices.nth(i).bounding_box() for i in range(choices.count())]
    assert all(a["y"] + a["height"] <= b["y"] + 1 for a, b in zip(boxes, boxes[1:], strict=False))
