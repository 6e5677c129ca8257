"""The Web API client: one POST per method, timeouts, client-side rate tiers, 429 Retry-After, errors by name.

Every call goes out as POST with the bot token in the Authorization header and form-encoded arguments (lists and
dicts as JSON), which Slack accepts for every method. `ok:false` becomes `SlackError(error)` so callers branch on
the name (name_taken, already_in_channel, channel_not_found ...)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import requests

# Calls per minute per method (Slack's tiers; chat.postMessage is ~1/s per channel, so 60 here).
TIERS = {1: 1, 2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "conversations.create": 2, "conversations.setTopic": 2, "pins.add": 2, "conversations.list": 2,
    "conversations.invite": 3, "conversations.info": 3, "chat.update": 3, "chat.postEphemeral": 3,
    "chat.getPermalink": 4, "users.info": 4, "users.lookupByEmail": 3, "views.open": 4, "auth.test": 4,
}
SPECIAL = {"chat.postMessage": 60}


class SlackError(Exception):
    """A call that failed: `error` is Slack's name for it, or ours (timeout, connection, http_<status>)."""

    def __init__(self, method: str, error: str, retry_after: float | None = None):
        super().__init__(f"{method}: {error}")
        self.method, self.error, self.retry_after = method, error, retry_after

    @property
    def unknown_outcome(self) -> bool:
        """The request may have reached Slack (a timeout or a dropped answer): check before doing it again."""
        return self.error in ("timeout", "connection")


class RateLimiter:
    """Per-method sliding one-minute windows, shared by the clients of a process (the limit is Slack's, per app)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.monotonic, self.sleep = monotonic, sleep
        self._calls: dict[str, deque] = {}
        self._lock = threading.Lock()

    def per_minute(self, method: str) -> int:
        return SPECIAL.get(method) or TIERS[METHOD_TIERS.get(method, 3)]

    def wait(self, method: str) -> float:
        """Block until `method` may be called again; returns the seconds waited."""
        limit, waited = self.per_minute(method), 0.0
        while True:
            with self._lock:
                now = self.monotonic()
                calls = self._calls.setdefault(method, deque())
                while calls and now - calls[0] >= 60:
                    calls.popleft()
                if len(calls) < limit:
                    calls.append(now)
                    return waited
                pause = 60 - (now - calls[0])
            self.sleep(pause)
            waited += pause


_LIMITER = RateLimiter()


class SlackClient:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10, max_wait: float = 30,
                 limiter: RateLimiter | None = None, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.token, self.timeout, self.max_wait = token, timeout, max_wait
        self.limiter = limiter or _LIMITER
        self.http = session or requests.Session()
        self.sleep = sleep

    def call(self, method: str, **args) -> dict:
        """Call `method`; waits out one 429 up to `max_wait` seconds, then raises SlackError("ratelimited")."""
        form = {k: _form_value(v) for k, v in args.items() if v is not None}
        for attempt in range(2):
            self.limiter.wait(method)
            try:
                resp = self.http.post(self.base_url + method, data=form, timeout=self.timeout,
                                      headers={"Authorization": f"Bearer {self.token}"})
            except requests.Timeout as e:
                raise SlackError(method, "timeout") from e
            except requests.ConnectionError as e:
                raise SlackError(method, "connection") from e
            if resp.status_code == 429:
                retry_after = _seconds(resp.headers.get("Retry-After"))
                if attempt == 0 and retry_after <= self.max_wait:
                    self.sleep(retry_after)
                    continue
                raise SlackError(method, "ratelimited", retry_after)
            if resp.status_code >= 300:
                raise SlackError(method, f"http_{resp.status_code}")
            try:
                body = resp.json()
            except ValueError as e:
                raise SlackError(method, "invalid_response") from e
            if not body.get("ok"):
                raise SlackError(method, str(body.get("error") or "unknown_error"))
            return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.http.close()


def _form_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict | list) else value


def _seconds(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.0)
    except ValueError:
        return 1.0


def client_from_config(config: Mapping) -> SlackClient:
    return SlackClient(config.get("SLACK_API_URL") or "https://slack.com/api/", config.get("SLACK_BOT_TOKEN") or "",
                       timeout=float(config.get("SLACK_TIMEOUT") or 10),
                       max_wait=float(config.get("SLACK_MAX_RATE_LIMIT_WAIT") or 30))
