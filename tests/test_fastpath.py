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


def test_a_request_without_cookies_opens_an_empty_session_without_parsing_any(app):
    from flask import request, session

    with app.test_request_context("/webhooks/opsgenie", method="POST", data=b"{}"):
        assert dict(session) == {} and not session.modified
        assert "cookies" not in request.__dict__  # werkzeug's cached property was never computed
    with app.test_request_context("/", headers={"Cookie": "other=1"}):
        assert dict(session) == {} and request.cookies.to_dict() == {"other": "1"}
    client = app.test_client()  # a real session cookie is still read
    with client.session_transaction() as stored:
        stored["kept"] = "yes"
    with client:
        client.get("/healthz")
        assert session["kept"] == "yes"
