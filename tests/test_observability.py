"""GET /metrics (parsed as Prometheus does), request ids from the request to its jobs, JSON log lines, /readyz."""

from __future__ import annotations

import io
import json
import logging

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from incidents import logs, metrics
from incidents.extensions import db
from incidents.jobs import JobQueue, QueueMemoryHuey, get_queue, job, run_burst
from tests.alert.conftest import fixture, make_integration, post
from tests.factories import make_incident


@job(retries=0)
def explode(label: str) -> None:
    """Always fails, with no retry left: counted as failed."""
    raise RuntimeError(f"boom {label}")


@job(retries=2, retry_delay=60)
def wobble(label: str) -> None:
    """Fails once it runs; a retry is due later: counted as retried."""
    raise RuntimeError(f"wobble {label}")


@job(retries=0)
def chatty(label: str) -> None:
    logging.getLogger("tests.chatty").warning("job says %s", label)


def scrape(client, **kwargs) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- /metrics --------------------------------------------------------------------------------------------------

def test_metrics_count_a_posted_webhook_a_deduplicated_occurrence_and_a_failed_job(client, session):
    _, token = make_integration("opsgenie", "shop")
    before = scrape(client)

    first = fixture("opsgenie_create_p1")
    assert post(client, "opsgenie", first, token).status_code == 200
    again = json.loads(json.dumps(first))
    again["alert"]["alertId"] = "a1b2c3d4-0000-4000-8000-000000000002"  # the same alias: one more occurrence
    assert post(client, "opsgenie", again, token).status_code == 200
    assert post(client, "opsgenie", again, token).json["outcome"] == "duplicate"  # the sender's retry
    assert post(client, "opsgenie", first, "wrong-token").status_code == 401
    get_queue().enqueue(explode, "x")
    get_queue().enqueue(wobble, "y")

    after = scrape(client)
    delta = {key: after[key] - before.get(key, 0.0) for key in after}

    def d(name, **labels):
        return value(delta, name, **labels)

    assert d("incidents_webhook_deliveries_total", source="opsgenie", outcome="processed") == 2
    assert d("incidents_webhook_deliveries_total", source="opsgenie", outcome="duplicate") == 1
    assert d("incidents_webhook_deliveries_total", source="opsgenie", outcome="unauthorized") == 1
    assert d("incidents_webhook_processing_seconds_count", source="opsgenie") == 4
    assert d("incidents_alert_occurrences_deduplicated_total", source="opsgenie") == 1
    assert d("incidents_http_requests_total", endpoint="webhooks.receive", method="POST", status="200") == 3
    assert d("incidents_http_request_duration_seconds_count", endpoint="webhooks.receive", method="POST") == 4
    name = "tests.test_observability."
    assert d("incidents_jobs_enqueued_total", job=name + "explode") == 1
    assert d("incidents_jobs_executed_total", job=name + "explode", outcome="failed") == 1
    assert d("incidents_jobs_executed_total", job=name + "wobble", outcome="retried") == 1
    assert d("incidents_jobs_executed_total", job=name + "wobble", outcome="failed") == 0
    # The P1 opened an incident; gauges are read at the scrape.
    assert value(after, "incidents_open_incidents", severity="SEV1") == 1
    assert value(after, "incidents_open_incidents", severity="SEV4") == 0
    assert ("incidents_job_queue_depth", frozenset({("state", "queued")})) in after


def test_open_incidents_gauge_counts_only_open_ones(client, session):
    make_incident(severity="SEV2")
    make_incident(severity="SEV2")
    from incidents.incident import services as incidents

    resolved = make_incident(severity="SEV3")
    incidents.resolve_incident(session, resolved)
    session.commit()
    samples = scrape(client)
    assert value(samples, "incidents_open_incidents", severity="SEV2") == 2
    assert value(samples, "incidents_open_incidents", severity="SEV3") == 0


def test_metrics_answer_loopback_clients_or_the_bearer_token(app, client):
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    app.config["METRICS_TOKEN"] = "s3cret-token"
    try:
        assert client.get("/metrics", environ_base=remote).status_code == 403
        wrong = client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        scrape(client, environ_base=remote, headers={"Authorization": "Bearer s3cret-token"})
    finally:
        app.config["METRICS_TOKEN"] = ""


def test_may_scrape_rule():
    assert metrics.may_scrape("127.0.0.1", None, None)
    assert metrics.may_scrape("127.9.9.9", None, None)
    assert not metrics.may_scrape("10.0.0.1", None, None)
    assert not metrics.may_scrape(None, "Bearer x", None)
    assert metrics.may_scrape("10.0.0.1", "bearer x", "x")
    assert not metrics.may_scrape("10.0.0.1", "Basic x", "x")
    assert not metrics.may_scrape("not-an-address", "Bearer y", "x")


def test_outbound_calls_are_counted_by_outcome(client, session, smtp_server):
    from incidents.mail import MailError, build_message, send_message

    before = scrape(client)
    config = {"SMTP_URL": f"smtp://127.0.0.1:{smtp_server.port}", "MAIL_FROM": "incidents@example.com"}
    send_message(config, build_message("ada@example.com", "Hello", "Body"))
    with pytest.raises(MailError):
        send_message({"SMTP_URL": "smtp://127.0.0.1:1", "SMTP_TIMEOUT": 2}, build_message("a@example.com", "x", "y"))
    after = scrape(client)
    assert value(after, "incidents_outbound_calls_total", service="smtp", outcome="ok") - value(
        before, "incidents_outbound_calls_total", service="smtp", outcome="ok") == 1
    assert value(after, "incidents_outbound_calls_total", service="smtp", outcome="error") - value(
        before, "incidents_outbound_calls_total", service="smtp", outcome="error") == 1


def test_a_workers_own_metrics_port(app):
    import requests

    from tests.smtp import free_port

    get_queue().enqueue(explode, "standalone")  # counted in this process
    port = free_port()
    server = metrics.serve_standalone(app, "127.0.0.1", port)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert answer.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        assert any(s.labels == {"job": "tests.test_observability.explode", "outcome": "failed"} and s.value >= 1
                   for s in families["incidents_jobs_executed"].samples)
        assert "incidents_open_incidents" not in families  # the web app's /metrics reports the shared gauges
        assert requests.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serve_starts_from_an_empty_multiprocess_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # restored (unset) after the test
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    mine = tmp_path / "instance" / "metrics"
    assert metrics.use_multiprocess_dir(mine) == str(mine) and mine.is_dir()
    theirs = tmp_path / "operator"
    theirs.mkdir()
    (theirs / "counter_123.db").write_bytes(b"old run")
    (theirs / "README").write_text("not ours")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(theirs))
    assert metrics.use_multiprocess_dir(mine) == str(theirs)
    assert [p.name for p in theirs.iterdir()] == ["README"]


# --- request ids and JSON logs ---------------------------------------------------------------------------------

def test_request_id_is_taken_when_well_formed_else_generated(client):
    given = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.01_x"})
    assert given.headers["X-Request-ID"] == "edge-7f3a.01_x"
    for bad in ("has space", "x" * 129, "semi;colon", ""):
        made = client.get("/healthz", headers={"X-Request-ID": bad})
        assert made.headers["X-Request-ID"] != bad and len(made.headers["X-Request-ID"]) == 32
    assert client.get("/healthz").headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]
    assert logs.request_id.get() is None  # nothing leaks out of a request


@pytest.fixture
def json_lines():
    """Every log record of the test as JSON lines (the formatter LOG_FORMAT=json installs)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def real_queue(app):
    """A queue that serialises its tasks (as Redis or SQLite do) and runs them only in `run_burst`."""
    original = app.extensions["incidents.jobs"]
    swapped = JobQueue(app, QueueMemoryHuey("obs-test", immediate=False))
    app.extensions["incidents.jobs"] = swapped
    yield swapped
    app.extensions["incidents.jobs"] = original


def test_a_webhooks_request_id_reaches_the_job_it_enqueued_and_its_log_lines(app, client, session, json_lines,
                                                                             real_queue):
    app.config["NOTIFY_ON_COMMIT"] = True  # declaring an incident queues its announcement
    try:
        _, token = make_integration("opsgenie", "shop")
        response = client.post("/webhooks/opsgenie", json=fixture("opsgenie_create_p1"),
                               headers={"X-Incidents-Token": token, "X-Request-ID": "req-from-proxy-1"})
        assert response.status_code == 200 and response.json["incident"]
        assert response.headers["X-Request-ID"] == "req-from-proxy-1"
        queued = real_queue.huey.storage.enqueued_items()  # pickled, as Redis or SQLite keep it
        assert len(queued) == 1 and b"req-from-proxy-1" in queued[0]
        assert run_burst(real_queue) == 1
    finally:
        app.config["NOTIFY_ON_COMMIT"] = False
    lines = [line for line in json_lines() if line["logger"] == "huey"]
    executing = [line for line in lines if line["message"].startswith("Executing incidents.notify.jobs.send_notif")]
    assert executing and all(line["request_id"] == "req-from-proxy-1" for line in executing), lines
    assert logs.request_id.get() is None


def test_a_job_logs_under_the_request_id_in_json(app, client, session, json_lines, real_queue):
    with app.test_request_context("/x", headers={"X-Request-ID": "abc-123"}):
        app.preprocess_request()
        real_queue.enqueue(chatty, "hi")
        app.do_teardown_request()
    with app.test_request_context("/y"):  # a job queued outside any request has no id
        real_queue.enqueue(chatty, "plain")
    assert run_burst(real_queue) == 2
    said = {line["message"]: line for line in json_lines() if line["logger"] == "tests.chatty"}
    assert said["job says hi"]["request_id"] == "abc-123"
    assert "request_id" not in said["job says plain"]
    line = said["job says hi"]
    assert set(line) >= {"time", "level", "logger", "message"} and line["level"] == "WARNING"


def test_json_formatter_fields_in_a_request(app, admin):
    from flask import g

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tests.fields")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with app.test_request_context("/incidents/7", method="POST", headers={"X-Request-ID": "rid-9"}):
            app.preprocess_request()
            g._login_user = admin  # as Flask-Login leaves it once the session's user is loaded
            logger.warning("inside")
            try:
                raise ValueError("broken")
            except ValueError:
                logger.exception("failed")
            app.do_teardown_request()
        logger.info("outside", extra={"status": 204, "duration": 1.5})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    inside, failed, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside == {"time": inside["time"], "level": "WARNING", "logger": "tests.fields", "message": "inside",
                      "request_id": "rid-9", "user": admin.id, "method": "POST", "path": "/incidents/7"}
    assert inside["time"].endswith("+00:00")
    assert "ValueError: broken" in failed["exception"] and failed["request_id"] == "rid-9"
    assert outside == {"time": outside["time"], "level": "INFO", "logger": "tests.fields", "message": "outside",
                       "status": 204, "duration": 1.5}


# --- /readyz ---------------------------------------------------------------------------------------------------

def test_readyz_checks_database_migrations_and_queue(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "queue": "ok"}}


def test_readyz_fails_when_migrations_are_behind(app, client, session):
    version = db.session.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    db.session.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    db.session.commit()
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.json["status"] == "fail"
        assert answer.json["checks"]["migrations"].startswith("fail: database at older")
        assert answer.json["checks"]["database"] == "ok"
    finally:
        db.session.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": version})
        db.session.commit()


def test_readyz_fails_when_the_queue_is_unreachable(app, client, monkeypatch):
    def down():
        raise ConnectionError("queue down")

    monkeypatch.setattr(get_queue().huey, "pending_count", down)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"]["queue"] == "fail: ConnectionError"
