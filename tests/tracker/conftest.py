"""Fixtures for Shortcut tests: the official spec, a fake Shortcut server, a fake clock and a client wired to both."""

from __future__ import annotations

import random

import pytest

from incidents.tracker import shortcut as shortcut_module
from incidents.tracker.shortcut import CircuitBreaker, RateLimiter, ShortcutClient
from tests.conftest import PAYLOADS
from tests.tracker.fake_shortcut import FakeShortcut, Spec

SPEC_PATH = PAYLOADS / "shortcut" / "openapi.json"
WEBHOOK_SAMPLES = PAYLOADS / "shortcut" / "webhooks" / "dorametrix"


class FakeClock:
    """Monotonic time that only moves when someone sleeps: waits are recorded, never spent."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0)


@pytest.fixture(scope="session")
def shortcut_spec() -> Spec:
    if not SPEC_PATH.exists():
        pytest.skip(f"Shortcut OpenAPI spec not found at {SPEC_PATH}")
    return Spec.load(SPEC_PATH)


@pytest.fixture
def fake_shortcut(shortcut_spec):
    """A running fake Shortcut; the test fails if anything sent to it (or answered by it) broke the spec,
    unless the test empties `fake_shortcut.requests` of the requests it sent wrong on purpose."""
    fake = FakeShortcut(shortcut_spec).start()
    yield fake
    fake.stop()
    assert fake.nonconforming() == []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake_shortcut, clock):
    """Clients on the fake with a short timeout, the fake clock, seeded jitter and their own limiter/breaker."""
    clients = []

    def make(**overrides) -> ShortcutClient:
        settings = dict(
            timeout=0.3, sleep=clock.sleep, rng=random.Random(7),
            limiter=RateLimiter(180, clock=clock.monotonic, sleep=clock.sleep),
            breaker=CircuitBreaker(5, 60, clock=clock.monotonic),
        ) | overrides
        client = ShortcutClient(fake_shortcut.url, fake_shortcut.token, **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def shortcut(make_client) -> ShortcutClient:
    return make_client()


@pytest.fixture
def shortcut_app(app, fake_shortcut, monkeypatch):
    """The test app pointed at the fake Shortcut, with waits and timeouts short enough for tests."""
    settings = {
        "SHORTCUT_API_URL": fake_shortcut.url, "SHORTCUT_API_TOKEN": fake_shortcut.token,
        "SHORTCUT_WORKFLOW_STATE_ID": fake_shortcut.state_id("unstarted"), "SHORTCUT_TIMEOUT": 0.3,
        "SHORTCUT_RATE_LIMIT_WAIT": 0.2, "SHORTCUT_MAX_RATE_LIMIT_WAIT": 0.5,
        "SHORTCUT_WEBHOOK_SECRET": "test-webhook-secret", "BASE_URL": "http://incidents.test",
    }
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
    # Limiter and breaker are shared per URL in the process: a port reused by a later fake starts fresh.
    monkeypatch.setattr(shortcut_module, "_SHARED", {})
    return app
