"""Request verification, url_verification, the manifest and the admin page, and the Web API client's faults."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from incidents.extensions import db
from incidents.incident.models import Incident
from incidents.slack import signing
from incidents.slack.client import RateLimiter, SlackClient, SlackError
from incidents.slack.models import SlackInbound, SlackOutbox
from tests.conftest import login
from tests.factories import make_incident
from tests.slack.conftest import sample, signed_headers


def _vector() -> dict:
    lines = [line for line in sample("signing_test_vector.txt").splitlines()
             if "=" in line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_known_answer_signing_vector_passes():
    v = _vector()
    raw = sample("slash_command_signing_docs_example.txt").encode()
    headers = {"X-Slack-Request-Timestamp": v["X-Slack-Request-Timestamp"], "X-Slack-Signature": v["X-Slack-Signature"]}
    at = int(v["X-Slack-Request-Timestamp"])
    assert signing.verify(v["signing_secret"], raw, headers, now=at + 60) is None
    assert signing.verify(v["signing_secret"], raw + b"x", headers, now=at) == "bad signature"
    assert signing.verify(v["signing_secret"], raw, headers, now=at + 301).startswith("stale")
    assert signing.verify("", raw, headers, now=at) is not None


@pytest.mark.parametrize("path", ["/slack/commands", "/slack/interactions", "/slack/events"])
def test_bad_signature_or_stale_timestamp_is_401_and_changes_nothing(client, fake_slack, path):
    body = sample("bolt_slash_command_body.txt").encode()
    for headers in (signed_headers(body, secret="wrong-secret"),
                    signed_headers(body, timestamp=int(time.time()) - 301),
                    {}):
        resp = client.post(path, data=body, content_type="application/x-www-form-urlencoded", headers=headers)
        assert resp.status_code == 401
        assert resp.json["error"]["code"] == "unauthorized"
    # The docs' request, correctly signed but from 2018: a replay.
    v = _vector()
    raw = sample("slash_command_signing_docs_example.txt").encode()
    resp = client.post(path, data=raw, content_type="application/x-www-form-urlencoded",
                       headers={"X-Slack-Request-Timestamp": v["X-Slack-Request-Timestamp"],
                                "X-Slack-Signature": v["X-Slack-Signature"]})
    assert resp.status_code == 401
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SlackInbound)) == 0
    assert fake_slack.calls == []


def test_url_verification_is_answered(slack):
    body = sample("zulip_events_url_verification.json")
    resp = slack.raw("/slack/events", json.dumps(body).encode(), "application/json")
    assert resp.status_code == 200 and resp.json == {"challenge": body["challenge"]}


def test_a_real_message_event_is_acknowledged_once(slack):
    body = sample("zulip_events_event_callback_message.json")
    raw = json.dumps(body).encode()
    for retry in (None, "1", "2"):
        resp = slack.raw("/slack/events", raw, "application/json",
                         headers={"X-Slack-Retry-Num": retry} if retry else None)
        assert resp.status_code == 200
    assert db.session.scalars(sa.select(SlackInbound.key)).all() == ["event:Ev079SP4TP1P"]


def test_the_sample_click_is_acknowledged_and_deduplicated(slack, fake_slack):
    raw = sample("bolt_interactivity_block_actions_wire.txt").strip().encode()
    for _ in range(2):
        assert slack.raw("/slack/interactions", raw, "application/x-www-form-urlencoded").status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(SlackInbound)) == 1


def test_malformed_bodies_get_a_clear_400(slack):
    resp = slack.raw("/slack/interactions", b"payload=not-json", "application/x-www-form-urlencoded")
    assert resp.status_code == 400 and "payload" in resp.json["error"]["fields"]
    resp = slack.raw("/slack/events", b"[1,", "application/json")
    assert resp.status_code == 400
    resp = slack.raw("/slack/commands", b"text=hi", "application/x-www-form-urlencoded")
    assert resp.status_code == 400 and "trigger_id" in resp.json["error"]["fields"]


def test_declare_modal_field_errors(slack, fake_slack):
    resp, _ = slack.submit("declare", {"title": " ", "severity": "SEV9"}, {"channel": "C111"})
    assert resp.json == {"response_action": "errors",
                         "errors": {"title": "Required.", "severity": "Pick SEV1 to SEV4."}}
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_manifest(client, admin):
    login(client, admin)
    m = client.get("/slack/manifest").json
    (command,) = m["features"]["slash_commands"]
    assert command["command"] == "/incident" and command["should_escape"] is True
    assert command["url"] == "http://localhost/slack/commands"
    assert m["settings"]["interactivity"]["request_url"] == "http://localhost/slack/interactions"
    assert m["settings"]["event_subscriptions"]["request_url"] == "http://localhost/slack/events"
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == {"reaction_added", "reaction_removed"}
    assert {"commands", "chat:write", "channels:manage", "pins:write", "users:read.email"} <= set(
        m["oauth_config"]["scopes"]["bot"])


def test_admin_page_shows_settings_inbound_and_outbox(client, admin, responder, slack, fake_slack):
    fake_slack.fail("pins.add", error="not_pinnable")
    make_incident(title="Shown on admin")
    login(client, admin)
    page = client.get("/admin/slack").get_data(as_text=True)
    assert "INCIDENTS_SLACK_BOT_TOKEN" in page and "missing" not in page
    assert "not_pinnable" in page and "failed: 1" in page
    login(client, responder)
    assert client.get("/admin/slack").status_code == 403


def test_admin_page_says_what_is_missing(client, admin):
    login(client, admin)
    page = client.get("/admin/slack").get_data(as_text=True)
    assert page.count("missing") == 3 and "None yet" in page


def test_client_honours_retry_after_and_names_errors(fake_slack):
    slept = []
    client = SlackClient(fake_slack.url, fake_slack.token, timeout=2, sleep=slept.append, limiter=RateLimiter())
    fake_slack.fail("auth.test", status=429, retry_after=7)
    assert client.call("auth.test")["user_id"] == "UBOT" and slept == [7.0]
    fake_slack.fail("auth.test", status=429, retry_after=120)  # longer than we wait inside a job
    with pytest.raises(SlackError) as e:
        client.call("auth.test")
    assert e.value.error == "ratelimited" and e.value.retry_after == 120
    with pytest.raises(SlackError) as e:
        client.call("conversations.invite", channel="CNOPE", users="W1")
    assert e.value.error == "channel_not_found" and not e.value.unknown_outcome
    fake_slack.fail("auth.test", drop=True)
    with pytest.raises(SlackError) as e:
        client.call("auth.test")
    assert e.value.unknown_outcome


def test_client_times_out():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never answers
    try:
        client = SlackClient(f"http://127.0.0.1:{listener.getsockname()[1]}/api/", "t", timeout=0.3,
                             limiter=RateLimiter())
        with pytest.raises(SlackError) as e:
            client.call("auth.test")
        assert e.value.error == "timeout"
    finally:
        listener.close()


def test_rate_tiers_are_enforced_client_side():
    clock = {"now": 0.0}
    waits = []

    def sleep(s):
        waits.append(s)
        clock["now"] += s

    limiter = RateLimiter(monotonic=lambda: clock["now"], sleep=sleep)
    for _ in range(20):
        assert limiter.wait("conversations.create") == 0  # Tier 2: 20 a minute
    assert limiter.wait("conversations.create") == 60 and waits == [60]
    assert limiter.wait("chat.update") == 0  # each method has its own window


def test_outbox_rows_are_unique_per_action(slack, fake_slack):
    incident = make_incident(title="Outbox")
    keys = db.session.scalars(sa.select(SlackOutbox.key).where(SlackOutbox.incident_id == incident.id)).all()
    assert sorted(keys) == sorted(f"incident:{incident.id}:{k}" for k in
                                  ("create", "invite", "topic", "summary", "pin", "announce"))
