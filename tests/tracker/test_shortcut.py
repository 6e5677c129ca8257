"""The Shortcut client against a fake Shortcut that checks the official spec and injects faults."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from incidents.tracker.shortcut import (
    AuthError,
    CircuitBreaker,
    CircuitOpen,
    NotConfigured,
    NotFound,
    RateLimited,
    RateLimiter,
    Redirected,
    ShortcutClient,
    Unavailable,
    UnknownOutcome,
    Unprocessable,
    circuit_state,
    client_from_config,
    create_story_once,
    member_id_for_email,
    workflow_state_types,
)
from tests.tracker.fake_shortcut import Fault
from tests.webhook_server import Listener


def card(fake, external_id: str = "incidents:action-item:42", **overrides) -> dict:
    """A card the way the outbox job will build it: every field the issue lists."""
    owner = member_id_for_email(fake.members, "ada@example.com")
    return {
        "name": "Add a circuit breaker to the payments client",
        "description": "From the post-mortem of **INC-7** (payments outage).\n\n- context\n- links",
        "story_type": "chore",
        "labels": [{"name": "postmortem"}, {"name": "tech-debt"}, {"name": "INC-7"}, {"name": "payments"}],
        "workflow_state_id": fake.state_id("unstarted"),
        "owner_ids": [owner],
        "deadline": "2026-12-01T00:00:00Z",
        "estimate": 3,
        "external_id": external_id,
        "external_links": ["https://incidents.example.com/incidents/7/postmortem"],
    } | overrides


# --- happy paths: every method, conforming to the spec (checked by the fixture at teardown) ------------------


def test_create_get_and_search_a_story(fake_shortcut, shortcut):
    story = shortcut.create_story(card(fake_shortcut))
    assert story["id"] in fake_shortcut.stories
    assert story["story_type"] == "chore" and story["external_id"] == "incidents:action-item:42"
    assert [label["name"] for label in story["labels"]] == ["postmortem", "tech-debt", "INC-7", "payments"]
    assert shortcut.get_story(story["id"])["name"] == story["name"]
    [found] = shortcut.search_stories_by_external_id("incidents:action-item:42")
    assert found["id"] == story["id"]
    assert shortcut.search_stories_by_external_id("incidents:action-item:other") == []

    [create, *_] = fake_shortcut.requests
    assert create.headers["Shortcut-Token"] == fake_shortcut.token
    assert create.headers["Content-Type"] == "application/json"
    assert create.operation == "createStory" and create.body["external_id"] == "incidents:action-item:42"


def test_workflows_members_and_current_member(fake_shortcut, shortcut):
    types = workflow_state_types(shortcut.list_workflows())
    assert set(types.values()) == {"backlog", "unstarted", "started", "done"}
    assert shortcut.get_current_member()["id"] == fake_shortcut.member_id
    members = shortcut.list_members()
    assert member_id_for_email(members, "rita@EXAMPLE.com ") == fake_shortcut.members[1]["id"]
    assert member_id_for_email(members, "gone@example.com") is None  # disabled members own nothing
    assert member_id_for_email(members, None) is None


def test_every_request_carries_a_timeout(fake_shortcut, make_client):
    client = make_client(timeout=0.2)
    fake_shortcut.inject("listWorkflows", Fault.slow(1.0))
    assert client.list_workflows()  # the slow answer timed out and the retry got through
    assert len(fake_shortcut.calls("listWorkflows")) == 2


# --- the fake enforces the spec ----------------------------------------------------------------------------


def test_unknown_keys_are_a_schema_mismatch(fake_shortcut, shortcut):
    with pytest.raises(Unprocessable) as error:
        shortcut.create_story(card(fake_shortcut, priority="high"))
    assert error.value.status == 400
    assert "Additional properties are not allowed ('priority'" in str(error.value.body)
    assert fake_shortcut.stories == {}
    fake_shortcut.requests.clear()  # sent wrong on purpose


@pytest.mark.parametrize("placement", [{}, {"workflow_state_id": 500002, "project_id": 7}])
def test_exactly_one_of_workflow_state_or_project(fake_shortcut, shortcut, placement):
    params = {k: v for k, v in card(fake_shortcut).items() if k != "workflow_state_id"} | placement
    with pytest.raises(Unprocessable, match="Exactly one of workflow_state_id or project_id") as error:
        shortcut.create_story(params)
    assert error.value.status == 422


def test_wrong_token_is_an_auth_error(fake_shortcut, make_client):
    client = ShortcutClient(fake_shortcut.url, "wrong", limiter=RateLimiter(180), breaker=CircuitBreaker())
    with pytest.raises(AuthError):
        client.get_current_member()
    client.close()


def test_missing_story_is_not_found(shortcut):
    with pytest.raises(NotFound):
        shortcut.get_story(99)


# --- retries of idempotent calls -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.status_code(500), Fault.status_code(503), Fault.status_code(502),
                                   Fault.drop()], ids=["500", "503", "502", "drop"])
def test_idempotent_calls_retry_transient_failures(fake_shortcut, shortcut, clock, fault):
    story = shortcut.create_story(card(fake_shortcut))
    fake_shortcut.inject("getStory", fault, fault)
    assert shortcut.get_story(story["id"])["id"] == story["id"]
    assert len(fake_shortcut.calls("getStory")) == 3
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.5 and 0 <= clock.sleeps[1] <= 1.0  # full jitter under 0.5 * 2**n


def test_persistent_failure_gives_up_with_exponential_backoff(fake_shortcut, make_client, clock):
    client = make_client(max_retries=3, backoff_base=1, backoff_cap=3,
                         breaker=CircuitBreaker(100, 60, clock=clock.monotonic))
    fake_shortcut.inject("listWorkflows", *[Fault.status_code(500)] * 4)
    with pytest.raises(Unavailable) as error:
        client.list_workflows()
    assert error.value.status == 500
    assert len(fake_shortcut.calls("listWorkflows")) == 4
    assert [round(s, 3) <= cap for s, cap in zip(clock.sleeps, [1, 2, 3], strict=True)] == [True] * 3


def test_search_is_retried_like_a_read(fake_shortcut, shortcut):
    fake_shortcut.inject("queryStories", Fault.status_code(500))
    assert shortcut.search_stories_by_external_id("x") == []
    assert len(fake_shortcut.calls("queryStories")) == 2


# --- rate limiting -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "wait"), [(Fault.rate_limited(7), 7), (Fault.rate_limited(), 60)],
                         ids=["retry-after", "no-header"])
def test_429_waits_retry_after_or_a_minute(fake_shortcut, shortcut, clock, fault, wait):
    fake_shortcut.inject("createStory", fault)
    story = shortcut.create_story(card(fake_shortcut))  # 429 means not processed: safe to post again
    assert clock.sleeps == [wait]
    assert len(fake_shortcut.calls("createStory")) == 2
    assert fake_shortcut.stories_with_external_id(story["external_id"]) == [fake_shortcut.stories[story["id"]]]


def test_persistent_429_raises_rate_limited(fake_shortcut, shortcut, clock):
    fake_shortcut.inject("getCurrentMemberInfo", *[Fault.rate_limited(5)] * 3)
    with pytest.raises(RateLimited) as error:
        shortcut.get_current_member()
    assert error.value.retry_after == 5
    assert clock.sleeps == [5, 5]


def test_long_retry_after_is_left_to_the_job_retry(fake_shortcut, shortcut, clock):
    fake_shortcut.inject("listMembers", Fault.rate_limited(3600))
    with pytest.raises(RateLimited) as error:
        shortcut.list_members()
    assert error.value.retry_after == 3600 and clock.sleeps == []
    shortcut.limiter.acquire()  # but every later call of this process still waits the hour out
    assert clock.sleeps == [3600]


def test_rate_limiter_keeps_a_sliding_minute(clock):
    limiter = RateLimiter(3, clock=clock.monotonic, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    clock.now += 20
    limiter.acquire()  # the fourth start waits until the first leaves the window
    assert clock.sleeps == [40]


def test_rate_limiter_is_shared_by_threads():
    class Blocked(Exception):
        pass

    def refuse(_seconds):
        raise Blocked

    limiter = RateLimiter(5, clock=lambda: 0.0, sleep=refuse)
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def worker():
        barrier.wait()
        try:
            limiter.acquire()
            result = "ran"
        except Blocked:
            result = "waited"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ran") == 5 and outcomes.count("waited") == 15


def test_a_429_holds_back_other_threads_too(clock):
    limiter = RateLimiter(180, clock=clock.monotonic, sleep=clock.sleep)
    limiter.pause(30)
    limiter.acquire()
    assert clock.sleeps == [30]


# --- creates are never blindly re-posted ---------------------------------------------------------------------


def test_create_after_5xx_is_an_unknown_outcome(fake_shortcut, shortcut):
    fake_shortcut.inject("createStory", Fault.process_then_status(500))
    with pytest.raises(UnknownOutcome) as error:
        shortcut.create_story(card(fake_shortcut))
    assert error.value.maybe_in_flight is False and error.value.status == 500
    assert len(fake_shortcut.calls("createStory")) == 1
    assert len(fake_shortcut.stories) == 1  # it did happen; only a lookup can tell


def test_create_dropped_connection_is_an_unknown_outcome(fake_shortcut, shortcut):
    fake_shortcut.inject("createStory", Fault.process_then_drop())
    with pytest.raises(UnknownOutcome) as error:
        shortcut.create_story(card(fake_shortcut))
    assert error.value.maybe_in_flight is False
    assert len(fake_shortcut.calls("createStory")) == 1


def test_create_timeout_is_an_unknown_outcome_maybe_in_flight(fake_shortcut, shortcut):
    fake_shortcut.inject("createStory", Fault.process_then_delay(1.0))
    with pytest.raises(UnknownOutcome) as error:
        shortcut.create_story(card(fake_shortcut))
    assert error.value.maybe_in_flight is True
    assert len(fake_shortcut.calls("createStory")) == 1


def test_create_that_never_connected_is_retried(make_client, clock, fake_shortcut):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    client = make_client()
    client.base_url = f"http://127.0.0.1:{closed_port}/api/v3"
    with pytest.raises(Unavailable):
        client.create_story(card(fake_shortcut))
    assert len(clock.sleeps) == 3  # refused connections cannot have created anything: retried


# --- create_story_once: exactly one story per external_id, whatever fails -----------------------------------

CREATE_FAULTS = {
    "none": [],
    "500-before-processing": [Fault.status_code(500)],
    "503-once": [Fault.status_code(503)],
    "500-after-processing": [Fault.process_then_status(500)],
    "drop-before-processing": [Fault.drop()],
    "create-then-drop": [Fault.process_then_drop()],
    "create-then-timeout": [Fault.process_then_delay(1.0)],
    "429-retry-after": [Fault.rate_limited(3)],
    "429-no-header": [Fault.rate_limited()],
    "two-failures": [Fault.status_code(500), Fault.process_then_drop()],
}


@pytest.mark.parametrize("faults", CREATE_FAULTS.values(), ids=CREATE_FAULTS.keys())
def test_create_story_once_makes_exactly_one_story(fake_shortcut, shortcut, faults):
    fake_shortcut.inject("createStory", *faults)
    result = create_story_once(shortcut, card(fake_shortcut))
    [story] = fake_shortcut.stories_with_external_id("incidents:action-item:42")
    assert result.id == story["id"]
    assert result.created is (not any(f.kind.startswith("process_then") for f in faults))

    again = create_story_once(shortcut, card(fake_shortcut))  # the job rerun after a crash before its commit
    assert again.id == story["id"] and again.created is False
    assert len(fake_shortcut.stories) == 1


def test_slow_create_not_yet_visible_is_left_to_the_job_retry(fake_shortcut, shortcut):
    fake_shortcut.inject("createStory", Fault.slow(1.0))  # still working when the client gives up
    with pytest.raises(UnknownOutcome) as error:
        create_story_once(shortcut, card(fake_shortcut))
    assert error.value.maybe_in_flight is True
    assert len(fake_shortcut.calls("createStory")) == 1  # no second POST while the first may land

    deadline = time.monotonic() + 10
    while not fake_shortcut.stories and time.monotonic() < deadline:
        time.sleep(0.02)  # wait for the slow request to land, as the job's retry delay would
    result = create_story_once(shortcut, card(fake_shortcut))
    assert result.created is False
    assert len(fake_shortcut.stories_with_external_id("incidents:action-item:42")) == 1


def test_create_story_once_gives_up_after_its_attempts(fake_shortcut, shortcut):
    fake_shortcut.inject("createStory", *[Fault.status_code(500)] * 3)
    with pytest.raises(UnknownOutcome):
        create_story_once(shortcut, card(fake_shortcut), attempts=3)
    assert fake_shortcut.stories == {}
    assert create_story_once(shortcut, card(fake_shortcut)).created is True


def test_create_story_once_adopts_the_oldest_duplicate(fake_shortcut, shortcut):
    first = shortcut.create_story(card(fake_shortcut))
    shortcut.create_story(card(fake_shortcut))  # made by hand, or by an older buggy version
    assert create_story_once(shortcut, card(fake_shortcut)).id == first["id"]


def test_create_story_once_needs_an_external_id(fake_shortcut, shortcut):
    params = card(fake_shortcut)
    del params["external_id"]
    with pytest.raises(ValueError, match="external_id"):
        create_story_once(shortcut, params)


# --- circuit breaker ---------------------------------------------------------------------------------------


def test_circuit_opens_after_repeated_failures_and_closes_after_a_good_trial(fake_shortcut, make_client, clock):
    breaker = CircuitBreaker(threshold=3, cooldown=60, clock=clock.monotonic)
    client = make_client(breaker=breaker, max_retries=0)
    for _ in range(3):
        fake_shortcut.inject("listWorkflows", Fault.status_code(500))
        with pytest.raises(Unavailable):
            client.list_workflows()
    assert breaker.state().state == "open" and breaker.state().last_error == "HTTP 500"

    with pytest.raises(CircuitOpen) as error:
        client.list_workflows()
    assert len(fake_shortcut.calls("listWorkflows")) == 3  # refused without calling Shortcut
    assert error.value.retry_at is not None

    clock.now += 61
    assert breaker.state().state == "half-open"
    fake_shortcut.inject("listWorkflows", Fault.status_code(500))
    with pytest.raises(Unavailable):
        client.list_workflows()  # the trial failed: open again at once
    assert breaker.state().state == "open"

    clock.now += 61
    assert client.list_workflows()
    assert breaker.state().state == "closed" and breaker.state().failures == 0


def test_client_errors_do_not_open_the_circuit(fake_shortcut, make_client, clock):
    breaker = CircuitBreaker(threshold=2, cooldown=60, clock=clock.monotonic)
    client = make_client(breaker=breaker)
    for _ in range(3):
        with pytest.raises(NotFound):
            client.get_story(1)
    assert breaker.state().state == "closed"


# --- configuration -----------------------------------------------------------------------------------------


def test_client_from_config_shares_guards_per_workspace(fake_shortcut):
    config = {"SHORTCUT_API_URL": fake_shortcut.url, "SHORTCUT_API_TOKEN": fake_shortcut.token,
              "SHORTCUT_TIMEOUT": 0.3, "SHORTCUT_CIRCUIT_THRESHOLD": 1}
    one, two = client_from_config(config), client_from_config(config)
    try:
        assert one.limiter is two.limiter and one.breaker is two.breaker
        assert one.timeout == 0.3
        assert circuit_state(config).state == "closed"
        one.breaker.failure("boom")
        assert circuit_state(config).state == "open"
        one.breaker.success()
        assert two.get_current_member()["id"] == fake_shortcut.member_id
    finally:
        one.close()
        two.close()


def test_not_configured_without_token():
    with pytest.raises(NotConfigured):
        client_from_config({"SHORTCUT_API_TOKEN": ""})
    assert circuit_state({}) is None


def test_default_url_is_shortcut(app):
    assert app.config["SHORTCUT_API_URL"] == "https://api.app.shortcut.com/api/v3"
    client = client_from_config(app.config | {"SHORTCUT_API_TOKEN": "t"})
    assert client.base_url == "https://api.app.shortcut.com/api/v3"
    assert client.session.headers["Shortcut-Token"] == "t"
    client.close()


def test_every_attempt_is_counted_by_outcome_for_metrics(fake_shortcut, shortcut, clock):
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("incidents_outbound_calls_total",
                                         {"service": "shortcut", "outcome": outcome}) or 0

    before = {o: count(o) for o in ("ok", "rate_limited", "error", "rejected")}
    fake_shortcut.inject("getStory", Fault.status_code(503), Fault.rate_limited(1))
    story = shortcut.create_story(card(fake_shortcut))
    assert shortcut.get_story(story["id"])["id"] == story["id"]  # a 503, a 429, then ok
    with pytest.raises(NotFound):
        shortcut.get_story(987654321)
    assert {o: count(o) - before[o] for o in before} == {"ok": 2, "rate_limited": 1, "error": 1, "rejected": 1}


# --- redirects: the token never follows one ------------------------------------------------------------------


@pytest.mark.parametrize(("operation", "call"), [
    ("getStory", lambda c: c.get_story(1)),
    ("queryStories", lambda c: c.search_stories_by_external_id("incidents:action-item:1")),
    ("createStory", lambda c: c.create_story({"name": "x", "external_id": "x", "workflow_state_id": 1})),
])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_and_the_token_never_reaches_its_target(fake_shortcut, shortcut, operation, call,
                                                                       status):
    elsewhere = Listener()
    try:
        fake_shortcut.inject(operation, Fault.status_code(status, Location=f"http://127.0.0.1:{elsewhere.port}/steal"))
        with pytest.raises(Redirected) as err:
            call(shortcut)
        assert err.value.status == status and f"127.0.0.1:{elsewhere.port}" in str(err.value)
    finally:
        elsewhere.close()
    assert elsewhere.connections == 0 and fake_shortcut.token.encode() not in elsewhere.received
    fake_shortcut.requests.clear()  # the injected answers, not our requests, are what the spec would not allow
