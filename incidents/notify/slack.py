"""Thin Slack incoming-webhook client: one POST with a timeout, typed errors, no database."""

from __future__ import annotations

import logging

import requests

from incidents import metrics, outbound

log = logging.getLogger(__name__)


class SlackError(Exception):
    """A post failed; `temporary` (429, 5xx, network) means a later retry can succeed.

    Messages never contain the webhook URL: its path is the secret."""

    def __init__(self, message: str, *, temporary: bool, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.status = status
        self.retry_after = retry_after


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, label: str) -> str:
    return f"<{url}|{escape(label).replace('|', '¦')}>"


def post_message(webhook_url: str, payload: dict, *, timeout: float = 10.0,
                 session: requests.Session | None = None, user_url: bool = False,
                 allow_private: bool = False) -> None:
    """POST `payload` ({"text": ..., "blocks": [...]}) to an incoming webhook; raise SlackError unless Slack says ok.

    `user_url`: a URL a user stored (a team's hook), sent through incidents/outbound.py (public https targets
    only, unless `allow_private`); the operator's own SLACK_WEBHOOK_URL is not restricted."""
    try:
        if user_url:
            response = outbound.post(webhook_url, json=payload, timeout=timeout, allow_private=allow_private)
        else:
            response = (session or requests).post(webhook_url, json=payload, timeout=timeout, allow_redirects=False)
    except outbound.RefusedURL as e:  # nothing was sent, so there is no reply to report
        raise _failed(f"Slack webhook refused: {e}", None, e.temporary) from None
    except requests.RequestException as e:  # str(e) names the URL, so only the class goes out
        raise _failed(f"Slack webhook unreachable: {type(e).__name__}", None, True) from None
    if response.status_code == 200:
        metrics.outbound_call("slack", "ok")
        return
    body = response.text[:200].strip()
    if response.status_code == 429:
        raise _failed(f"Slack rate limit: {body or 'too many requests'}", 429, True,
                      _seconds(response.headers.get("Retry-After")))
    temporary = response.status_code >= 500
    # 400 invalid_payload, 403 action_prohibited, 404 no_service, 410 channel_is_archived: fix the settings.
    raise _failed(f"Slack webhook answered {response.status_code}: {body}", response.status_code, temporary)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _failed(message: str, status: int | None, temporary: bool, retry_after: float | None = None) -> SlackError:
    metrics.outbound_call("slack", "rate_limited" if status == 429 else "error" if temporary else "rejected")
    log.warning("%s (%s)", message, "temporary" if temporary else "permanent")
    return SlackError(message, temporary=temporary, status=status, retry_after=retry_after)
