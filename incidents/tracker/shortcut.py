"""Thin typed client for Shortcut's REST API v3 over one requests.Session; no database.

What it guarantees, so callers need not:
- a timeout on every request; `Shortcut-Token` auth; JSON in and out; redirects are never followed (the token
  would go with them): a 3xx raises `Redirected`;
- retries with exponential backoff and full jitter on connection errors and 5xx, for idempotent calls only
  (GET, search). A create whose outcome is unknown raises `UnknownOutcome` instead of posting again: the
  caller looks the story up by `external_id` first (`create_story_once` is that protocol);
- on 429, a wait of `Retry-After` seconds (60 when absent), done by the rate limiter so that it also holds
  back every other thread using the token;
- a rate limiter (`max_per_minute`, default 180 < Shortcut's 200) shared by all clients with the same URL and
  token in this process. Separate worker processes each have their own budget: run one worker process
  (with threads) per token, or lower SHORTCUT_MAX_PER_MINUTE to 180 / number of processes;
- a circuit breaker, also shared per URL and token, that refuses calls with `CircuitOpen` for a cool-down
  after repeated failures; `circuit_state(config)` tells the UI.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

from incidents import metrics
from incidents.settings import with_defaults

DEFAULT_API_URL = "https://api.app.shortcut.com/api/v3"


# --- errors ------------------------------------------------------------------------------------------------


class ShortcutError(Exception):
    """Shortcut refused or failed a request; `status` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class NotConfigured(ShortcutError):
    """No API token is configured."""


class AuthError(ShortcutError):
    """401: the token is missing, wrong or revoked; retrying will not help."""


class NotFound(ShortcutError):
    """404: the story (or other resource) does not exist."""


class Unprocessable(ShortcutError):
    """400/422: Shortcut rejected the body (schema mismatch, both or neither workflow_state_id/project_id)."""


class RateLimited(ShortcutError):
    """429 persisted after the waits this client allows itself; retry the job later."""

    def __init__(self, message: str, retry_after: float, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Redirected(ShortcutError):
    """Shortcut answered with a redirect: never followed, since the token would travel with it to wherever it
    points (requests strips Authorization on a cross-host redirect, but not Shortcut-Token)."""


class Unavailable(ShortcutError):
    """Connection errors, timeouts or 5xx persisted through every retry of an idempotent call."""


class UnknownOutcome(ShortcutError):
    """A create was sent but its result is unknown; look it up by external_id before creating again.

    `maybe_in_flight` is True after a read timeout: the server may still be working on it, so an immediate
    lookup that finds nothing does not prove that nothing will be created."""

    def __init__(self, message: str, maybe_in_flight: bool, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_in_flight = maybe_in_flight


class CircuitOpen(ShortcutError):
    """Calls are suspended after repeated failures until `retry_at`."""

    def __init__(self, message: str, retry_at: datetime):
        super().__init__(message)
        self.retry_at = retry_at


# --- rate limiter and circuit breaker (shared per URL and token within the process) -----------------------


class RateLimiter:
    """At most `max_per_minute` starts in any sliding 60 s window, across threads; `pause` holds everyone."""

    def __init__(self, max_per_minute: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.max_per_minute = max_per_minute
        self.clock = clock
        self.sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self.clock()
                while self._starts and self._starts[0] <= now - 60:
                    self._starts.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._starts) >= self.max_per_minute:
                    wait = self._starts[0] + 60 - now
                if wait <= 0:
                    self._starts.append(now)
                    return
            self.sleep(wait)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds)


@dataclass(frozen=True)
class BreakerState:
    """What a settings page shows: `state` is closed, open or half-open."""

    state: str
    failures: int
    retry_at: datetime | None
    last_error: str | None


class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `cooldown` s one trial call may close it again."""

    def __init__(self, threshold: int = 5, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def before_call(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            now = self.clock()
            remaining = self._opened_at + self.cooldown - now
            trial_running = self._trial_started is not None and now - self._trial_started < self.cooldown
            if remaining <= 0 and not trial_running:
                self._trial_started = now  # half-open: this caller tries; the others wait for its result
                return
            retry_at = datetime.now(UTC) + timedelta(seconds=max(remaining, 0))
        raise CircuitOpen(f"Shortcut calls are suspended after {self._failures} failures "
                          f"(last: {self._last_error})", retry_at)

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial_started = 0, None, None

    def failure(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = error
            if self._trial_started is not None or self._failures >= self.threshold:
                self._opened_at, self._trial_started = self.clock(), None

    def state(self) -> BreakerState:
        with self._lock:
            if self._opened_at is None:
                return BreakerState("closed", self._failures, None, self._last_error)
            remaining = self._opened_at + self.cooldown - self.clock()
            name = "half-open" if remaining <= 0 else "open"
            retry_at = datetime.now(UTC) + timedelta(seconds=max(remaining, 0))
            return BreakerState(name, self._failures, retry_at, self._last_error)


_SHARED: dict[tuple[str, str], tuple[RateLimiter, CircuitBreaker]] = {}
_SHARED_LOCK = threading.Lock()


def shared_guards(base_url: str, token: str, max_per_minute: int, threshold: int, cooldown: float):
    """The process-wide limiter and breaker for this URL and token (created on first use)."""
    key = (base_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = (RateLimiter(max_per_minute), CircuitBreaker(threshold, cooldown))
        return _SHARED[key]


# --- the client ----------------------------------------------------------------------------------------------


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Shortcut (no connection was made)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen, cause = set(), exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.NameResolutionError):
            return True
        if isinstance(cause, urllib3.exceptions.MaxRetryError):
            cause = cause.reason
            continue
        cause = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else cause.__cause__
    return False


def _retry_after(response: requests.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ShortcutClient:
    """One client per job or thread; the limiter and breaker behind it are shared per URL and token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0, max_per_minute: int = 180,
                 max_retries: int = 3, backoff_base: float = 0.5, backoff_cap: float = 8.0,
                 max_rate_limit_waits: int = 2, rate_limit_default: float = 60.0, max_rate_limit_wait: float = 120.0,
                 circuit_threshold: int = 5, circuit_cooldown: float = 60.0,
                 limiter: RateLimiter | None = None, breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 session: requests.Session | None = None):
        if not token:
            raise NotConfigured("No Shortcut API token is configured.")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_rate_limit_waits = max_rate_limit_waits
        self.rate_limit_default = rate_limit_default
        self.max_rate_limit_wait = max_rate_limit_wait
        self.sleep = sleep
        self.rng = rng or random.Random()
        if limiter is None or breaker is None:
            shared_limiter, shared_breaker = shared_guards(base_url, token, max_per_minute,
                                                           circuit_threshold, circuit_cooldown)
            limiter, breaker = limiter or shared_limiter, breaker or shared_breaker
        self.limiter = limiter
        self.breaker = breaker
        self.session = session or requests.Session()
        self.session.headers.update({"Shortcut-Token": token, "Content-Type": "application/json",
                                     "Accept": "application/json"})

    # Public API: one method per endpoint the app uses.

    def create_story(self, params: Mapping[str, Any]) -> dict:
        """POST /stories. Never re-posted by the client: an unknown outcome raises UnknownOutcome."""
        return self._request("POST", "/stories", json=dict(params), idempotent=False)

    def get_story(self, story_id: int) -> dict:
        return self._request("GET", f"/stories/{int(story_id)}")

    def search_stories(self, filters: Mapping[str, Any]) -> list[dict]:
        """POST /stories/search (SearchStories): an exact, unpaginated filter, safe to repeat."""
        return self._request("POST", "/stories/search", json=dict(filters))

    def search_stories_by_external_id(self, external_id: str) -> list[dict]:
        return self.search_stories({"external_id": external_id})

    def list_workflows(self) -> list[dict]:
        return self._request("GET", "/workflows")

    def get_current_member(self) -> dict:
        """GET /member: the cheapest call that proves the token works ("test connection")."""
        return self._request("GET", "/member")

    def list_members(self) -> list[dict]:
        return self._request("GET", "/members")

    def close(self) -> None:
        self.session.close()

    # Transport.

    def _backoff(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** attempt))

    def _request(self, method: str, path: str, *, json: Any = None, idempotent: bool = True) -> Any:
        url = self.base_url + path
        attempt = rate_limit_waits = 0
        while True:
            self.breaker.before_call()
            self.limiter.acquire()
            try:
                response = self.session.request(method, url, json=json, timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                metrics.outbound_call("shortcut", "error")
                self.breaker.failure(f"{type(exc).__name__}: {exc}")
                if not idempotent and not _never_sent(exc):
                    raise UnknownOutcome(f"{method} {path}: no answer ({type(exc).__name__})",
                                         maybe_in_flight=isinstance(exc, requests.ReadTimeout)) from exc
                if attempt >= self.max_retries:
                    raise Unavailable(f"{method} {path}: {type(exc).__name__} after {attempt + 1} tries") from exc
                self.sleep(self._backoff(attempt))
                attempt += 1
                continue

            status = response.status_code
            metrics.outbound_call("shortcut", _outcome(status))
            if status == 429:
                # Shortcut is up but did not process it, so even a create may be sent again. The limiter
                # does the waiting, for this thread and every other one using the same token.
                self.breaker.success()
                wait = _retry_after(response, self.rate_limit_default)
                self.limiter.pause(wait)
                # A long wait would hold a worker thread: give up and let the job retry later instead.
                if rate_limit_waits >= self.max_rate_limit_waits or wait > self.max_rate_limit_wait:
                    raise RateLimited(f"{method} {path}: rate limited", wait, status=429, body=_body(response))
                rate_limit_waits += 1
                continue
            if status >= 500:
                self.breaker.failure(f"HTTP {status}")
                if not idempotent:
                    raise UnknownOutcome(f"{method} {path}: HTTP {status}", maybe_in_flight=False,
                                         status=status, body=_body(response))
                if attempt >= self.max_retries:
                    raise Unavailable(f"{method} {path}: HTTP {status} after {attempt + 1} tries",
                                      status=status, body=_body(response))
                self.sleep(self._backoff(attempt))
                attempt += 1
                continue

            self.breaker.success()  # any answer below 500 means Shortcut is up
            if status < 300:
                return _body(response) if response.content else None
            if status < 400:
                target = urlsplit(response.headers.get("Location", "")).netloc or "nowhere"
                raise Redirected(f"{method} {path}: HTTP {status} redirect to {target}, not followed "
                                 "(check SHORTCUT_API_URL)", status=status)
            raise _error_for(method, path, response)


def _outcome(status: int) -> str:
    """One HTTP answer as an outbound-call outcome: every attempt counts, retries included."""
    if status < 300:
        return "ok"
    if status == 429:
        return "rate_limited"
    return "error" if status >= 500 else "rejected"


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_for(method: str, path: str, response: requests.Response) -> ShortcutError:
    body = _body(response)
    detail = body.get("message") if isinstance(body, dict) else None
    message = f"{method} {path}: HTTP {response.status_code}" + (f": {detail}" if detail else "")
    cls = {401: AuthError, 403: AuthError, 404: NotFound, 400: Unprocessable, 422: Unprocessable}.get(
        response.status_code, ShortcutError)
    return cls(message, status=response.status_code, body=body)


# --- configuration -------------------------------------------------------------------------------------------


def client_from_config(config: Mapping[str, Any], **overrides) -> ShortcutClient:
    """A client for the configured workspace (SHORTCUT_* keys); raises NotConfigured without a token."""
    config = with_defaults(config)
    settings = dict(
        timeout=float(config["SHORTCUT_TIMEOUT"]),
        max_per_minute=int(config["SHORTCUT_MAX_PER_MINUTE"]),
        circuit_threshold=int(config["SHORTCUT_CIRCUIT_THRESHOLD"]),
        circuit_cooldown=float(config["SHORTCUT_CIRCUIT_COOLDOWN"]),
        rate_limit_default=float(config["SHORTCUT_RATE_LIMIT_WAIT"]),
        max_rate_limit_wait=float(config["SHORTCUT_MAX_RATE_LIMIT_WAIT"]),
    ) | overrides
    return ShortcutClient(config.get("SHORTCUT_API_URL") or DEFAULT_API_URL,
                          config.get("SHORTCUT_API_TOKEN") or "", **settings)


def circuit_state(config: Mapping[str, Any]) -> BreakerState | None:
    """The breaker of the configured workspace in this process, or None when Shortcut is not configured."""
    config = with_defaults(config)
    token = config.get("SHORTCUT_API_TOKEN")
    if not token:
        return None
    _, breaker = shared_guards(config.get("SHORTCUT_API_URL") or DEFAULT_API_URL, token,
                               int(config["SHORTCUT_MAX_PER_MINUTE"]),
                               int(config["SHORTCUT_CIRCUIT_THRESHOLD"]),
                               float(config["SHORTCUT_CIRCUIT_COOLDOWN"]))
    return breaker.state()


# --- exactly once, and other helpers for the outbox job ------------------------------------------------------


@dataclass(frozen=True)
class CreatedStory:
    """The story that now stands for an external_id; `created` is False when an existing one was adopted."""

    story: dict
    created: bool

    @property
    def id(self) -> int:
        return self.story["id"]


def find_story_by_external_id(client: ShortcutClient, external_id: str) -> dict | None:
    """The oldest story carrying this external_id (stories and their copies share it; the first one wins)."""
    stories = [s for s in client.search_stories_by_external_id(external_id) if s.get("external_id") == external_id]
    return min(stories, key=lambda s: s["id"]) if stories else None


def create_story_once(client: ShortcutClient, params: Mapping[str, Any], *, attempts: int = 3) -> CreatedStory:
    """Create the story for `params["external_id"]` unless one exists: the outbox job's exactly-once step.

    Look up first (an earlier run may have created it and died before its commit), create, and after an
    unknown outcome look up again: adopt what is there; otherwise create again only if the failed request
    has certainly finished (an answer such as 5xx, or a dropped connection). After a read timeout the
    request may still be running, so UnknownOutcome propagates and the job retries later, looking up first.
    The caller must store the returned story id in the same transaction that marks the item exported.
    """
    external_id = params.get("external_id")
    if not external_id:
        raise ValueError("create_story_once needs params['external_id'], the key that makes it idempotent")
    existing = find_story_by_external_id(client, external_id)
    if existing is not None:
        return CreatedStory(existing, created=False)
    for attempt in range(1, attempts + 1):
        try:
            return CreatedStory(client.create_story(params), created=True)
        except UnknownOutcome as exc:
            existing = find_story_by_external_id(client, external_id)
            if existing is not None:
                return CreatedStory(existing, created=False)
            if exc.maybe_in_flight or attempt == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def member_id_for_email(members: list[dict], email_address: str | None) -> str | None:
    """The active member whose profile e-mail matches (case-insensitively), for owner_ids."""
    if not email_address:
        return None
    wanted = email_address.strip().lower()
    for member in members:
        profile = member.get("profile") or {}
        if member.get("disabled") or profile.get("deactivated"):
            continue
        if (profile.get("email_address") or "").strip().lower() == wanted:
            return member["id"]
    return None


def workflow_state_types(workflows: list[dict]) -> dict[int, str]:
    """Map every workflow-state id to its type (unstarted, started, done, backlog)."""
    return {state["id"]: state["type"] for workflow in workflows for state in workflow.get("states", ())}
