"""The background-job seam: one huey queue per app; jobs take ids and are queued only after the commit.

How to write a job (the rules every task author relies on):

- Declare it with `@job(...)` (or `@periodic(crontab(...))`) in a domain's `jobs.py` and list that module in
  `JOB_MODULES` below, so the web process and the worker register the same tasks.
- A job takes ids (int or str), never rows: it loads fresh rows in its own app context and session, and it
  owns its transaction (commits at the end, like a view).
- A job may run twice: a retry after a crash, a duplicate enqueue, a burst run overlapping a consumer. Check
  the current state before acting, write absolute values ("status = done"), and key every outgoing call on a
  stable id (Shortcut `external_id`) so a repeat finds the earlier result instead of doubling it.
- Any exception retries the job with exponential backoff: `retry_delay * backoff**n` seconds, `retries` times.
  Raise `huey.exceptions.CancelExecution(retry=False)` for errors that retrying cannot fix.
- `enqueue_after_commit(job, *ids)` hands the job to the queue right after the session commits and drops it
  on rollback (`incidents.events.run_after_commit`); an after-commit event handler uses `enqueue_now`.
  A crash between the commit and the hand-over loses the job, so work that must happen keeps its
  state in a table (an outbox row) and a periodic job re-enqueues what is still pending.
- A job runs with the id of the request that enqueued it as its logging context (`incidents.logs.request_id`);
  the id travels as huey task metadata, beside the ids, never as one of the job's arguments.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey import signals as S
from huey.exceptions import TaskException
from huey.storage import SqliteStorage
from sqlalchemy.orm import Session

from incidents import actor, events, logs, metrics

log = logging.getLogger(__name__)

# Modules whose import declares the app's jobs; config JOB_IMPORTS adds more (plugins, tests).
JOB_MODULES: tuple[str, ...] = ("incidents.notify.jobs", "incidents.report.jobs", "incidents.tracker.jobs",
                                 "incidents.slack.jobs", "incidents.auth.jobs",
                                 "incidents.insights.jobs")

_EXTENSION = "incidents.jobs"
_DECLARED: dict[str, Job] = {}
_REQUEST_ID = "request_id"  # huey task kwarg carrying the enqueuing request's id (see `_Traced`)


@dataclass(frozen=True)
class Job:
    """A declared task: bound to each app's huey by `init_app`, called through `enqueue_after_commit`."""

    func: Callable[..., Any]
    name: str
    retries: int = 5
    retry_delay: float = 30.0
    backoff: float = 2.0
    schedule: Callable[[datetime], bool] | None = field(default=None, compare=False)

    def run_now(self, *ids: int | str) -> Any:
        """Run in the current app context, bypassing the queue (tests and one-off CLI use)."""
        return self.func(*ids)


def job(retries: int = 5, retry_delay: float = 30.0, backoff: float = 2.0, name: str | None = None):
    """Declare a job; defaults retry 5 times after 30 s, 60 s, 2 min, 4 min and 8 min."""

    def decorate(func: Callable[..., Any]) -> Job:
        return _declare(Job(func, name or f"{func.__module__}.{func.__name__}", retries, retry_delay, backoff))

    return decorate


def periodic(schedule: Callable[[datetime], bool], retries: int = 0, name: str | None = None):
    """Declare a periodic job; `schedule` is a huey `crontab(...)` evaluated in UTC by the consumer."""

    def decorate(func: Callable[[], Any]) -> Job:
        full = name or f"{func.__module__}.{func.__name__}"
        return _declare(Job(func, full, retries, 60.0, 1.0, schedule))

    return decorate


def _declare(declared: Job) -> Job:
    existing = _DECLARED.get(declared.name)
    if existing is not None and existing.func.__qualname__ != declared.func.__qualname__:
        raise ValueError(f"two jobs named {declared.name!r}")
    _DECLARED[declared.name] = declared
    return declared


def declared_jobs() -> dict[str, Job]:
    return dict(_DECLARED)


class JobQueue:
    """An app's huey instance plus the tasks bound to that app (each run pushes its app context)."""

    def __init__(self, app: Flask, huey: Huey):
        self.app = app
        self.huey = huey
        self.tasks: dict[str, Any] = {}
        # Immediate mode only: (job name, ids, TaskException) of jobs that failed inline.
        self.failures: list[tuple[str, tuple, TaskException]] = []

    def bind(self, declared: Job) -> Any:
        task = self.tasks.get(declared.name)
        if task is not None:
            return task
        app = self.app

        def run(*ids, request_id=None):  # request_id: set by `_Traced.execute` around the whole run
            with app.app_context():
                return declared.func(*ids)

        # huey identifies a task as "<module>.<name>" in stored messages: make that the job's name.
        module, _, short = declared.name.rpartition(".")
        run.__module__, run.__name__, run.__doc__ = module, short, declared.func.__doc__
        if declared.schedule is not None:
            task = self.huey.periodic_task(declared.schedule, retries=declared.retries, name=short)(run)
        else:
            task = self.huey.task(retries=declared.retries, retry_delay=declared.retry_delay,
                                  retry_backoff=declared.backoff, name=short)(run)
        self.tasks[declared.name] = task
        return task

    def bind_all(self) -> None:
        """Bind every job declared so far (a consumer must know them all, periodic ones included)."""
        for declared in list(_DECLARED.values()):
            self.bind(declared)

    def enqueue(self, declared: Job | str, *ids: int | str, request_id: str | None = None):
        """Queue now, whatever the transaction state (prefer `enqueue_after_commit`)."""
        if isinstance(declared, str):
            declared = _DECLARED[declared]
        task = self.bind(declared)
        metrics.job_enqueued(declared.name)
        request_id = request_id or logs.request_id.get()
        return task(*ids, **{_REQUEST_ID: request_id}) if request_id else task(*ids)


def init_app(app: Flask) -> JobQueue:
    """Build the app's queue from QUEUE_URL, import the job modules and bind every declared job."""
    for module in (*JOB_MODULES, *app.config["JOB_IMPORTS"]):
        importlib.import_module(module)
    queue = JobQueue(app, make_huey(app))
    queue.bind_all()
    app.extensions[_EXTENSION] = queue
    queue.huey.signal(S.SIGNAL_COMPLETE, S.SIGNAL_RETRYING, S.SIGNAL_ERROR, S.SIGNAL_CANCELED,
                      S.SIGNAL_TIMEOUT)(_count_run)
    huey = queue.huey
    metrics.add_scrape_gauge(app, "incidents_job_queue_depth", "Jobs waiting: queued (due now) and scheduled "
                             "(delayed retries, future runs).", "state",
                             lambda: {"queued": huey.pending_count(), "scheduled": huey.scheduled_count()})
    return queue


def _count_run(signal: str, task, *_args) -> None:
    """huey signal: one run's outcome. An error is `failed` only once no retry is left; else `retried` follows."""
    if signal == S.SIGNAL_COMPLETE:
        outcome = "succeeded"
    elif signal == S.SIGNAL_RETRYING:
        outcome = "retried"
    elif not task.retries:
        outcome = "failed"
    else:
        return
    metrics.job_executed(f"{type(task).__module__}.{task.name}", outcome)


class _Traced:
    """huey's execute inside the logging context of the request that enqueued the task, so that every line the
    run logs (huey's own "Executing ..." and "Unhandled exception ..." included) carries its request id."""

    def execute(self, task, timestamp=None):
        token = logs.request_id.set(task.kwargs.get(_REQUEST_ID) if task.kwargs else None)
        try:
            with actor.acting((actor.SYSTEM, None)):  # a job acts as the system unless it says whom (actor.become)
                return super().execute(task, timestamp)
        finally:
            logs.request_id.reset(token)


class QueueStorage(SqliteStorage):
    """huey's SQLite storage in WAL mode with synchronous=NORMAL (huey only offers FULL or OFF): no fsync per
    enqueue while web threads wait. Only an OS crash can drop the last few enqueues, a window that exists anyway
    between a commit and its enqueue; the durable state (timeline, notification log, tracker outbox) is in the
    database and a job is a nudge. QUEUE_URL=redis://... suits many workers."""

    def _create_connection(self):
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


class QueueHuey(_Traced, SqliteHuey):
    storage_class = QueueStorage


class QueueRedisHuey(_Traced, RedisHuey):
    pass


class QueueMemoryHuey(_Traced, MemoryHuey):
    pass


def make_huey(app: Flask) -> Huey:
    """QUEUE_URL: empty = SQLite file in the instance folder, sqlite:///path, redis://..., memory://."""
    cfg = app.config
    name = cfg.get("QUEUE_NAME") or "incidents"
    immediate = cfg.get("QUEUE_IMMEDIATE")
    immediate = app.testing if immediate is None else bool(immediate)
    url = cfg.get("QUEUE_URL") or f"sqlite:///{Path(app.instance_path) / 'queue.sqlite3'}"
    if url.startswith(("redis://", "rediss://", "unix://")):
        return QueueRedisHuey(name, url=url, immediate=immediate)
    if url.startswith("sqlite:///"):
        return QueueHuey(name, filename=url[len("sqlite:///"):], journal_mode="wal", immediate=immediate)
    if url.startswith("memory://"):
        return QueueMemoryHuey(name, immediate=immediate)
    raise ValueError(f"QUEUE_URL must be sqlite:///..., redis://... or memory://, not {url!r}")


def get_queue(app: Flask | None = None) -> JobQueue:
    return (app or current_app).extensions[_EXTENSION]


def enqueue_after_commit(declared: Job, *ids: int | str, session: Session | None = None) -> None:
    """Queue `declared(*ids)` once `session` (default: db.session) commits; a rollback drops it."""
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"jobs take ids (int or str), not {type(value).__name__}")
    if session is None:
        from incidents.extensions import db

        session = db.session
    events.run_after_commit(session, _Enqueue(get_queue(), declared, ids, logs.request_id.get()))


def enqueue_now(declared: Job, *ids: int | str) -> None:
    """Queue `declared(*ids)` at once: for after-commit event handlers (the change is already committed)."""
    _Enqueue(get_queue(), declared, ids, logs.request_id.get())()


def pending_jobs(session: Session) -> list[tuple[str, tuple]]:
    """Jobs waiting for this session's commit, as (name, ids)."""
    return [(cb.declared.name, cb.ids) for cb in events.pending(session) if isinstance(cb, _Enqueue)]


@dataclass(frozen=True)
class _Enqueue:
    """One hand-over to the queue (called after the commit). In immediate mode (tests) the job runs inline:
    raising then would wreck the committed session, so its failure is kept in `get_queue().failures`."""

    queue: JobQueue = field(repr=False)
    declared: Job
    ids: tuple
    request_id: str | None

    def __call__(self) -> None:
        try:
            result = self.queue.enqueue(self.declared, *self.ids, request_id=self.request_id)
        except Exception:
            # The data is committed; failing the caller now would only hide that. Outbox sweeps repair it.
            log.exception("could not enqueue %s%r after commit", self.declared.name, self.ids)
            return
        if self.queue.huey.immediate and result is not None:
            try:
                result.get()
            except TaskException as exc:
                self.queue.failures.append((self.declared.name, self.ids, exc))


def utcnow_naive() -> datetime:
    """huey's clock: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def run_burst(queue: JobQueue, *, now: Callable[[], datetime] = utcnow_naive, periodic: bool = False,
              max_tasks: int | None = None) -> int:
    """Run everything due at `now()` (queued, scheduled and retry-delayed tasks) and return how many ran.

    The clock is read once, so retries scheduled during the burst wait for the next one: the burst ends.
    With `periodic`, periodic jobs whose schedule matches this minute are queued first (cron every minute).
    """
    queue.bind_all()
    huey = queue.huey
    timestamp = now()
    if periodic:
        for task in huey.read_periodic(timestamp):
            huey.enqueue(task)
    ran = 0
    while max_tasks is None or ran < max_tasks:
        for task in huey.read_schedule(timestamp):
            huey.enqueue(task)
        task = huey.dequeue()
        if task is None:
            break
        if huey.ready_to_run(task, timestamp):
            ran += 1
        huey.execute(task, timestamp)
    return ran


def run_consumer(queue: JobQueue, workers: int = 2) -> None:
    """Run huey's consumer (worker threads, scheduler and periodic jobs) until SIGINT/SIGTERM."""
    queue.bind_all()
    consumer = queue.huey.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                          check_worker_health=True)
    # huey sets its SIGINT/SIGTERM handlers only after its worker threads start, so a stop signal sent in between
    # (jobs already running) killed the process with KeyboardInterrupt ("Aborted!", exit 1) instead of a graceful
    # stop. Set them first: the consumer's loop then sees the signal and stops gracefully.
    consumer._set_signal_handlers()
    consumer.run()
