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
