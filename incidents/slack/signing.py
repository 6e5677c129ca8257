"""Request verification: v0 HMAC-SHA256 of the raw body with the Signing Secret, timestamp within 5 minutes."""

from __future__ import annotations

import time

from slack_sdk.signature import SignatureVerifier


def verify(secret: str, raw: bytes, headers, now: float | None = None) -> str | None:
    """None when the request is Slack's, else why not. slack_sdk compares in constant time (hmac.compare_digest)
    and rejects a timestamp more than 5 minutes from now (a replayed capture)."""
    if not secret:
        return "the Slack signing secret is not configured"
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not timestamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    if not timestamp.isdigit():
        return "malformed X-Slack-Request-Timestamp"
    clock = _Clock(now) if now is not None else None
    verifier = SignatureVerifier(secret, clock=clock) if clock else SignatureVerifier(secret)
    if abs((now if now is not None else time.time()) - int(timestamp)) > 60 * 5:
        return "stale timestamp (more than 5 minutes off)"
    if not verifier.is_valid(raw, timestamp, signature):
        return "bad signature"
    return None


class _Clock:
    def __init__(self, now: float):
        self._now = now

    def now(self) -> float:
        return self._now
