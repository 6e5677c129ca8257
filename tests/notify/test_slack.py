"""The Slack incoming-webhook client against a local HTTP server."""

from __future__ import annotations

import logging

import pytest

from incidents.notify.slack import SlackError, escape, link, post_message
from tests.smtp import free_port


def test_posts_json_and_accepts_ok(slack_server):
    payload = {"text": "INC-1 opened", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]}
    post_message(slack_server.url("/services/A/B/C"), payload, timeout=5)
    [post] = slack_server.posts
    assert post.path == "/services/A/B/C"
    assert post.content_type == "application/json"
    assert post.json == payload


@pytest.mark.parametrize(("status", "temporary"), [(500, True), (503, True), (400, False), (404, False),
                                                    (410, False)])
def test_error_statuses_are_typed(slack_server, status, temporary):
    slack_server.fail_next(1, status, "channel_is_archived" if status == 410 else "oops")
    with pytest.raises(SlackError) as err:
        post_message(slack_server.url(), {"text": "x"}, timeout=5)
    assert (err.value.status, err.value.temporary) == (status, temporary)
    assert slack_server.posts == []


def test_rate_limit_is_temporary_with_retry_after(slack_server):
    slack_server.fail_next(1, 429, "rate_limited", {"Retry-After": "30"})
    with pytest.raises(SlackError) as err:
        post_message(slack_server.url(), {"text": "x"}, timeout=5)
    assert (err.value.status, err.value.temporary, err.value.retry_after) == (429, True, 30.0)


def test_unreachable_is_temporary_and_never_reveals_the_url(caplog):
    caplog.set_level(logging.DEBUG, logger="incidents")
    port = free_port()  # nothing listens there: connection refused
    with pytest.raises(SlackError) as err:
        post_message(f"http://127.0.0.1:{port}/services/T/B/very-secret-token", {"text": "x"}, timeout=5)
    assert err.value.temporary is True
    assert "very-secret-token" not in str(err.value)
    assert "very-secret-token" not in caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_http_error_message_never_reveals_the_url(slack_server):
    slack_server.fail_next(1, 404, "no_service")
    with pytest.raises(SlackError) as err:
        post_message(slack_server.url("/services/T/B/another-secret"), {"text": "x"}, timeout=5)
    assert "no_service" in str(err.value)
    assert "another-secret" not in str(err.value)


def test_mrkdwn_escaping():
    assert escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert link("https://x.example/i/1", "DB <down> | now") == "<https://x.example/i/1|DB &lt;down&gt; ¦ now>"


def test_outcomes_are_counted_for_metrics(slack_server):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        labels = {"service": "slack", "outcome": outcome}
        return REGISTRY.get_sample_value("incidents_outbound_calls_total", labels) or 0

    before = {o: count(o) for o in ("ok", "rate_limited", "error", "rejected")}
    post_message(slack_server.url(), {"text": "x"}, timeout=5)
    for status in (429, 503, 404):
        slack_server.fail_next(1, status, "nope")
        with pytest.raises(SlackError):
            post_message(slack_server.url(), {"text": "x"}, timeout=5)
    assert {o: count(o) - before[o] for o in before} == {"ok": 1, "rate_limited": 1, "error": 1, "rejected": 1}
