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
    kept = serving.gunicorn_settings("127.0.0.1", 5000, 2, 8, keep_alive=5)
    assert (kept["keepalive"], kept["worker_connections"]) == (5, 1000)


def test_gunicorn_accepts_every_setting_serve_gives_it():
    from gunicorn.config import Config

    config = Config()
    for name, value in serving.gunicorn_settings("127.0.0.1", 5000, 2, 8).items():
        config.set(name, value)  # an unknown name or a bad value raises here
    assert config.keepalive == 0 and config.worker_connections == config.threads == 8


# --- the access log never shows a secret query parameter (issue 11, finding 6) --------------------------------


def _access_line(environ_overrides: dict, status: str = "404 NOT FOUND") -> str:
    """One access line, written by the logger class `incidents serve` gives gunicorn, through gunicorn itself."""
    import datetime
    import logging
    from types import SimpleNamespace

    from gunicorn.config import Config

    config = Config()
    for name, value in serving.gunicorn_settings("127.0.0.1", 5000, 1, 1).items():
        config.set(name, value)
    logger = config.logger_class(config)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger.access_log.addHandler(Keep())
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/",
               "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "test"} | environ_overrides
    response = SimpleNamespace(status=status, sent=10, headers=[])
    request = SimpleNamespace(headers=[("REFERER", environ.get("HTTP_REFERER", "-"))])
    logger.access(response, request, environ, datetime.timedelta(milliseconds=3))
    [line] = records
    return line


@pytest.mark.parametrize(("raw_uri", "method", "status"), [
    ("/webhooks/OpsGenie?token=whk_s3cret", "POST", "404 NOT FOUND"),  # no such route
    ("/webhooks/opsgenie?token=whk_s3cret", "GET", "405 METHOD NOT ALLOWED"),
    ("/webhooks/opsgenie/?token=whk_s3cret", "POST", "404 NOT FOUND"),  # trailing slash
    ("/webhooks/opsgenie?tok%65n=whk_s3cret", "POST", "200 OK"),  # werkzeug reads it as `token`
    ("/webhooks/opsgenie?x=1&TOKEN=whk_s3cret&y=2", "POST", "401 UNAUTHORIZED"),
    ("/webhooks/opsgenie?%74oken=whk_s3cret", "POST", "401 UNAUTHORIZED"),
    ("/webhooks/opsgenie?tok%2565n=whk_s3cret", "POST", "401 UNAUTHORIZED"),
    ("/?access_token=whk_s3cret", "GET", "200 OK"),
    ("/login?api_key=whk_s3cret&next=/", "GET", "200 OK"),
])
def test_every_access_line_redacts_secret_query_parameters(raw_uri, method, status):
    query = raw_uri.partition("?")[2]
    line = _access_line({"RAW_URI": raw_uri, "REQUEST_METHOD": method, "QUERY_STRING": query,
                         "PATH_INFO": raw_uri.partition("?")[0]}, status)
    assert "whk_s3cret" not in line and "[redacted]" in line
    assert f'"{method} ' in line and status.split()[0] in line


def test_the_referer_is_redacted_too():
    line = _access_line({"HTTP_REFERER": "https://incidents.example.org/webhooks/rollbar?token=whk_s3cret"})
    assert "whk_s3cret" not in line and "token=[redacted]" in line


def test_redaction_keeps_everything_else():
    assert serving.redact_query("GET /alerts?status=open&page=2 HTTP/1.1") == "GET /alerts?status=open&page=2 HTTP/1.1"
    assert serving.redact_query("token=&x=1") == "token=&x=1"
    assert serving.redact_query(None) is None
    assert serving.redact_query("a=1&secret=x#frag") == "a=1&secret=[redacted]#frag"
