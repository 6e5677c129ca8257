"""The Slack app end to end: signed requests built from the real samples hit the real endpoints, jobs call a fake
Web API that checks every call against the official spec."""

from __future__ import annotations

import copy
import json

import pytest
import sqlalchemy as sa

from incidents.audit.models import AuditEntry
from incidents.extensions import db
from incidents.incident.models import Incident, Status, TimelineEntry
from incidents.slack import jobs as slack_jobs
from incidents.slack.models import OutboxState, SlackChannel, SlackInbound, SlackOutbox
from tests.conftest import login, post_form
from tests.factories import make_incident, make_user
from tests.slack.conftest import ANNOUNCE, sample


def _responder(fake, slack_id="W111", email="rita@example.com", role="responder"):
    user = make_user(email=email, name=f"{role.title()} {slack_id}", role=role)
    fake.users[slack_id] = email
    return user


def _declare(slack, fake, title="Checkout is down"):
    """The declare flow: /incident opens the modal, submitting it declares; returns the new incident."""
    resp = slack.command(f"declare {title}")
    assert resp.status_code == 200
    (view,) = fake.views
    assert view["callback_id"] == "declare"
    title_input = next(b for b in view["blocks"] if b["block_id"] == "title")
    assert title_input["element"]["initial_value"] == title
    resp, _ = slack.submit("declare", {"title": title, "severity": "SEV1", "summary": "Payments fail"},
                           {"channel": "C111"})
    assert resp.status_code == 200
    db.session.expire_all()
    return db.session.scalar(sa.select(Incident).where(Incident.title == title))


def test_declare_from_slack_makes_one_channel_invites_pins_and_announces(slack, fake_slack):
    _responder(fake_slack)
    incident = _declare(slack, fake_slack)
    assert incident is not None and incident.severity.value == "SEV1"
    assert incident.created_by.email == "rita@example.com" and incident.commander.email == "rita@example.com"

    (create,) = fake_slack.called("conversations.create")
    assert create["name"] == f"inc-{incident.id}-checkout-is-down"
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    channel = fake_slack.channels[link.channel_id]
    assert channel["members"] == {"W111"}  # declarer and commander: the same person, invited once
    assert incident.ref in channel["topic"]
    summary = fake_slack.summary(link.channel_id)
    assert summary is not None and summary["ts"] == link.summary_ts
    assert "SEV1" in summary["text"] and "triggered" in summary["text"]
    (announcement,) = fake_slack.messages[ANNOUNCE]
    assert f"<#{link.channel_id}>" in announcement["text"] and f"/incidents/{incident.ref}" in announcement["text"]
    # Running the setup again (a duplicate job) does nothing more.
    calls = len(fake_slack.calls)
    slack_jobs.setup_channel.run_now(incident.id)
    assert len(fake_slack.calls) == calls
    states = set(db.session.scalars(sa.select(SlackOutbox.state).where(SlackOutbox.incident_id == incident.id)))
    assert states == {OutboxState.DONE}


def test_buttons_move_the_incident_through_every_status_and_the_summary_follows(slack, fake_slack):
    _responder(fake_slack)
    incident = _declare(slack, fake_slack)
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    for action_id, status in (("ack", "acknowledged"), ("investigate", "investigating"), ("mitigate", "mitigated")):
        resp, _ = slack.click(action_id, incident.id, channel=link.channel_id)
        assert resp.status_code == 200
        db.session.expire_all()
        assert db.session.get(Incident, incident.id).status.value == status
        assert status in fake_slack.summary(link.channel_id)["text"]
    # Resolve asks for the resolution in a modal; submitting it resolves.
    resp, _ = slack.click("resolve", incident.id, channel=link.channel_id)
    assert resp.status_code == 200 and fake_slack.views[-1]["callback_id"] == "resolve"
    resp, _ = slack.submit("resolve", {"resolution": ""}, {"incident_id": incident.id, "channel": link.channel_id})
    assert resp.json == {"response_action": "errors", "errors": {"resolution": "Required."}}
    resp, _ = slack.submit("resolve", {"resolution": "Rolled back the deploy"},
                           {"incident_id": incident.id, "channel": link.channel_id})
    db.session.expire_all()
    resolved = db.session.get(Incident, incident.id)
    assert resolved.status == Status.RESOLVED and resolved.resolution == "Rolled back the deploy"
    summary = fake_slack.summary(link.channel_id)
    assert "resolved" in summary["text"]
    assert any("Rolled back the deploy" in b.get("text", {}).get("text", "") for b in summary["blocks"])
    # Post update and assign-me work from the same message.
    slack.click("post_update", incident.id, channel=link.channel_id)
    assert fake_slack.views[-1]["callback_id"] == "update"
    slack.submit("update", {"impact": "None now", "actions": "Watching"},
                 {"incident_id": incident.id, "channel": link.channel_id})
    assert any("Watching" in b.get("text", {}).get("text", "")
               for b in fake_slack.summary(link.channel_id)["blocks"])


def test_a_status_change_in_the_web_ui_updates_the_pinned_summary(client, slack, fake_slack):
    user = _responder(fake_slack)
    incident = _declare(slack, fake_slack)
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    login(client, user)
    resp = post_form(client, f"/incidents/{incident.ref}/status", {"status": "acknowledged"})
    assert resp.status_code == 302
    assert "acknowledged" in fake_slack.summary(link.channel_id)["text"]
    assert fake_slack.called("chat.update")


def test_only_responders_may_act_others_are_told_privately(slack, fake_slack):
    _responder(fake_slack)
    _responder(fake_slack, slack_id="WVIEW", email="vic@example.com", role="viewer")
    incident = _declare(slack, fake_slack)
    channel = db.session.scalar(sa.select(SlackChannel.channel_id).where(SlackChannel.incident_id == incident.id))
    resp, payload = slack.click("ack", incident.id, user="WVIEW", channel=channel)
    assert resp.status_code == 200
    db.session.expire_all()
    assert db.session.get(Incident, incident.id).status == Status.TRIGGERED
    # Told through the click's response_url: Slack's private answer, which works where the bot is no member.
    (told,) = [e for e in fake_slack.ephemeral if e.get("response_url") == payload["response_url"]]
    assert "Only responders" in told["text"] and told["response_type"] == "ephemeral"
    # An unknown Slack user (no e-mail match) is told the same.
    _, payload = slack.click("ack", incident.id, user="WSTRANGER", channel=channel)
    assert db.session.get(Incident, incident.id).status == Status.TRIGGERED
    assert fake_slack.ephemeral[-1]["response_url"] == payload["response_url"]
    assert not fake_slack.called("chat.postEphemeral")


@pytest.mark.parametrize("elsewhere", [False, True])
def test_without_a_usable_response_url_the_answer_is_a_chat_ephemeral(slack, fake_slack, elsewhere):
    """No response_url, or one on another host than Slack's hooks (never called): chat.postEphemeral instead."""
    from tests.webhook_server import WebhookServer

    other = WebhookServer()  # a listening server the app must not call
    response_url = other.url("/hook") if elsewhere else None
    _responder(fake_slack)
    _responder(fake_slack, slack_id="WVIEW", email="vic@example.com", role="viewer")
    incident = _declare(slack, fake_slack)
    channel = db.session.scalar(sa.select(SlackChannel.channel_id).where(SlackChannel.incident_id == incident.id))
    payload = copy.deepcopy(sample("bolt_interactivity_block_actions.json"))
    payload["user"]["id"], payload["channel"]["id"] = "WVIEW", channel
    payload["actions"][0].update(action_id="ack", value=str(incident.id), action_ts="1596530385.999999")
    payload["response_url"] = response_url
    assert slack.interaction(payload).status_code == 200
    (told,) = fake_slack.called("chat.postEphemeral")
    assert told["user"] == "WVIEW" and "Only responders" in told["text"]
    assert other.to("/hook") == []
    other.close()


def test_worker_stopped_requests_are_acknowledged_and_only_views_open_goes_out(app, slack, fake_slack):
    from incidents.jobs import get_queue

    _responder(fake_slack)
    incident = make_incident(title="Queue stopped")
    huey = get_queue().huey
    huey.immediate = False  # no worker: jobs wait in the queue
    fake_slack.calls.clear()  # the incident's own channel setup ran before
    try:
        before = huey.pending_count()
        assert slack.command("declare Something").status_code == 200
        resp, _ = slack.click("ack", incident.id)
        assert resp.status_code == 200
        channel = db.session.scalar(sa.select(SlackChannel.channel_id).where(SlackChannel.incident_id == incident.id))
        assert slack.command("note hello", channel=channel).status_code == 200
        resp, _ = slack.submit("declare", {"title": "From modal", "severity": "SEV2"}, {"channel": "C111"})
        assert resp.status_code == 200
        assert {c.method for c in fake_slack.calls} == {"views.open"}
        assert huey.pending_count() - before == 3  # the click, the note command and the submission
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SlackInbound)) == 4
    finally:
        huey.flush()
        huey.immediate = True
    db.session.expire_all()
    assert db.session.get(Incident, incident.id).status == Status.TRIGGERED


def test_channel_created_once_when_the_answer_is_lost(slack, fake_slack):
    """The worker dies (here: the connection drops) after Slack made the channel and before we recorded it: the
    retry finds the channel an earlier attempt of ours created instead of making another."""
    _responder(fake_slack)
    fake_slack.fail("conversations.create", drop=True)
    incident = _declare(slack, fake_slack)
    assert db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id)) is None
    row = db.session.scalar(sa.select(SlackOutbox).where(SlackOutbox.key == f"incident:{incident.id}:create"))
    assert row.state == OutboxState.SENDING
    from incidents.jobs import get_queue

    assert [name for name, _ids, _e in get_queue().failures] == [slack_jobs.setup_channel.name]
    slack_jobs.setup_channel.run_now(incident.id)  # the retry
    ours = [c for c in fake_slack.channels.values() if c["name"].startswith(f"inc-{incident.id}-")]
    assert len(ours) == 1
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    assert link.channel_id == ours[0]["id"] and fake_slack.summary(link.channel_id) is not None


def test_a_strangers_channel_with_the_name_is_not_taken_over(app, slack, fake_slack):
    _responder(fake_slack)
    token, app.config["SLACK_BOT_TOKEN"] = app.config["SLACK_BOT_TOKEN"], ""  # declared while the app was off
    incident = make_incident(title="Name clash")
    app.config["SLACK_BOT_TOKEN"] = token
    fake_slack.add_channel(f"inc-{incident.id}-name-clash", creator="USOMEONE")
    slack_jobs.setup_channel.run_now(incident.id)
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    assert link.name == f"inc-{incident.id}-name-clash-2"


def test_rate_limited_channel_creation_waits_and_carries_on(slack, fake_slack, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    _responder(fake_slack)
    fake_slack.fail("conversations.create", status=429, retry_after=1)
    incident = _declare(slack, fake_slack)
    assert len(fake_slack.called("conversations.create")) == 2
    assert db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id)) is not None


def test_commands_inside_an_incident_channel(slack, fake_slack):
    rita = _responder(fake_slack)
    _responder(fake_slack, slack_id="W222", email="bob@example.com")
    incident = _declare(slack, fake_slack)
    channel = db.session.scalar(sa.select(SlackChannel.channel_id).where(SlackChannel.incident_id == incident.id))
    assert slack.command("sev SEV2", channel=channel).status_code == 200
    assert slack.command("note Disk full on db-1", channel=channel).status_code == 200
    assert slack.command("commander <@W222|bob>", channel=channel).status_code == 200
    slack.command("status", channel=channel)
    db.session.expire_all()
    incident = db.session.get(Incident, incident.id)
    assert incident.severity.value == "SEV2" and incident.commander.email == "bob@example.com"
    assert any(e.body == "Disk full on db-1" for e in incident.timeline)
    assert any(incident.ref in e["text"] for e in fake_slack.ephemeral)
    assert "SEV2" in fake_slack.summary(channel)["text"]
    # The audit log names the Slack user's account, not the job that ran the command.
    row = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.kind == "incident.updated",
                                                         AuditEntry.object_id == incident.id)).one()
    assert (row.actor_kind, row.actor_id, row.changes["severity"][1]) == ("user", rita.id, "SEV2")
    # update and resolve open their modals at once
    slack.command("resolve", channel=channel)
    assert fake_slack.views[-1]["callback_id"] == "resolve"
    slack.command("update", channel=channel)
    assert fake_slack.views[-1]["callback_id"] == "update"
    # Outside an incident channel they explain themselves.
    resp = slack.command("sev SEV1", channel="C111")
    assert resp.json["response_type"] == "ephemeral" and "incident's channel" in resp.json["text"]


def test_pushpin_reaction_makes_one_timeline_entry_however_often_delivered(slack, fake_slack):
    _responder(fake_slack)
    _responder(fake_slack, slack_id="W333", email="carl@example.com")
    incident = _declare(slack, fake_slack)
    channel = db.session.scalar(sa.select(SlackChannel.channel_id).where(SlackChannel.incident_id == incident.id))
    ts = fake_slack.post(channel, "Found it: the cache TTL is 0", "W333")
    event = {"type": "reaction_added", "user": "W111", "reaction": "pushpin", "item_user": "W333",
             "item": {"type": "message", "channel": channel, "ts": ts}, "event_ts": "1700000001.000100"}
    for retry in (None, 1, 2):
        assert slack.event(event, "Ev0PIN1", retry=retry).status_code == 200
    entries = db.session.scalars(sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident.id,
                                                               TimelineEntry.text.like("Pinned from Slack%"))).all()
    assert len(entries) == 1
    entry = entries[0]
    assert entry.author.email == "carl@example.com" and "cache TTL" in entry.body
    assert entry.data["permalink"] in entry.body and entry.occurred_at.timestamp() == float(ts)
    removed = {**event, "type": "reaction_removed"}
    slack.event(removed, "Ev0PIN2")
    unpinned = db.session.scalars(sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident.id,
                                                                TimelineEntry.text.like("Unpinned%"))).all()
    assert len(unpinned) == 1
    # Other reactions are ignored.
    slack.event({**event, "reaction": "heart_eyes"}, "Ev0PIN3")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TimelineEntry).where(
        TimelineEntry.text.like("%in Slack%") | TimelineEntry.text.like("%from Slack%"))) == 2


def test_the_sweep_finishes_what_a_lost_job_left(slack, fake_slack):
    """A request stored but never processed (the queue lost its job) and a setup stopped mid-way are picked up."""
    from datetime import timedelta

    from incidents.database import utcnow

    _responder(fake_slack)
    fake_slack.fail("pins.add", error="internal_error")  # retryable: the setup stops before pinning
    incident = _declare(slack, fake_slack, title="Half set up")
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    assert fake_slack.summary(link.channel_id) is None
    note = {"channel_id": link.channel_id, "user_id": "W111", "text": "note picked up later",
            "trigger_id": "lost.1"}
    db.session.add(SlackInbound(key="command:lost.1", kind="command", payload=note,
                                received_at=utcnow() - timedelta(minutes=5)))
    db.session.execute(sa.update(SlackOutbox).values(updated_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    slack_jobs.sweep.run_now()
    db.session.expire_all()
    assert fake_slack.summary(link.channel_id) is not None
    assert any(e.body == "picked up later" for e in db.session.get(Incident, incident.id).timeline)
    assert db.session.scalar(sa.select(SlackInbound.processed_at).where(SlackInbound.key == "command:lost.1"))


def test_a_resumed_announcement_is_not_posted_twice(slack, fake_slack):
    """The worker dies after Slack took the announcement and before we recorded it: the retry finds it."""
    _responder(fake_slack)
    incident = _declare(slack, fake_slack)
    row = db.session.scalar(sa.select(SlackOutbox).where(SlackOutbox.key == f"incident:{incident.id}:announce"))
    row.state = OutboxState.SENDING
    db.session.commit()
    slack_jobs.setup_channel.run_now(incident.id)
    assert len(fake_slack.messages[ANNOUNCE]) == 1
    db.session.expire_all()
    assert db.session.get(SlackOutbox, row.id).state == OutboxState.DONE


def test_only_serious_alert_incidents_get_a_channel(app, slack, fake_slack):
    """A person's declaration always gets a channel; an incident an alert opened only at the configured severities."""
    quiet = make_incident(title="Disk 80%", severity="SEV4")  # nobody declared it: an alert's
    loud = make_incident(title="Checkout down", severity="SEV1")
    names = {c["name"] for c in fake_slack.channels.values()}
    assert f"inc-{loud.id}-checkout-down" in names
    assert not any(n.startswith(f"inc-{quiet.id}-") for n in names)


def test_the_summary_escapes_what_people_wrote_and_reads_durations_from_the_one_definition(slack, fake_slack):
    from incidents.formatting import format_duration
    from incidents.incident import services as incident_services
    from incidents.incident.durations import durations

    user = _responder(fake_slack)
    incident = _declare(slack, fake_slack)
    incident_services.post_status_update(db.session, incident, impact="<!channel> all <https://evil.example|EU>",
                                         actions="Rolling back & watching", by=user)
    db.session.commit()
    link = db.session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident.id))
    summary = json.dumps(fake_slack.summary(link.channel_id)["blocks"])
    assert "<!channel>" not in summary and "&lt;!channel&gt;" in summary and "&amp; watching" in summary
    incident_services.transition(db.session, incident, "resolved", by=user, resolution="Reverted <!here>")
    db.session.commit()
    summary = json.dumps(fake_slack.summary(link.channel_id)["blocks"])
    assert "<!here>" not in summary
    assert f"resolved after {format_duration(durations(incident).time_to_resolve)}" in summary
