"""Accessibility in a real browser: axe-core over every main page, keyboard focus, and the phone menu.

axe-core comes from npm (tests/a11y/package.json; .ci/run runs `npm ci --prefix tests/a11y`). Its script is
injected into the page, which the app's CSP (script-src 'self') forbids, so those contexts bypass the CSP; the
CSP itself is tested by tests/test_browser.py and tests/test_security.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.browser import DESKTOP, PHONE, new_page
from tests.factories import PASSWORD, make_user

AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def _axe_source() -> str:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed: run `npm ci --prefix tests/a11y` ({AXE} is missing)")
    return AXE.read_text()


def violations(page, axe: str) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each: rule, help and the nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe)
    found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{page.url} [{v['impact']}] {v['id']}: {v['help']} -> "
            + "; ".join(" ".join(n["target"]) if isinstance(n["target"], list) else str(n["target"])
                        for n in v["nodes"][:6])
            for v in found if v["impact"] in BLOCKING]


def sign_in(page, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def _demo(session, client) -> dict[str, str]:
    """Demo incidents, post-mortems, action items and debt history, one alert and its integration: the paths of
    the pages that show them."""
    from incidents.alert.models import Alert, Delivery, Integration
    from incidents.catalog.models import Service, Team
    from incidents.database import Cursor
    from incidents.demo import load_demo
    from incidents.incident import services as incidents
    from incidents.incident.models import Incident, Status
    from incidents.postmortem.models import Postmortem, PostmortemStatus
    from tests.alert.conftest import fixture, make_integration, post

    load_demo(session)
    session.commit()
    _, token = make_integration("rollbar", "Shop errors")
    payload = fixture("rollbar_new_item_production")
    payload["data"]["item"]["environment"] = "staging"  # an alert that opens no incident by itself
    assert post(client, "rollbar", payload, token).status_code in (200, 202)

    incident = session.scalars(sa.select(Incident).where(Incident.status == Status.CLOSED)
                               .order_by(Incident.id)).first()
    active = session.scalars(sa.select(Incident).where(Incident.status == Status.INVESTIGATING)
                             .order_by(Incident.id)).first()
    published = session.scalars(sa.select(Postmortem).where(Postmortem.status == PostmortemStatus.PUBLISHED)).first()
    draft = session.scalars(sa.select(Postmortem).where(Postmortem.status == PostmortemStatus.DRAFT)).first()
    ids = {"incident": incident.ref, "active": active.ref, "published": published.id, "draft": draft.id,
           "alert": session.scalar(sa.select(Alert.id)), "integration": session.scalar(sa.select(Integration.id)),
           "delivery": session.scalar(sa.select(Delivery.id)), "team": session.scalar(sa.select(Team.id)),
           "service": session.scalar(sa.select(Service.id))}
    draft_sections = {s.kind.value: s.key for s in reversed(draft.sections)}
    status_token = incidents.issue_status_link(session, active, show_names=True)
    newest = session.execute(sa.select(Incident.created_at, Incident.id)
                             .order_by(Incident.created_at.desc(), Incident.id.desc()).limit(2)).all()[-1]
    older = Cursor(newest.created_at, newest.id, 2).encode()  # the Older link of page 1 at 2 a page
    session.commit()  # and no transaction left open: on SQLite it would hold off the server's writes
    paths = {
        "incident list": "/", "incident list, all": "/?show=all", "incident list, by cursor":
        f"/?show=all&per_page=2&before={older}", "incident": f"/incidents/{ids['incident']}",
        "incident, open": f"/incidents/{ids['active']}", "incident edit": f"/incidents/{ids['incident']}/edit",
        "declare": "/incidents/new",
        "post-mortems": "/postmortems", "post-mortem": f"/postmortems/{ids['published']}",
        "post-mortem draft": f"/postmortems/{ids['draft']}",
        "action items": "/action-items", "alerts": "/alerts", "alert": f"/alerts/{ids['alert']}",
        "deliveries": "/deliveries", "delivery": f"/deliveries/{ids['delivery']}",
        "users": "/admin/users", "teams": "/admin/teams", "team edit": f"/admin/teams/{ids['team']}/edit",
        "service edit": f"/admin/services/{ids['service']}/edit",
        "integrations": "/admin/integrations", "integration and rules": f"/admin/integrations/{ids['integration']}",
        "shortcut": "/admin/shortcut", "slack": "/admin/slack", "templates": "/admin/postmortem-templates",
        "template new": "/admin/postmortem-templates/new", "factors": "/admin/contributing-factors",
        "phrases": "/admin/blameless-phrases", "report settings": "/debt/settings", "report": "/debt/report",
        "tech debt": "/debt", "debt items": "/debt/items", "insights": "/insights",
        "insights, a year by month": "/insights?period=month&since=2025-12-01",
        "insights drill-down": "/insights/incidents?repeat=1", "notifications": "/account/notifications",
        "tokens": "/account/tokens", "all tokens": "/admin/tokens", "audit log": "/admin/audit",
        "stakeholder view": f"/status/{status_token}",
        "search": "/search?q=the", "search, no results": "/search?q=zzzzzz&kind=postmortem",
    }
    for kind, key in draft_sections.items():
        paths[f"post-mortem edit ({kind})"] = f"/postmortems/{ids['draft']}/sections/{key}"
    return paths


def test_no_serious_violation_on_any_main_page(live_server, browser, session, client):
    """Setup, sign-in, the empty lists and every page of the demo data at 1280x900; the incident list and page and
    the sign-in page at 390x844 too. One test, so the data is made once (about 40 s)."""
    axe = _axe_source()
    found: list[str] = []
    page = new_page(browser, DESKTOP, bypass_csp=True)

    page.goto(live_server + "/")  # a new install: the setup page
    page.wait_for_url(re.compile(r"/setup$"))
    found += violations(page, axe)

    make_user(role="admin", email="admin@example.com", name="Ada Admin")
    sign_in(page, live_server, "admin@example.com")
    for path in ("/", "/alerts", "/postmortems", "/action-items", "/debt", "/insights",
                 "/admin/integrations"):  # empty
        page.goto(live_server + path)
        found += violations(page, axe)

    paths = _demo(session, client)
    for name, path in paths.items():
        response = page.goto(live_server + path)
        assert response.ok, f"{name}: {path} answered {response.status}"
        found += violations(page, axe)

    phone = new_page(browser, PHONE, bypass_csp=True)
    sign_in(phone, live_server, "admin@example.com")
    for path in (paths["incident list"], paths["incident list, all"], paths["incident"], paths["incident, open"]):
        phone.goto(live_server + path)
        found += [f"(phone) {line}" for line in violations(phone, axe)]
        if (wide := phone.evaluate("document.scrollingElement.scrollWidth")) > PHONE["width"]:
            found.append(f"(phone) {phone.url}: {wide}px wide, scrolls sideways")

    page.get_by_role("button", name="Sign out", exact=True).click()  # the sign-in page, with its flash message
    page.wait_for_url(re.compile(r"/login$"))
    found += violations(page, axe)
    phone.context.clear_cookies()
    phone.goto(live_server + "/login")
    found += [f"(phone) {line}" for line in violations(phone, axe)]

    from incidents.auth import services as accounts  # the signed-out account pages: reset and invitation

    admin = accounts.get_user_by_email(session, "admin@example.com")
    secret = "browser-test-secret"  # the served app's (tests/browser.py)
    invitation = accounts.invite(session, email="invited@example.com", role="responder", by=admin)
    session.commit()
    for path in ("/password/reset", f"/password/reset/{accounts.password_reset_token(admin, secret)}",
                 f"/invitation/{accounts.invitation_token(invitation, secret)}"):
        response = page.goto(live_server + path)
        assert response.ok, f"{path} answered {response.status}"
        found += violations(page, axe)

    assert not found, "axe-core found serious or critical violations:\n" + "\n".join(found)


def _focused(page) -> dict:
    return page.evaluate("""() => {
        const el = document.activeElement, style = getComputedStyle(el);
        return {tag: el.tagName, text: (el.innerText || el.value || '').trim(), id: el.id,
                outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
    }""")


def test_tab_reaches_declare_with_a_visible_focus_ring(live_server, browser, session):
    from playwright.sync_api import expect

    from tests.factories import make_incident

    make_user(role="responder", email="rita@example.com", name="Rita Responder")
    make_incident(title="Checkout is slow")
    page = new_page(browser, DESKTOP)
    sign_in(page, live_server, "rita@example.com")

    page.keyboard.press("Tab")  # the skip link comes first, shows itself, and jumps past the top bar
    first = _focused(page)
    assert first["text"] == "Skip to content"
    assert page.get_by_role("link", name="Skip to content").bounding_box()["y"] >= 0
    page.keyboard.press("Enter")
    assert _focused(page)["id"] == "content"

    # The More menu of the top bar: Enter opens it, Tab walks into it, Escape closes it and focus goes back.
    more = page.locator(".topbar details.menu summary")
    deliveries = page.get_by_role("link", name="Webhook deliveries")
    more.focus()
    page.keyboard.press("Enter")
    expect(deliveries).to_be_visible()
    page.keyboard.press("Tab")
    expect(deliveries).to_be_focused()
    page.keyboard.press("Escape")
    expect(deliveries).to_be_hidden()
    expect(more).to_be_focused()

    page.goto(live_server + "/")
    seen = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = _focused(page)
        seen.append(focused["text"])
        # Our ring, not the browser's 1px default: 2px solid, on every control the keyboard lands on.
        assert focused["outline"] == "solid" and focused["width"] >= 2, focused
        if focused["text"] == "Declare incident":
            break
    else:
        raise AssertionError(f"Declare incident not reached by Tab; focus went through {seen}")
    assert {"Incidents", "Alerts", "Sign out"} <= set(seen)  # the top bar on the way
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/incidents/new$"))
    assert not page.console_errors


def test_phone_top_bar_folds_into_a_menu_button(live_server, browser, session):
    from playwright.sync_api import expect

    make_user(role="admin", email="admin@example.com", name="Ada Admin")
    phone = new_page(browser, PHONE)
    sign_in(phone, live_server, "admin@example.com")
    menu = phone.get_by_role("button", name="Menu")
    alerts = phone.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(alerts).to_be_hidden()
    expect(phone.get_by_role("button", name="Sign out", exact=True)).to_be_hidden()

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(alerts).to_be_visible()
    expect(phone.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    alerts.focus()
    phone.keyboard.press("Escape")  # closes, and focus goes back to the button
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(alerts).to_be_hidden()
    expect(menu).to_be_focused()
    phone.keyboard.press("Enter")  # the keyboard opens it too
    expect(menu).to_have_attribute("aria-expanded", "true")
    alerts.click()
    phone.wait_for_url(re.compile(r"/alerts$"))
    expect(menu).to_have_attribute("aria-expanded", "false")  # a new page starts closed
    assert not phone.console_errors  # topbar.js is a file of ours: the CSP allows it

    # Without JavaScript nothing hides the links, and a button that could not work is not shown.
    no_js = new_page(browser, PHONE, java_script_enabled=False)
    sign_in(no_js, live_server, "admin@example.com")
    expect(no_js.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts")).to_be_visible()
    expect(no_js.get_by_role("button", name="Menu")).to_be_hidden()

    # On a desktop the links are in the bar and the button is not there.
    desktop = new_page(browser, DESKTOP)
    sign_in(desktop, live_server, "admin@example.com")
    expect(desktop.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts")).to_be_visible()
    expect(desktop.get_by_role("button", name="Menu")).to_be_hidden()
