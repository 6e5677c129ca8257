"""Shortcut webhook: signatures and event parsing (every dorametrix capture, hand-written events, junk)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.tracker.webhook import (
    MalformedEvent,
    ShortcutEvent,
    parse_event,
    sign,
    signature_from_headers,
    verify_signature,
)
from tests.tracker.conftest import WEBHOOK_SAMPLES

SECRET = "s3cret-from-settings"
CHANGED_AT = datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)


# --- signatures ------------------------------------------------------------------------------------------------


def test_signature_is_hex_hmac_sha256_of_the_raw_body():
    body = b'{"id":"e1","changed_at":"2026-11-20T10:00:00Z","actions":[]}'
    signature = sign(SECRET, body)
    assert len(signature) == 64 and int(signature, 16) >= 0
    assert verify_signature(SECRET, body, signature)
    assert verify_signature(SECRET, body, signature.upper() + "\n")  # hex case and stray whitespace


@pytest.mark.parametrize(("secret", "body", "header"), [
    ("other-secret", b"{}", sign(SECRET, b"{}")),
    (SECRET, b"{} ", sign(SECRET, b"{}")),  # the raw bytes count, not the parsed JSON
    (SECRET, b"{}", None),
    (SECRET, b"{}", ""),
    ("", b"{}", sign("", b"{}")),  # no secret configured: nothing verifies
    (SECRET, b"{}", "sha256=" + sign(SECRET, b"{}")),
    (SECRET, b"{}", "é" * 64),
    (SECRET, b"{}", sign(SECRET, b"{}")[:-1]),
])
def test_bad_signatures_are_refused(secret, body, header):
    assert verify_signature(secret, body, header) is False


def test_legacy_clubhouse_header_is_accepted():
    assert signature_from_headers({"Payload-Signature": "new", "Clubhouse-Signature": "old"}) == "new"
    assert signature_from_headers({"Clubhouse-Signature": "old"}) == "old"
    assert signature_from_headers({}) is None


# --- the captured samples ------------------------------------------------------------------------------------


def sample(name: str) -> dict:
    path = WEBHOOK_SAMPLES / f"{name}.json"
    if not path.exists():
        pytest.skip(f"webhook sample {path} not found")
    return json.loads(path.read_text())


def only_story(event: ShortcutEvent):
    [story] = event.stories
    return story


def test_sample_push_event_has_no_story():
    event = parse_event(sample("push_event"))
    assert event.id == "641a4f15-9f41-4898-9577-5b9d2c9fc7a2"
    assert event.changed_at == datetime(2023, 3, 22, 0, 43, 1, 690000, tzinfo=UTC)
    assert event.member_id is None and event.stories == ()


def test_sample_bulk_update_archives_two_stories():
    event = parse_event(sample("story_bulk_update"))
    assert event.primary_id is None and event.bulk
    assert [(s.story_id, s.archived, s.closed) for s in event.stories] == [(3354, True, True), (3352, True, True)]


@pytest.mark.parametrize("name", ["story_create", "story_create_with_label"])
def test_sample_create_lands_in_backlog_without_transitions(name):
    event = parse_event(sample(name))
    story = only_story(event)
    assert (story.story_id, story.action, event.primary_id) == (16927, "create", 16927)
    assert story.workflow_state_id == 500000580 and story.workflow_state_type == "backlog"
    assert (story.completed, story.started, story.archived, story.moved_back, story.reopened) == (
        None, None, None, False, False)
    assert story.app_url == "https://app.shortcut.com/ehawk/story/16927"


def test_sample_delete_skips_the_comment():
    story = only_story(parse_event(sample("story_delete")))
    assert (story.story_id, story.deleted, story.closed, story.completed) == (3352, True, True, None)


@pytest.mark.parametrize("name", ["story_update", "story_update_label_added", "story_update_label_removed"])
def test_sample_updates_without_a_transition(name):
    story = only_story(parse_event(sample(name)))
    assert story.story_id == 16927 and story.action == "update"
    assert (story.completed, story.started, story.archived, story.deleted, story.reopened, story.closed) == (
        None, None, None, False, False, False)


def test_sample_completed():
    event = parse_event(sample("story_update_completed"))
    story = only_story(event)
    assert story.completed is True
    assert story.completed_at == event.changed_at  # no completed_at in the changes: the event time


def test_sample_started_and_stopped():
    assert only_story(parse_event(sample("story_update_started"))).started is True
    stopped = only_story(parse_event(sample("story_update_stopped")))
    assert stopped.started is False and stopped.reopened


def test_sample_archived():
    story = only_story(parse_event(sample("story_update_archived")))
    assert story.archived is True and story.closed and story.completed is None


# --- hand-written events (shapes from CONTRACTS.md part D) ---------------------------------------------------

STATES = [
    {"id": 10, "entity_type": "workflow-state", "name": "Backlog", "type": "backlog"},
    {"id": 11, "entity_type": "workflow-state", "name": "To Do", "type": "unstarted"},
    {"id": 12, "entity_type": "workflow-state", "name": "Doing", "type": "started"},
    {"id": 13, "entity_type": "workflow-state", "name": "Done", "type": "Done"},  # case is not trusted
    {"id": "0b9c2a3e-0000-4000-8000-000000000001", "entity_type": "group", "name": "SRE"},  # UUID ids exist
]


def event(*actions, references=STATES, **envelope) -> dict:
    return {"id": "evt-1", "changed_at": "2026-11-20T10:00:00.123Z", "version": "v1", "primary_id": 77,
            "member_id": "m-1", "actions": list(actions), "references": references} | envelope


def update(story_id: int = 77, **changes) -> dict:
    return {"id": story_id, "entity_type": "story", "action": "update", "name": "Fix it", "changes": changes}


def move(old: int, new: int) -> dict:
    return {"workflow_state_id": {"old": old, "new": new}}


def test_moving_to_a_done_state_completes():
    story = only_story(parse_event(event(update(**move(12, 13)))))
    assert story.completed is True and story.completed_at == CHANGED_AT
    assert story.workflow_state_type == "done"


def test_completed_at_from_the_changes_wins():
    story = only_story(parse_event(event(update(completed={"new": True, "old": False},
                                                completed_at={"new": "2026-11-19T08:00:00Z"}))))
    assert story.completed_at == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)


def test_moving_out_of_done_reopens():
    story = only_story(parse_event(event(update(**move(13, 12)))))
    assert story.completed is False and story.started is True and story.reopened


def test_uncompleted_flag_reopens():
    story = only_story(parse_event(event(update(completed={"new": False, "old": True}))))
    assert story.completed is False and story.reopened and story.completed_at is None


@pytest.mark.parametrize("target", [10, 11])
def test_moving_back_to_an_unstarted_state(target):
    story = only_story(parse_event(event(update(started={"new": False, "old": True}, **move(12, target)))))
    assert story.moved_back and story.reopened and story.completed is None


def test_move_without_references_is_only_a_state_change():
    story = only_story(parse_event(event(update(**move(12, 13)), references=[])))
    assert story.workflow_state_id == 13 and story.workflow_state_type is None
    assert story.completed is None and not story.reopened


def test_started_with_time():
    story = only_story(parse_event(event(update(started={"new": True}, started_at={"new": "2026-11-20T09:00:00Z"}))))
    assert story.started is True and story.started_at == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_other_entities_are_ignored():
    payload = event(
        {"id": 5, "entity_type": "story-comment", "action": "create", "text": "hi"},
        {"id": 6, "entity_type": "epic", "action": "update", "changes": {"state": {"new": "done"}}},
        {"id": 7, "entity_type": "pull-request", "action": "open"},
        {"id": "weird", "entity_type": "something-new", "action": "whatever", "changes": "not even a dict"},
        update(78, archived={"new": False, "old": True}),
    )
    assert [(s.story_id, s.archived, s.closed) for s in parse_event(payload).stories] == [(78, False, False)]


def test_bulk_event_with_several_stories():
    payload = event(update(1, **move(11, 13)), update(2, **move(11, 13)))
    del payload["primary_id"]
    parsed = parse_event(payload)
    assert parsed.bulk and [s.completed for s in parsed.stories] == [True, True]


def test_event_with_only_envelope_is_fine():
    parsed = parse_event({"id": "e", "changed_at": "2026-11-20T10:00:00Z", "actions": []})
    assert parsed.stories == () and parsed.primary_id is None and parsed.member_id is None


@pytest.mark.parametrize("payload", [
    None, [], "text", {},
    {"changed_at": "2026-11-20T10:00:00Z", "actions": []},
    {"id": "", "changed_at": "2026-11-20T10:00:00Z", "actions": []},
    {"id": "e", "actions": []},
    {"id": "e", "changed_at": "yesterday", "actions": []},
    {"id": "e", "changed_at": 1700000000, "actions": []},
    {"id": "e", "changed_at": "0001-01-01T00:00:00+01:00", "actions": []},  # before year 1 in UTC
    {"id": "e", "changed_at": "2026-11-20T10:00:00Z"},
    {"id": "e", "changed_at": "2026-11-20T10:00:00Z", "actions": {}},
    event("not an object"),
    event({"id": "77", "entity_type": "story", "action": "update", "changes": {}}),
    event({"id": True, "entity_type": "story", "action": "update", "changes": {}}),
    event({"id": 77, "entity_type": "story", "changes": {}}),
    event(update(completed={"new": "yes"})),
    event(update(completed=True)),
    event({"id": 77, "entity_type": "story", "action": "update", "changes": []}),
    event(update(completed_at={"new": "soon"})),
    event(update(workflow_state_id={"new": "13"})),
    event(update(), references={}),
    event(update(), references=["x"]),
    event(update(), primary_id="77"),
])
def test_malformed_events(payload):
    with pytest.raises(MalformedEvent):
        parse_event(payload)


# --- junk never escapes as anything but MalformedEvent -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["id", "changed_at", "actions", "references", "primary_id", "member_id", "entity_type",
                        "action", "changes", "new", "old", "completed", "completed_at", "started", "started_at",
                        "archived", "workflow_state_id", "type", "name", "app_url"])
values = st.one_of(json_values, st.sampled_from([
    "story", "workflow-state", "update", "create", "delete", "done", "started", "unstarted",
    "2026-11-20T10:00:00Z", "0001-01-01T00:00+01:00"]))
shaped = st.recursive(values, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(keys, children, max_size=6), max_leaves=40)


@settings(max_examples=200, deadline=None)
@given(st.one_of(json_values, shaped))
def test_parse_event_raises_only_malformed_event(payload):
    with contextlib.suppress(MalformedEvent):
        parse_event(payload)


@settings(max_examples=200, deadline=None)
@given(
    actions=st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(), values), "entity_type": values,
                                            "action": values},
                                           optional={"changes": st.dictionaries(keys, shaped, max_size=4),
                                                     "workflow_state_id": values}), max_size=3),
    references=st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(0, 20), values), "entity_type": values},
                                              optional={"type": values}), max_size=3),
)
def test_parse_event_on_near_valid_events(actions, references):
    try:
        parsed = parse_event({"id": "e", "changed_at": "2026-11-20T10:00:00Z", "actions": actions,
                              "references": references})
    except MalformedEvent:
        return
    assert all(isinstance(story.story_id, int) for story in parsed.stories)
