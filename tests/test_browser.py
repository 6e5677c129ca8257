"""A real browser against a real server: a new install, from the setup page to a closed incident.

The fixtures (live_server, page) are in tests/browser.py."""

from __future__ import annotations

import re

from tests import browser

# Still importable from here (tests/report/test_browser.py does); tests/browser.py provides them to every test.
CHROMIUM, CHROMIUM_ARGS, live_server, page = browser.CHROMIUM, browser.CHROMIUM_ARGS, browser.live_server, browser.page


def test_first_run_to_closed_incident(live_server, page, tmp_path):
    from playwright.sync_api import expect

    # A new install: every page leads to the setup form.
    page.goto(live_server + "/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    page.get_by_label("Your name").fill("Grace Admin")
    page.get_by_label("E-mail").fill("grace@example.com")
    page.get_by_label("Password", exact=False).first.fill("a long enough password")
    page.get_by_label("Password again").fill("a long enough password")
    page.get_by_role("button", name="Create admin and sign in").click()

    # Teams & services: explained, then set up.
    expect(page.get_by_role("heading", name="No teams yet")).to_be_visible()
    page.get_by_role("link", name="Create the first team").click()
    page.get_by_label("Name", exact=True).fill("Payments")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_text("Team Payments created")).to_be_visible()
    page.get_by_role("link", name="Add the first one").click()
    page.get_by_label("Name", exact=True).fill("Checkout API")
    expect(page.locator("select[name=team_id]")).to_have_value(re.compile(r"\d+"))  # preselected
    page.get_by_role("button", name="Create service").click()
    expect(page.get_by_role("cell", name="Checkout API")).to_be_visible()

    # Declare an incident from the empty list.
    page.get_by_role("navigation").get_by_role("link", name="Incidents").click()
    expect(page.get_by_text("No open incidents — declare one")).to_be_visible()
    page.get_by_role("link", name="Declare an incident").click()
    page.get_by_label("Title").fill("Checkout returns 500 errors")
    page.locator("select[name=severity]").select_option("SEV1")
    page.locator("select[name=service_id]").select_option(label="Checkout API (Payments)")
    page.get_by_label("Summary").fill("Card payments **fail** for EU users.")
    page.get_by_role("button", name="Declare incident").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Checkout returns 500 errors")
    expect(page.locator(".markdown strong")).to_have_text("fail")

    # Click through every status.
    for button, status in [("Acknowledge", "acknowledged"), ("Start investigating", "investigating"),
                           ("Mark mitigated", "mitigated"), ("Resolve incident", "resolved"), ("Close", "closed")]:
        if status == "resolved":  # resolving asks what fixed it, in a disclosure that needs no script
            page.locator("details.resolve summary").click()
            page.locator("details.resolve textarea[name=resolution]").fill("Rolled back the deploy.")
        page.get_by_role("button", name=button, exact=True).click()
        expect(page.locator(".badges .status")).to_have_text(status)
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()

    page.get_by_label("Add a note").fill("Rolled back the **deploy**; errors gone.")
    page.get_by_role("button", name="Add note").click()

    entries = page.locator("ol.timeline li.entry")
    expect(entries).to_have_count(8)  # declared, the declarer as commander, five moves, the note
    expect(entries.first).to_contain_text("Incident declared (SEV1)")
    expect(entries.nth(1)).to_contain_text("Incident commander: Grace Admin")
    expect(entries.nth(5)).to_contain_text("Rolled back the deploy.")  # the resolution note
    expect(entries.nth(6)).to_contain_text("Status: resolved -> closed")
    expect(entries.last).to_contain_text("Rolled back the deploy; errors gone.")
    expect(entries.last).to_contain_text("Grace Admin")
    assert page.locator(".durations").inner_text().count("—") == 0  # every milestone reached

    # The list shows it under "all", not under the default "open" view.
    page.goto(live_server + "/?show=all")
    expect(page.get_by_role("link", name="Checkout returns 500 errors")).to_be_visible()

    shot = tmp_path / "incident.png"
    page.goto(page.url)  # back to a known page for the picture
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert not page.console_errors  # e.g. a CSP violation from an inline style or script


def test_copy_buttons_copy_the_webhook_url_and_token(live_server, page):
    from playwright.sync_api import expect

    page.goto(live_server + "/setup")
    page.get_by_label("Your name").fill("Grace Admin")
    page.get_by_label("E-mail").fill("grace@example.com")
    page.get_by_label("Password", exact=False).first.fill("a long enough password")
    page.get_by_label("Password again").fill("a long enough password")
    page.get_by_role("button", name="Create admin and sign in").click()
    page.goto(live_server + "/admin/integrations")
    page.get_by_label("Name", exact=True).fill("Prod OpsGenie")
    page.get_by_role("button", name="Add integration").click()

    url = page.locator("#created-url").inner_text()
    assert url.startswith(live_server + "/webhooks/opsgenie?token=")  # the port actually served
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page.get_by_role("button", name="Copy the webhook URL").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == url
    page.get_by_role("button", name="Copy the token").click()
    assert page.evaluate("navigator.clipboard.readText()") == url.split("token=", 1)[1]

    # Without the asynchronous clipboard API (plain http on another host), the text is selected at least.
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.get_by_role("button", name="Copy the webhook URL").click()
    assert page.evaluate("window.getSelection().toString()") == url
    assert not page.console_errors
