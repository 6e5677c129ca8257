"""Slack test harness: the official spec, a running fake Web API wired into the app, and signed requests built from
the real samples in ../shared/contracts/payloads/slack/ (the tests skip when that folder is absent)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest

from incidents.jobs import get_queue
from incidents.slack import client as client_module
from tests.conftest import PAYLOADS
from tests.slack.fake_slack import FakeSlack, Spec

SAMPLES = PAYLOADS / "slack"
SPEC_PATH = SAMPLES / "slack_web_openapi_v2_without_examples.json"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the docs' example secret; any would do
ANNOUNCE = "CANNOUNCE"


def sample(name: str):
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"Slack sample {path} not found")
    text = path.read_text()
    return json.loads(text) if name.endswith(".json") else text


@pytest.fixture(scope="session")
def slack_spec() -> Spec:
    if not SPEC_PATH.exists():
        pytest.skip(f"Slack Web API spec not found at {SPEC_PATH}")
    return Spec.load(SPEC_PATH)


@pytest.fixture
def fake_slack(app, slack_spec, monkeypatch):
    """A running fake, the app pointed at it; the test fails if any call broke the spec."""
    fake = FakeSlack(slack_spec).start()
    fake.channels[ANNOUNCE] = {"id": ANNOUNCE, "name": "incidents", "creator": "USOMEONE", "topic": "",
                               "members": set()}
    for key, value in {"SLACK_API_URL": fake.url, "SLACK_BOT_TOKEN": fake.token, "SLACK_SIGNING_SECRET": SECRET,
                       "SLACK_ANNOUNCE_CHANNEL": ANNOUNCE, "SLACK_TIMEOUT": 2}.items():
        monkeypatch.setitem(app.config, key, value)
    monkeypatch.setattr(client_module, "_LIMITER", client_module.RateLimiter())  # each test its own minute
    yield fake
    fake.stop()
    get_queue(app).failures.clear()  # jobs the test made fail on purpose (inline, immediate mode)
    assert fake.violations == []


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class SlackSender:
    """Posts signed requests to the real endpoints, built from the samples."""

    def __init__(self, client, response_base: str):
        self.client = client
        self.response_base = response_base  # where the requests' response_url points (the fake, never Slack)
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    def raw(self, path: str, body: bytes, content_type: str, headers: dict | None = None, **sign):
        return self.client.post(path, data=body, content_type=content_type,
                                headers={**signed_headers(body, **sign), **(headers or {})})

    def command(self, text: str, *, user: str = "W111", channel: str = "C111", **sign):
        decoded = dict(parse_qsl(sample("bolt_slash_command_body.txt").strip(), keep_blank_values=True))
        decoded.update(command="/incident", text=text, user_id=user, channel_id=channel,
                       trigger_id=f"111.111.trigger{self._next()}",
                       response_url=f"{self.response_base}commands/{self._n}")
        return self.raw("/slack/commands", urlencode(decoded).encode(), "application/x-www-form-urlencoded",
                        **sign)

    def interaction(self, payload: dict, **sign):
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.raw("/slack/interactions", body, "application/x-www-form-urlencoded", **sign)

    def click(self, action_id: str, incident_id: int, *, user: str = "W111", channel: str = "C111"):
        payload = copy.deepcopy(sample("bolt_interactivity_block_actions.json"))
        payload["user"]["id"] = user
        payload["channel"]["id"] = payload["container"]["channel_id"] = channel
        payload["trigger_id"] = f"111.222.click{self._next()}"
        payload["response_url"] = f"{self.response_base}actions/{self._n}"
        payload["actions"][0].update(action_id=action_id, value=str(incident_id),
                                     action_ts=f"1596530385.{self._n:06d}")
        return self.interaction(payload), payload

    def submit(self, callback_id: str, values: dict, metadata: dict, *, user: str = "W111"):
        payload = copy.deepcopy(sample("bolt_interactivity_view_submission.json"))
        payload["user"]["id"] = user
        view = payload["view"]
        view.update(callback_id=callback_id, private_metadata=json.dumps(metadata), hash=f"1596530361.h{self._next()}",
                    id=f"V{self._n}")
        view["state"]["values"] = {
            name: {name: ({"type": "static_select", "selected_option": {"value": value}} if name in
                          ("severity", "service") else {"type": "plain_text_input", "value": value})}
            for name, value in values.items()}
        return self.interaction(payload), payload

    def event(self, event: dict, event_id: str, retry: int | None = None, **sign):
        envelope = copy.deepcopy(sample("bolt_events_reaction_added.json"))
        envelope["event"], envelope["event_id"] = event, event_id
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        return self.raw("/slack/events", json.dumps(envelope).encode(), "application/json", headers=headers, **sign)


@pytest.fixture
def slack(client, fake_slack) -> SlackSender:
    return SlackSender(client, fake_slack.url.replace("/api/", "/response/"))
