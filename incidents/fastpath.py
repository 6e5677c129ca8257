"""Per-request costs removed from every request, webhook deliveries above all; registered by web.register.

Both only skip work whose result is never used: nothing here changes what a request sees."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a request without the cookie (every webhook delivery and
    API call) gets its empty session without building the signing serializer, which Flask does per request."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()
    # Flask-SQLAlchemy-Lite registers an async teardown even when no async engine exists, and Flask runs it
    # through asgiref on every request (a thread and an event loop each time): drop it when unused.
    if not app.config.get("SQLALCHEMY_ASYNC_ENGINES"):
        app.teardown_appcontext_funcs[:] = [
            f for f in app.teardown_appcontext_funcs if getattr(f, "__name__", "") != "_close_async_sessions"]
