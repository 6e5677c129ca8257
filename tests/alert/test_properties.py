"""Property tests: whatever arrives, parsers either read it or raise ParseError, and the endpoint answers
2xx or a clear 400, never a 500 (and never `failed`, which would mean a bug of ours)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from incidents.alert.sources import ParsedEvent, ParseError, parse
from incidents.alert.sources import opsgenie as og
from incidents.alert.sources import rollbar as rb
from tests.alert.conftest import make_integration, post

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
           | st.floats(allow_nan=False) | st.text(max_size=30))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=5), max_leaves=25)
weird_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "\ud800", "javascript:alert(1)", "https://rollbar.com/x", "P1", "p2", "error", "production", ""])
ids = st.integers(min_value=-5, max_value=10**40) | st.text(max_size=12) | st.booleans() | st.none()
stamps = st.integers(min_value=-(10**25), max_value=10**25) | st.floats(allow_nan=True, allow_infinity=True) | st.none()


def maybe(strategy):
    return strategy | json_values


occurrence = st.fixed_dictionaries({}, optional={
    "uuid": maybe(weird_text), "timestamp": maybe(stamps), "level": maybe(weird_text),
    "environment": maybe(weird_text), "metadata": maybe(st.fixed_dictionaries({"access_token": weird_text})),
    "body": maybe(st.fixed_dictionaries({}, optional={
        "trace": json_values, "trace_chain": st.lists(json_values, max_size=2), "message": json_values,
        "crash_report": json_values})),
})
rollbar_payloads = st.fixed_dictionaries({"event_name": maybe(st.sampled_from([*rb.EVENTS, "test", "nope"]))},
                                         optional={"data": maybe(st.fixed_dictionaries({}, optional={
    "item": maybe(st.fixed_dictionaries({}, optional={
        "id": ids, "title": maybe(weird_text), "level": maybe(st.integers(0, 60) | weird_text),
        "environment": maybe(weird_text), "last_occurrence": maybe(occurrence),
        "last_occurrence_timestamp": stamps})),
    "occurrence": maybe(occurrence), "url": maybe(weird_text), "occurrences": json_values,
    "trigger": json_values,
    "deploy": maybe(st.fixed_dictionaries({}, optional={
        "id": ids, "environment": maybe(weird_text), "revision": maybe(weird_text), "finish_time": stamps,
        "local_username": maybe(weird_text)})),
}))})
opsgenie_payloads = st.fixed_dictionaries({"action": maybe(st.sampled_from([*og.ACTIONS, "Custom"]))}, optional={
    "alert": maybe(st.fixed_dictionaries({}, optional={
        "alias": maybe(weird_text), "alertId": maybe(weird_text), "message": maybe(weird_text),
        "priority": maybe(st.integers(-3, 9) | weird_text), "createdAt": stamps, "updatedAt": stamps,
        "note": maybe(weird_text), "tinyId": json_values, "username": maybe(weird_text)})),
    "headers": json_values, "escalationNotify": json_values, "escalationName": json_values, "source": json_values,
})


def _check(event: ParsedEvent) -> None:
    for value in (event.fingerprint, event.external_id, event.title, event.description, event.severity,
                  event.environment, event.link, event.note, event.actor, event.reason, event.event):
        if value is not None:
            assert isinstance(value, str) and "\x00" not in value
            value.encode("utf-8")  # no lone surrogates: every database can store it
    assert event.fingerprint is None or 0 < len(event.fingerprint) <= 255
    assert len(event.title) <= 500 and len(event.event) <= 64
    assert event.occurred_at is None or (isinstance(event.occurred_at, datetime) and event.occurred_at.tzinfo)
    assert event.link is None or event.link.startswith(("http://", "https://"))


@settings(max_examples=400, deadline=None)
@given(source=st.sampled_from(["opsgenie", "rollbar"]), payload=json_values)
def test_parsers_on_arbitrary_json(source, payload):
    try:
        _check(parse(source, payload)[0])
    except ParseError as e:
        assert str(e)


@settings(max_examples=400, deadline=None)
@given(payload=rollbar_payloads)
def test_rollbar_parser_on_rollbar_like_payloads(payload):
    try:
        _check(parse("rollbar", payload)[0])
    except ParseError as e:
        assert str(e)


@settings(max_examples=400, deadline=None)
@given(payload=opsgenie_payloads)
def test_opsgenie_parser_on_opsgenie_like_payloads(payload):
    try:
        _check(parse("opsgenie", payload)[0])
    except ParseError as e:
        assert str(e)


@pytest.fixture
def tokens(app):
    return {"rollbar": make_integration("rollbar", "prop")[1], "opsgenie": make_integration("opsgenie", "prop")[1]}


def _assert_clear_answer(response) -> None:
    assert response.status_code in (200, 400), (response.status_code, response.get_data(as_text=True)[:500])
    body = response.get_json()
    assert body["outcome"] in ("processed", "ignored", "duplicate", "rejected")
    if response.status_code == 400:
        assert body["outcome"] == "rejected" and body["error"]["message"]


endpoint_settings = settings(max_examples=120, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@endpoint_settings
@given(data=st.data())
def test_endpoint_on_structured_payloads(client, tokens, data):
    source = data.draw(st.sampled_from(["rollbar", "opsgenie"]))
    payload = data.draw(rollbar_payloads if source == "rollbar" else opsgenie_payloads)
    _assert_clear_answer(post(client, source, json.dumps(payload), tokens[source]))


@endpoint_settings
@given(source=st.sampled_from(["rollbar", "opsgenie"]), body=st.binary(max_size=300) | st.text(max_size=300))
@example(source="rollbar", body=b"")
@example(source="rollbar", body=b"\x00\xff\xfe")
@example(source="opsgenie", body="null")
@example(source="rollbar", body="[" * 50_000 + "]" * 50_000)  # deeper than the JSON parser's recursion limit
@example(source="rollbar", body='{"event_name": "new_item", "data": {"item": {"id": ' + "9" * 5000 + "}}}")
@example(source="rollbar", body='{"event_name": "new_item", "data": {"item": {"id": 1e999, "level": NaN}}}')
@example(source="opsgenie", body='{"action": "Create", "alert": {"alias": "\\u0000\\ud800", "createdAt": 1e400}}')
@example(source="rollbar", body='\ufeff{"event_name": "test"}')
def test_endpoint_on_arbitrary_bodies(client, tokens, source, body):
    _assert_clear_answer(post(client, source, body, tokens[source]))
