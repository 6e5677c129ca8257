"""Browser fixtures shared by the Playwright tests: the app on a live loopback port and Debian's Chromium.

Loaded for every test module through `pytest_plugins` in tests/conftest.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def live_server(app, db_url):
    """The app served on a free loopback port; `app` migrates the database and empties it afterwards."""
    from werkzeug.serving import make_server

    from incidents import create_app
    from incidents.extensions import db

    served = create_app({"DATABASE_URL": db_url, "SECRET_KEY": "browser-test-secret"})
    server = make_server("127.0.0.1", 0, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        with served.app_context():
            for engine in db.engines.values():
                engine.dispose()  # no open connection may hold locks when the tables are emptied


@pytest.fixture
def browser():
    """A headless Chromium, closed after the test; skips when Playwright or Chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser, viewport=DESKTOP, **context_options):
    """A page in a fresh context (own cookies) that records console errors in `page.console_errors`."""
    context = browser.new_context(viewport=viewport, **context_options)
    context.set_default_timeout(5000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors
    return page


@pytest.fixture
def page(browser):
    """A desktop-sized page (1280x900)."""
    return new_page(browser)
