"""Server settings shared by `incidents serve` and the benchmark floor (incidents/serving.py)."""

from __future__ import annotations

import gc

import pytest

from incidents import serving


def test_a_worker_freezes_its_start_up_heap_before_taking_requests():
    gc.unfreeze()
    threshold = gc.get_threshold()
    try:
        assert gc.get_freeze_count() == 0
        serving.post_worker_init(None)  # what gunicorn calls in each worker once the app is loaded
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app and SQLAlchemy's mappers: none is walked by a collection
        assert gc.get_threshold() == (serving.GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_access_log_line_ends_with_the_request_duration():
    assert serving.access_log_format == serving.ACCESS_LOG_FORMAT
    assert serving.ACCESS_LOG_FORMAT.endswith(" %(M)sms")


def test_serve_closes_each_connection_after_its_response_unless_told_otherwise():
    settings = serving.gunicorn_settings("127.0.0.1", 5000, 2, 8)
    assert (settings["workers"], settings["threads"], settings["keepalive"]) == (2, 8, 0)
    assert settings["worker_connections"] == 8  # a busy worker leaves the next connection to a free one
    assert settings["worker_class"] == "gthread" and settings["post_worker_init"] is serving.post_worker_init
    assert settings["access_log_format"] == serving.ACCESS_LOG_FORMAT
    assert settings["logger_class"] is serving.TextLogger
    assert serving.gunicorn_settings("127.0.0.1", 5000, 2, 8, log_format="json")["logger_class"] is serving.JsonLogger
    kept = serving.gunicorn_settings("127.0.0.1", 5000, 2, 8, keep_alive=5)
    assert (kept["keepalive"], kept["worker_connections"]) == (5, 1000)


def test_gunicorn_accepts_every_setting_serve_gives_it():
    from gunicorn.config import Config

    config = Config()
    for name, value in serving.gunicorn_settings("127.0.0.1", 5000, 2, 8).items():
        config.set(name, value)  # an unknown name or a bad value raises here
    assert config.keepalive == 0 and config.worker_connections == config.threads == 8


# --- the access log never shows a secret query parameter (issue 11, finding 6) --------------------------------


def _access_line(app, method: str, raw_uri: str, **headers) -> tuple[int, str]:
    """Run a request through the app as gunicorn does (one environ dict), then let serve's logger, with the
    format `incidents serve` gives it, write the access line from that environ after the response."""
    import datetime
    from types import SimpleNamespace

    from werkzeug.test import EnvironBuilder

    path, _, query = raw_uri.partition("?")
    environ = EnvironBuilder(path=path, method=method, query_string=query, headers=headers,
                             environ_overrides={"RAW_URI": raw_uri, "REQUEST_URI": raw_uri}).get_environ()
    started: list[str] = []
    body = b"".join(app(environ, lambda status, _headers, _exc=None: started.append(status)))
    answer = SimpleNamespace(status=started[0], sent=len(body), headers=[])
    line = _logged(serving.TextLogger, answer, SimpleNamespace(headers=list(headers.items())), environ,
                   datetime.timedelta(milliseconds=3))
    return int(started[0].split()[0]), line


def _logged(logger_class, resp, req, environ, took, log_format: str = serving.ACCESS_LOG_FORMAT) -> str:
    """The access line a gunicorn logger class writes for one request, with serve's format unless told."""
    import logging

    from gunicorn.config import Config

    config = Config()
    config.set("access_log_format", log_format)
    config.set("accesslog", "-")
    logger = logger_class(config)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger.access_log.addHandler(Keep())
    logger.now = lambda: "[01/Dec/2026:09:30:00 +0000]"  # one clock for both loggers compared
    logger.access(resp, req, environ, took)
    [line] = records
    return line


@pytest.mark.parametrize("environ", [
    {"REMOTE_ADDR": "10.0.0.7", "HTTP_USER_AGENT": "python-requests/2.32", "HTTP_REFERER": "https://x.example/a"},
    {"HTTP_USER_AGENT": 'sender "v2" (quoted)', "HTTP_AUTHORIZATION": "Basic cml0YTpzM2NyZXQ="},  # user rita
    {"REMOTE_ADDR": "::1", "HTTP_AUTHORIZATION": "Bearer whk_x"},  # no referer, no agent, no basic user
])
@pytest.mark.parametrize(("status", "sent", "took"), [("202 Accepted", 0, 3_456), (500, None, 1_250_000)])
def test_serves_access_line_is_the_one_gunicorn_would_write(environ, status, sent, took):
    """TextLogger builds serve's line from the nine values it names; gunicorn's Logger builds it from every
    header and environ entry. For any request the two lines are the same."""
    import datetime
    from types import SimpleNamespace

    from gunicorn.glogging import Logger

    environ = {"REQUEST_METHOD": "POST", "RAW_URI": "/webhooks/opsgenie?token=[redacted]",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/webhooks/opsgenie", "wsgi.url_scheme": "http"} | environ
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "application/json")])
    req = SimpleNamespace(headers=[("USER-AGENT", environ.get("HTTP_USER_AGENT", ""))])
    took = datetime.timedelta(microseconds=took)
    ours = _logged(serving.TextLogger, resp, req, environ, took)
    assert ours == _logged(Logger, resp, req, environ, took)
    assert ours.startswith(environ.get("REMOTE_ADDR", "-") + " - ")
    custom = '%(h)s %({user-agent}i)s %(p)s'  # a format of the operator's own goes through gunicorn's code
    assert _logged(serving.TextLogger, resp, req, environ, took, custom) == _logged(Logger, resp, req, environ,
                                                                                   took, custom)


@pytest.mark.parametrize(("method", "raw_uri", "status"), [
    ("POST", "/webhooks/OpsGenie?token=whk_s3cret", 404),  # no such route
    ("GET", "/webhooks/opsgenie?token=whk_s3cret", 405),
    ("POST", "/webhooks/opsgenie/?token=whk_s3cret", 404),  # trailing slash
    ("POST", "/webhooks/opsgenie?tok%65n=whk_s3cret", 401),  # werkzeug reads it as `token`
    ("POST", "/webhooks/opsgenie?x=1&TOKEN=whk_s3cret&y=2", 401),
    ("POST", "/webhooks/opsgenie?%74oken=whk_s3cret", 401),
    ("POST", "/webhooks/opsgenie?tok%2565n=whk_s3cret", 401),
    ("GET", "/healthz?access_token=whk_s3cret", 200),
    ("GET", "/login?api_key=whk_s3cret&next=/", 200),
])
def test_every_access_line_redacts_secret_query_parameters(app, admin, method, raw_uri, status):
    code, line = _access_line(app, method, raw_uri)
    assert code == status
    assert "whk_s3cret" not in line and "[redacted]" in line
    assert f'"{method} ' in line and f" {status} " in line


def test_the_referer_is_redacted_too(app):
    _, line = _access_line(app, "GET", "/healthz", Referer="https://incidents.example.org/x?token=whk_s3cret")
    assert "whk_s3cret" not in line and "token=[redacted]" in line


def test_redaction_keeps_everything_else():
    from incidents.logs import redact_query

    assert redact_query("GET /alerts?status=open&page=2 HTTP/1.1") == "GET /alerts?status=open&page=2 HTTP/1.1"
    assert redact_query("token=&x=1") == "token=&x=1"
    assert redact_query(None) is None
    assert redact_query("a=1&secret=x#frag") == "a=1&secret=[redacted]#frag"
