"""Prometheus metrics: the counters domains bump, the gauges read at scrape time, and `GET /metrics`.

Shared plumbing, importing no domain. Domains call the small functions below (`delivery_processed`, `job_executed`,
`outbound_call`, ...): each is a counter increment in memory (an mmap write in multiprocess mode), never I/O, so
the webhook hot path stays cheap. Values that are a state rather than a count (open incidents, queue depth) are
registered with `add_scrape_gauge` and computed by the process answering the scrape, never kept incrementally.

Multiprocess mode: gunicorn runs several worker processes and `serve` a job worker beside them; each writes its
counters to files in PROMETHEUS_MULTIPROC_DIR (`serve` creates it fresh, see `use_multiprocess_dir`) and whichever
worker answers a scrape merges them. prometheus_client picks its storage when it is first imported, so nothing here
imports it before the first metric is used (rule: nothing happens at import time). Without the variable (tests, one
process) the library's default in-process registry is used.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, g, request

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_GAUGES = "incidents.metrics.gauges"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests are mostly milliseconds; webhook deliveries under load and report pages reach seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    """Every counter and histogram of the process, created on first use (after the multiprocess choice)."""

    def __init__(self):
        from prometheus_client import Counter, Histogram

        self.http_requests = Counter(
            "incidents_http_requests", "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"])
        self.http_seconds = Histogram(
            "incidents_http_request_duration_seconds", "Time from the start of a request to its response.",
            ["endpoint", "method"], buckets=_LATENCY_BUCKETS)
        self.deliveries = Counter(
            "incidents_webhook_deliveries", "Webhook deliveries by source and outcome "
            "(processed, ignored, rejected, failed, duplicate, unauthorized, unavailable).", ["source", "outcome"])
        self.delivery_seconds = Histogram(
            "incidents_webhook_processing_seconds", "Time to authenticate, store and process a webhook delivery.",
            ["source"], buckets=_LATENCY_BUCKETS)
        self.deduplicated = Counter(
            "incidents_alert_occurrences_deduplicated", "Occurrences folded into an already open alert.",
            ["source"])
        self.jobs_enqueued = Counter(
            "incidents_jobs_enqueued", "Jobs handed to the queue by the app.", ["job"])
        self.jobs_executed = Counter(
            "incidents_jobs_executed", "Job runs by outcome: succeeded, retried (failed, will run again) or "
            "failed (failed with no retry left).", ["job", "outcome"])
        self.outbound = Counter(
            "incidents_outbound_calls", "Calls to Shortcut, Slack and SMTP by outcome: ok, rate_limited, "
            "error (may succeed later) or rejected (refused for good).", ["service", "outcome"])


_metrics: _Metrics | None = None
_create = threading.Lock()
_children: dict = {}


def _child(metric, *values: str):
    """`metric.labels(*values)`, remembered: the library validates and locks on every call (a few µs each)."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def _m() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _create:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


def warm() -> None:
    """Import prometheus_client and create the metrics now (a server process, before its first request)."""
    _m()


# --- what domains call ---------------------------------------------------------------------------------------

def request_finished(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    m = _m()
    endpoint = endpoint or "unmatched"  # 404s: the path is the client's choice, never a label
    method = method if method in _METHODS else "other"
    _child(m.http_requests, endpoint, method, str(status)).inc()
    _child(m.http_seconds, endpoint, method).observe(seconds)


def delivery_processed(source: str, outcome: str, seconds: float, deduplicated: bool = False) -> None:
    """One webhook delivery answered (count it after its commit)."""
    m = _m()
    _child(m.deliveries, source, outcome).inc()
    _child(m.delivery_seconds, source).observe(seconds)
    if deduplicated:
        _child(m.deduplicated, source).inc()


def job_enqueued(job: str) -> None:
    _child(_m().jobs_enqueued, job).inc()


def job_executed(job: str, outcome: str) -> None:
    _child(_m().jobs_executed, job, outcome).inc()


def outbound_call(service: str, outcome: str) -> None:
    """One call to an outside service (shortcut, slack, smtp); outcome ok, rate_limited, error or rejected."""
    _child(_m().outbound, service, outcome).inc()


# --- gauges computed at scrape time --------------------------------------------------------------------------

def add_scrape_gauge(app: Flask, name: str, documentation: str, label: str,
                     read: Callable[[], dict[str, float]]) -> None:
    """Export `read()` ({label value: value}, called in an app context) as gauge `name` on every scrape."""
    app.extensions.setdefault(_GAUGES, {})[name] = (documentation, label, read)


class _Scrape:
    """What one scrape exposes: the process's (or every process's) counters plus this app's gauges."""

    def __init__(self, base, gauges: dict):
        self.base = base
        self.gauges = gauges

    def collect(self) -> Iterable:
        from prometheus_client.core import GaugeMetricFamily

        yield from self.base.collect()
        for name, (documentation, label, read) in self.gauges.items():
            try:
                values = read()
            except Exception:  # noqa: BLE001 - one unreadable gauge must not hide every other metric
                log.exception("metrics: could not read %s", name)
                continue
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for key, value in sorted(values.items()):
                family.add_metric([str(key)], value)
            yield family


def exposition(app: Flask | None = None, *, gauges: bool = True) -> bytes:
    """The text exposition format of every metric, merged across processes in multiprocess mode."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    _m()  # every family known, even before its first sample
    if os.environ.get(MULTIPROC_ENV):
        base = CollectorRegistry()
        MultiProcessCollector(base)
    else:
        base = REGISTRY
    found = (app or current_app).extensions.get(_GAUGES, {}) if gauges else {}
    return generate_latest(_Scrape(base, found))


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return CONTENT_TYPE_LATEST


def may_scrape(remote_addr: str | None, authorization: str | None, token: str | None) -> bool:
    """Loopback clients may, and anyone with `Authorization: Bearer <METRICS_TOKEN>` when a token is set.

    `remote_addr` must be the address after the proxy fix: a client of the reverse proxy is never loopback."""
    try:
        if remote_addr and ipaddress.ip_address(remote_addr.split("%")[0]).is_loopback:
            return True
    except ValueError:
        pass
    if not token:
        return False
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _token(app: Flask) -> str | None:
    # INCIDENTS_* values that look like JSON arrive parsed: a token of digits is an int by then.
    token = app.config.get("METRICS_TOKEN")
    return None if token in (None, "") else str(token)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    if not may_scrape(request.remote_addr, request.headers.get("Authorization"), _token(current_app)):
        from incidents.errors import error_body

        return error_body(403, "forbidden", "Metrics answer loopback clients, or a bearer METRICS_TOKEN.")
    return Response(exposition(), content_type=content_type())


def init_app(app: Flask) -> None:
    """Count every request (endpoint, method, status, duration) and serve `GET /metrics`."""
    from time import perf_counter

    @app.before_request
    def _started():
        g._metrics_started = perf_counter()

    @app.after_request
    def _count(response):
        started = g.pop("_metrics_started", None)
        if started is not None:
            request_finished(request.endpoint, request.method, response.status_code, perf_counter() - started)
        return response

    app.register_blueprint(bp)


# --- processes -----------------------------------------------------------------------------------------------

def use_multiprocess_dir(path: str | Path) -> str:
    """Set PROMETHEUS_MULTIPROC_DIR (kept if already set) for this process and its children, emptied.

    Call before any worker process starts: the files of a previous run would add to this one's counts."""
    folder = Path(os.environ.get(MULTIPROC_ENV) or path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # only the library's files: the folder may be the operator's choice
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    import sys

    if "prometheus_client.values" in sys.modules and _metrics is None:  # imported early: pick the storage again
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return str(folder)


def process_exited(pid: int) -> None:
    """Bookkeeping for a dead worker process in multiprocess mode (gunicorn's child_exit)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def serve_standalone(app: Flask, host: str, port: int):
    """Serve this process's metrics on host:port from a daemon thread (`incidents worker --metrics-port`),
    under the same rule as `GET /metrics`: loopback, or the bearer token."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    token = _token(app)

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not may_scrape(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"), token):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        with app.app_context():
            body = exposition(app, gauges=False)  # the web app's /metrics reports the shared gauges
        start_response("200 OK", [("Content-Type", content_type())])
        return [body]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # scrapes every 15 s are not news
            pass

    server = make_server(host, port, wsgi, Server, Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", host, port)
    return server
