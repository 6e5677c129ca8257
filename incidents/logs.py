"""Log lines that can be followed: a request id per request, carried into the jobs it enqueues, and JSON lines.

Shared plumbing, importing no domain. `request_id` is a context variable: set for each request (from the proxy's
X-Request-ID when it is well-formed, else generated), by the webhook writer for each delivery it applies, and by
the job runner for each job (the id of the request that enqueued it). With LOG_FORMAT=json every line is one JSON
object: time, level, logger, message, and when known request_id, user, method, path, status, duration (ms).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from flask import Flask, g, has_request_context, request

HEADER = "X-Request-ID"
ENVIRON_ID = "incidents.request_id"  # in the WSGI environ, for gunicorn's access log
ENVIRON_USER = "incidents.user"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_REQUEST_FIELDS = ("request_id", "user", "method", "path", "status", "duration", "remote_addr")


def incoming_request_id(value: str | None) -> str:
    """The proxy's id when it is safe to echo and log, else a fresh one."""
    # 128 random bits as 32 hex digits, like uuid4().hex without building a UUID object (a third of the cost).
    return value if value and _VALID_ID.fullmatch(value) else os.urandom(16).hex()


def _request_user() -> int | None:
    # Only a user this request has already loaded: a log line must never query the database.
    user = g.get("api_user") or g.get("_login_user")
    return getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed with `extra=` win over what the request context says."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = {name: getattr(record, name, None) for name in _REQUEST_FIELDS}
        if fields["request_id"] is None:
            fields["request_id"] = request_id.get()
        if has_request_context():
            fields["method"] = fields["method"] or request.method
            fields["path"] = fields["path"] or request.path
            if fields["user"] is None:
                fields["user"] = _request_user()
        out.update((k, v) for k, v in fields.items() if v is not None)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(fmt: str, level: int = logging.INFO) -> logging.Handler:
    """One handler on the root logger (stderr) in `fmt` ("json" or "text"); calling again only re-formats it."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_incidents", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._incidents = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter(fmt))
    root.setLevel(level)
    if fmt == "json":
        # Flask-Alembic gives the alembic and sqlalchemy loggers a text console handler of their own: without
        # it their lines reach the root handler as JSON, instead of twice.
        for name in ("alembic", "sqlalchemy"):
            own = logging.getLogger(name)
            for extra in [h for h in own.handlers if type(h) is logging.StreamHandler]:
                own.removeHandler(extra)
    return handler


# A query parameter whose name looks secret: its value never reaches a log line (webhook senders put their token
# in the query string; a browser's Referer may repeat it).
_PARAM = re.compile(r"(^|[?&;])([^=&;#\s]*)=([^&;#\s]*)")
_SECRET_NAME = re.compile(r"token|secret|passw|api[-_]?key|auth|signature", re.I)
_URL_KEYS = ("RAW_URI", "REQUEST_URI", "QUERY_STRING", "HTTP_REFERER")
REDACTED = "[redacted]"


def redact_query(text: str | None) -> str | None:
    """`text` (a request line, a URL, a query string) with the values of secret-looking parameters blanked.

    Names are compared percent-decoded, as the app reads them: werkzeug takes `?tok%65n=` for `token`."""
    if not text or "=" not in text:
        return text

    def hide(m: re.Match) -> str:
        name = m.group(2)
        for _ in range(3):  # "%2565" is "%65" once decoded: decode until stable (a few rounds are enough)
            decoded = unquote_plus(name)
            if decoded == name:
                break
            name = decoded
        if not m.group(3) or not _SECRET_NAME.search(name):
            return m.group(0)
        return f"{m.group(1)}{m.group(2)}={REDACTED}"

    return _PARAM.sub(hide, text)


def redact_environ(environ: dict) -> None:
    """gunicorn writes its access line from the WSGI environ, after the response: blank secrets there."""
    for key in _URL_KEYS:
        value = environ.get(key)
        if isinstance(value, str) and "=" in value:
            environ[key] = redact_query(value)


def init_app(app: Flask) -> None:
    """Give each request its id (response header, environ, context) and, with LOG_FORMAT=json, JSON logs."""
    if app.config.get("LOG_FORMAT") == "json":
        configure("json")

    @app.before_request
    def _request_id():
        rid = incoming_request_id(request.headers.get(HEADER))
        g._request_id_token = request_id.set(rid)
        request.environ[ENVIRON_ID] = rid

    @app.after_request
    def _answer_with_id(response):
        rid = request.environ.get(ENVIRON_ID)
        if rid:
            response.headers[HEADER] = rid
        user = _request_user()
        if user is not None:
            request.environ[ENVIRON_USER] = user
        return response

    @app.teardown_request
    def _hide_secrets_from_the_access_log(_exc):
        # Every request, whatever its route or status (404, 405, trailing slash): the app has read its
        # arguments by now, and gunicorn (configured by `incidents serve` or not) logs from this environ.
        redact_environ(request.environ)

    @app.teardown_request
    def _forget_id(_exc):
        token = g.pop("_request_id_token", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another (copied) context: nothing here to undo
                request_id.reset(token)
