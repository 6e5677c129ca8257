"""Server settings that `incidents serve` applies to gunicorn, kept in one module so that the ingestion benchmark's
floor runs under exactly the same ones (`gunicorn -c python:incidents.serving ...`)."""

from __future__ import annotations

import gc

# gunicorn's default access-log line plus the time the request took in the worker, in milliseconds.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
access_log_format = ACCESS_LOG_FORMAT  # read by gunicorn when this module is its config file


def gunicorn_settings(host: str, port: int, workers: int, threads: int, keep_alive: int = 0) -> dict:
    """What `incidents serve` sets on gunicorn (the benchmark floor passes the same on its command line).

    By default each worker takes only as many connections as it has threads, and closes each after its response
    (no keep-alive). gunicorn otherwise lets a worker accept connections while all its threads are busy and keeps
    them alive, every later request of a connection going to the worker that accepted it: under the ingestion
    bench the app's two workers answered 42 % and 58 % of the requests and the busier one made the p99. Capped,
    waiting connections stay in the kernel's listen queue, and whichever worker frees a thread first takes the
    next one: one queue for all workers. Webhook senders open a connection per delivery anyway, and a reverse
    proxy in front keeps its own keep-alive with browsers. `--keep-alive N` (seconds) lifts the cap and turns
    keep-alive back on, for browsers talking to gunicorn directly over a slow network."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "keepalive": keep_alive,
        "worker_connections": threads if keep_alive == 0 else 1000,  # 1000 = gunicorn's own default
        "worker_class": "gthread",
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "post_worker_init": post_worker_init,
        "timeout": 60,
        # X-Forwarded-Proto is believed per TRUSTED_PROXIES (web.trust_proxies), not from any loopback peer.
        "forwarded_allow_ips": "",
        # gunicorn 27's control socket lives at one path per user: two servers on a host would clash.
        "control_socket_disable": True,
    }


def freeze_heap() -> None:
    """Hide what start-up allocated (modules, the app, SQLAlchemy's mappers and caches) from the garbage collector.

    A full (generation 2) collection walks every tracked object; in a loaded web worker that took 80-120 ms (190 ms
    in the job worker), during which the process runs nothing else, so every request in flight waited: the webhook
    benchmark's p99 (gc.callbacks timings, bench/README.md). Objects that exist at this point live as long as the
    process anyway; after gc.freeze() collections only walk what requests allocate.

    The youngest generation is also collected less often (every 10,000 net allocations instead of 700): one
    webhook delivery allocates thousands of objects, nearly all freed by reference counting, and the frequent
    young collections cost 10-15 % of a delivery's CPU in process (bench/README.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


GC_YOUNG_THRESHOLD = 10_000


def post_worker_init(_worker) -> None:
    """gunicorn hook: runs in each worker once it has loaded the app, before it takes requests."""
    freeze_heap()
