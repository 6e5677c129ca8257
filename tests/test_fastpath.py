"""The per-request shortcuts of incidents/fastpath.py change nothing a request sees."""

from __future__ import annotations

from incidents import create_app
from incidents.fastpath import remembered_sync


def test_ensure_sync_is_asked_once_per_function_and_answers_as_flask_does(app):
    asked = []

    def ensure_sync(func):
        asked.append(func)
        return app.__class__.ensure_sync(app, func)

    cached = remembered_sync(ensure_sync)

    def view():
        return "sync"

    async def coroutine_view():
        return "async"

    for _ in range(3):
        assert cached(view) is view
        assert cached(coroutine_view)() == "async"  # still wrapped to run the coroutine
    assert asked == [view, coroutine_view]


def test_the_app_runs_async_views_through_the_remembered_answer():
    async def answer():
        return {"ok": True}

    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})  # its own: routes are added before use
    app.extensions["incidents.has_users"] = True  # past the first-run setup page
    app.add_url_rule("/_async_probe", "async_probe", answer)
    client = app.test_client()
    for _ in range(2):
        response = client.get("/_async_probe")
        assert response.status_code == 200 and response.get_json() == {"ok": True}
