"""Per-request costs removed from every request, webhook deliveries above all; registered by web.register.

Each only skips work whose result is never used or is always the same: nothing here changes what a request sees."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.sessions import SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a request without the cookie (every webhook delivery and
    API call) gets its empty session without building the signing serializer, which Flask does per request;
    and without a Cookie header at all, without parsing cookies (werkzeug finds that header by walking every
    header of the request, title-casing each name)."""

    def open_session(self, app, request):
        if app.secret_key and (not request.environ.get("HTTP_COOKIE")
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)


_KNOWN_FUNCTIONS = 4096


def remembered_sync(ensure_sync: Callable[[Callable], Callable]) -> Callable[[Callable], Callable]:
    """`Flask.ensure_sync` answered once per function. Flask asks it of every hook and the view on every request
    (16 times per webhook delivery), and the answer, `inspect.iscoroutinefunction` of a function that never
    changes, costs more than the hook it guards. Bounded, in case a caller passes new functions each time."""
    known: dict[Callable, Callable] = {}

    def cached(func: Callable) -> Callable:
        try:
            return known[func]
        except KeyError:
            pass
        except TypeError:  # unhashable: ask every time
            return ensure_sync(func)
        result = ensure_sync(func)
        if len(known) < _KNOWN_FUNCTIONS:
            known[func] = result
        return result

    return cached


def init_app(app: Flask) -> None:
    app.session_interface = CookieSessionInterface()
    app.ensure_sync = remembered_sync(app.ensure_sync)  # type: ignore[method-assign]
    # Flask-SQLAlchemy-Lite registers an async teardown even when no async engine exists, and Flask runs it
    # through asgiref on every request (a thread and an event loop each time): drop it when unused.
    if not app.config.get("SQLALCHEMY_ASYNC_ENGINES"):
        app.teardown_appcontext_funcs[:] = [
            f for f in app.teardown_appcontext_funcs if getattr(f, "__name__", "") != "_close_async_sessions"]
