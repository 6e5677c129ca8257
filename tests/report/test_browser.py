"""A real browser (Chromium) on the dashboard and the e-mail preview: rendered under the app's CSP with no
console errors (a blocked inline style or script would be one), with screenshots kept in the test's tmp dir."""

from __future__ import annotations

from tests.factories import PASSWORD, make_user
from tests.test_browser import live_server, page  # noqa: F401  (the shared fixtures)

PAST = "team=payments&weeks=4&until=2026-W47"


def sign_in(page, base: str, email: str) -> None:  # noqa: F811
    page.goto(base + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def test_dashboard_and_email_preview_in_a_browser(live_server, page, history, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    make_user(email="watcher@example.com", name="Wendy Watcher", role="viewer")
    sign_in(page, live_server, "watcher@example.com")

    page.goto(f"{live_server}/debt?{PAST}")
    expect(page.get_by_role("heading", name="Tech-debt ledger")).to_be_visible()
    expect(page.locator(".figure.bad .n")).to_have_text("1")
    expect(page.locator("figure.chart svg[role=img]")).to_have_count(4)
    box = page.locator("figure.chart svg[role=img]").first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 80  # the SVG really laid out
    expect(page.locator(".repeat-flag").first).to_contain_text("repeat, 2 items still open")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000

    page.locator("figure.chart a.mark").first.click()  # a bar leads to its items
    expect(page.get_by_role("heading", level=1)).to_contain_text("Opened · 2026-W44")

    page.goto(f"{live_server}/debt/report?week=2026-W47&{PAST.split('&')[0]}")
    frame = page.frame_locator("iframe.email-preview")
    expect(frame.get_by_text("Tech-debt report · Payments")).to_be_visible()
    expect(frame.get_by_text("Item b", exact=True).first).to_be_visible()
    # The frame is as tall as the whole e-mail (email-preview.js): nothing is cut off, on a phone either.
    whole = ("() => { const f = document.querySelector('iframe.email-preview'); const d = f.contentDocument;"
             " return d && d.readyState === 'complete' && d.body && d.body.innerText.includes('dashboard')"
             " && f.clientHeight >= d.documentElement.scrollHeight; }")
    page.wait_for_function(whole, timeout=5000)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(whole, timeout=5000)
    page.screenshot(path=str(tmp_path / "email-preview.png"), full_page=True)
    assert (tmp_path / "email-preview.png").stat().st_size > 10_000
    assert page.console_errors == []
