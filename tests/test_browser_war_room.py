"""A real browser in the war room, on a desktop and on a 390x844 phone: declare, assign me, post two updates (the
second once the first one's timer is overdue), read the stakeholder link signed out, resolve with a note, revoke the
link. Screenshots of the incident page and the stakeholder view go to $INCIDENTS_SCREENSHOTS (or the test's
tmp_path)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import PASSWORD, make_user
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, live_server  # noqa: F401  (the served app, a fixture)

VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport, is_mobile=viewport["width"] < 500)
    context.set_default_timeout(5000)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
    return page


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("INCIDENTS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(page, path: Path, full_page: bool = True) -> None:
    page.screenshot(path=str(path), full_page=full_page)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, path
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= page.viewport_size["width"] and height >= 300, (width, height)


def top(page, selector: str) -> float:
    return page.locator(selector).bounding_box()["y"]


@pytest.mark.parametrize("device", VIEWPORTS)
def test_war_room_flow(live_server, browser, session, shots, device):  # noqa: F811
    from playwright.sync_api import expect

    from incidents.database import utcnow
    from incidents.incident.models import Incident

    make_user(role="admin", email="ada@example.com", name="Ada Admin")
    make_user(role="responder", email="rita@example.com", name="Rita Responder")
    page = new_page(browser, VIEWPORTS[device])

    page.goto(live_server + "/login")
    page.get_by_label("E-mail").fill("rita@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # Declare.
    page.goto(live_server + "/incidents/new")
    page.get_by_label("Title").fill("Checkout returns 500 errors")
    page.locator("select[name=severity]").select_option("SEV1")
    page.get_by_role("button", name="Declare incident").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Checkout returns 500 errors")
    expect(page.locator(".war-room")).to_have_class(re.compile(r"\bsev-accent-sev1\b"))
    expect(page.locator(".clock")).to_have_text(re.compile(r"^open for \d+s$"))
    # The clock ticks in the browser (incident.js): an impact that began 2h 05m ago reads so without a reload.
    page.locator(".clock").evaluate("""el => {
        el.dataset.started = new Date(Date.now() - (125 * 60 + 7) * 1000).toISOString();
        document.dispatchEvent(new Event("visibilitychange")); }""")
    expect(page.locator(".clock")).to_have_text("open for 2h 05m")
    ref = re.search(r"/incidents/(INC-\d+)$", page.url).group(1)
    incident_url = page.url

    # The declarer is the commander (DECLARER_IS_COMMANDER); Assign me takes the communications lead too.
    people = page.locator("#people")
    expect(people.locator("li.role-commander")).to_contain_text("Rita Responder")
    expect(page.get_by_role("button", name="Assign me as incident commander")).to_have_count(0)
    page.get_by_role("button", name="Assign me as communications lead").click()
    expect(page.locator(".flash.success")).to_contain_text("communications lead")
    expect(people.locator("li.role-comms_lead")).to_contain_text("Rita Responder")

    # Links: edited in their card, then one tap away in the head of the page.
    page.locator("#links summary").click()
    page.get_by_label("Chat channel").fill("https://chat.example.com/inc-checkout")
    page.get_by_label("Runbook").fill("https://wiki.example.com/runbooks/checkout")
    page.get_by_role("button", name="Save links").click()
    expect(page.locator(".quick-links a")).to_have_text(["Chat ↗", "Runbook ↗"])
    expect(page.locator(".quick-links a").first).to_have_attribute("href", "https://chat.example.com/inc-checkout")

    # The first update, with a 15-minute timer.
    page.get_by_label("Impact now").fill("EU card payments **fail**.")
    page.get_by_label("What we are doing").fill("Rolling back deploy 1f3a2c.")
    page.get_by_label("Next update in").select_option("15")
    page.get_by_role("button", name="Post update").click()
    latest = page.locator("#latest-update")
    expect(latest.locator("dd").first).to_have_text("EU card payments fail.")
    expect(latest.locator(".next-update")).to_have_text(re.compile(r"Next update due in 1[45] min"))

    # The timer runs out: the page flags the overdue update in red, the list too.
    incident = session.scalars(sa.select(Incident)).one()
    session.execute(sa.update(Incident).where(Incident.id == incident.id)
                    .values(next_update_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    page.reload()
    expect(latest.locator(".next-update.overdue")).to_have_text(re.compile(r"Next update overdue by [56] min"))
    colour = latest.locator(".next-update").evaluate("el => getComputedStyle(el).color")
    assert colour == "rgb(192, 57, 43)"  # --danger
    page.goto(live_server + "/")
    expect(page.locator("tr", has_text=ref).locator(".chip.overdue")).to_have_text("update overdue")
    page.goto(incident_url)

    # The second update (the form is open while overdue) moves it to mitigated.
    page.locator("#latest-update select[name=status]").select_option("mitigated")
    page.get_by_label("Impact now").fill("Payments recovering; a few retries still fail.")
    page.get_by_label("What we are doing").fill("Watching error rates.")
    page.get_by_role("button", name="Post update").click()
    expect(latest.locator(".next-update")).to_have_text(re.compile(r"Next update due in (29|30) min"))
    expect(page.locator(".badges .status")).to_have_text("mitigated")
    page.get_by_label("Add a note").fill("Private: db-7 ran out of connections.")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator("ol.entries li.entry").first).to_contain_text("db-7")

    screenshot(page, shots / f"incident-{device}-open.png")

    if device == "phone":
        # One column: people and the latest update come before the timeline, on screen as in the DOM.
        assert top(page, "#people") < top(page, "#latest-update") < top(page, "#timeline")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    else:
        assert top(page, "#people") < top(page, "#timeline")
        assert page.locator("#people").bounding_box()["x"] > page.locator("#timeline").bounding_box()["x"]

    # The stakeholder link, read signed out.
    page.get_by_role("button", name="Create stakeholder link").click()
    status_url = page.locator("#status-url").inner_text()
    assert re.fullmatch(re.escape(live_server) + r"/status/[\w-]{32,}", status_url)
    outsider = new_page(browser, VIEWPORTS[device])
    response = outsider.goto(status_url)
    assert response.status == 200 and response.headers["cache-control"] == "no-store"
    expect(outsider.get_by_role("heading", level=1)).to_contain_text("Checkout returns 500 errors")
    expect(outsider.locator("#impact-h + .markdown")).to_have_text("Payments recovering; a few retries still fail.")
    expect(outsider.locator("ol.status-updates > li")).to_have_count(2)
    body = outsider.locator("body").inner_text()
    assert "db-7" not in body and "Rita" not in body and "Sign out" not in body
    screenshot(outsider, shots / f"stakeholder-{device}.png")
    assert not outsider.console_errors

    # Resolve with a note, by keyboard: the Resolve disclosure holds the required resolution.
    page.locator("details.resolve summary").focus()
    page.keyboard.press("Enter")
    resolution = page.locator("details.resolve textarea[name=resolution]")
    expect(resolution).to_be_visible()
    page.get_by_role("button", name="Resolve incident").click()  # empty: the browser asks for it first
    expect(page.locator(".badges .status")).to_have_text("mitigated")
    resolution.fill("Rolled back 1f3a2c and raised the pool size.")
    resolution.press("Tab")
    expect(page.get_by_role("button", name="Resolve incident")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".badges .status")).to_have_text("resolved")
    expect(page.locator(".resolution .markdown")).to_have_text("Rolled back 1f3a2c and raised the pool size.")
    expect(page.locator("ol.entries li.entry").first).to_contain_text("Incident declared")  # over: in order
    screenshot(page, shots / f"incident-{device}.png")
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, shots / f"incident-{device}-first-screen.png", full_page=False)  # what a phone shows first

    # The outsider sees it resolved; once revoked, the link answers 404.
    outsider.reload()
    expect(outsider.locator(".badges .status")).to_have_text("resolved")
    page.get_by_role("button", name="Revoke link").click()
    expect(page.get_by_role("button", name="Create stakeholder link")).to_be_visible()
    assert outsider.goto(status_url).status == 404
    assert not page.console_errors  # e.g. a CSP violation from an inline style or script
