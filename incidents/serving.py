"""Server settings that `incidents serve` applies to gunicorn, kept in one module so that the ingestion benchmark's
floor runs under exactly the same ones (`gunicorn -c python:incidents.serving ...`)."""

from __future__ import annotations

import gc
import traceback

from gunicorn.glogging import Logger

from incidents import logs, metrics

# gunicorn's default access-log line plus the time the request took in the worker, in milliseconds.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
access_log_format = ACCESS_LOG_FORMAT  # read by gunicorn when this module is its config file
logger_class = "incidents.serving.TextLogger"  # likewise (the benchmark floor's server logs as serve's does)


def gunicorn_settings(host: str, port: int, workers: int, threads: int, keep_alive: int = 0,
                      log_format: str = "text") -> dict:
    """What `incidents serve` sets on gunicorn (the benchmark floor passes the same on its command line).

    By default each worker takes only as many connections as it has threads, and closes each after its response
    (no keep-alive). gunicorn otherwise lets a worker accept connections while all its threads are busy and keeps
    them alive, every later request of a connection going to the worker that accepted it, so one worker can be
    busy while another idles. Capped, waiting connections stay in the kernel's listen queue, and whichever worker
    frees a thread first takes the next one: one queue for all workers. Webhook senders open a connection per
    delivery anyway, and a reverse proxy in front keeps its own keep-alive with browsers. `--keep-alive N`
    (seconds) lifts the cap and turns keep-alive back on, for browsers talking to gunicorn directly.

    `log_format="json"` (LOG_FORMAT) makes gunicorn's error and access logs JSON lines too (`JsonLogger`)."""
    settings = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "keepalive": keep_alive,
        "worker_connections": threads if keep_alive == 0 else 1000,  # 1000 = gunicorn's own default
        "worker_class": "gthread",
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "timeout": 60,
        # X-Forwarded-Proto is believed per TRUSTED_PROXIES (web.trust_proxies), not from any loopback peer.
        "forwarded_allow_ips": "",
        # gunicorn 27's control socket lives at one path per user: two servers on a host would clash.
        "control_socket_disable": True,
    }
    settings["logger_class"] = JsonLogger if log_format == "json" else TextLogger
    return settings


def freeze_heap() -> None:
    """Hide what start-up allocated (modules, the app, SQLAlchemy's mappers and caches) from the garbage collector.

    A full (generation 2) collection walks every tracked object and stops every thread of the process meanwhile;
    objects that exist at this point live as long as the process anyway, so after gc.freeze() collections only
    walk what requests allocate. The youngest generation is also collected less often: one webhook delivery
    allocates thousands of objects, nearly all freed by reference counting. Measurements: bench/README.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


GC_YOUNG_THRESHOLD = 10_000


def post_worker_init(_worker) -> None:
    """gunicorn hook: runs in each worker once it has loaded the app, before it takes requests."""
    metrics.warm()  # prometheus_client's import is not the first request's to pay
    freeze_heap()


def child_exit(_server, worker) -> None:
    """gunicorn hook, in the master: a worker is gone; its metrics files stay merged, its live gauges go."""
    metrics.process_exited(worker.pid)


def _status_code(resp):
    """The code of gunicorn's response status ("202 Accepted" -> "202"), as its access-log atom `s` has it."""
    return resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status


class TextLogger(Logger):
    """gunicorn's logger, with the line of `ACCESS_LOG_FORMAT` built from the nine values it names: gunicorn's own
    `atoms` also copies every request header, response header and environ entry into the dict it formats from,
    on every request. The line is the same as gunicorn's; any other format goes through gunicorn's code."""

    def access(self, resp, req, environ, request_time):
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        status = _status_code(resp)
        sent = getattr(resp, "sent", None)
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"), "l": "-", "u": self._get_user(environ) or "-", "t": self.now(),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}", "s": status,
            "b": "-" if sent is None else str(sent), "f": environ.get("HTTP_REFERER", "-"),
            "a": environ.get("HTTP_USER_AGENT", "-"),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }
        for key, value in atoms.items():  # as gunicorn's SafeAtoms: a quote inside a quoted field is escaped
            if isinstance(value, str) and '"' in value:
                atoms[key] = value.replace('"', '\\"')
        try:
            self.access_log.info(ACCESS_LOG_FORMAT, atoms)
        except Exception:  # noqa: BLE001 - as gunicorn's own: a log line must never fail a request
            self.error(traceback.format_exc())
        return None


class JsonLogger(Logger):
    """gunicorn's logger writing JSON lines (incidents.logs.JsonFormatter); an access line carries the request's
    method, path (never the query string, where webhook tokens may be), status, duration in ms, request id and
    user, read from the WSGI environ the app filled in."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(logs.JsonFormatter())

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = _status_code(resp)
        method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
        try:
            self.access_log.info("%s %s %s", method, path, status, extra={
                "request_id": environ.get(logs.ENVIRON_ID), "user": environ.get(logs.ENVIRON_USER),
                "method": method, "path": path, "status": int(status),
                "duration": round(request_time.total_seconds() * 1000, 3),
                "remote_addr": environ.get("REMOTE_ADDR")})
        except Exception:  # noqa: BLE001 - as gunicorn's own: a log line must never fail a request
            self.error("Failed to log the access line as JSON")
