"""Slack jobs: each stored request is processed here, the incident's channel is set up once, and the pinned
summary follows every change (after-commit subscribers of the incident events, registered in `init_app`)."""

from __future__ import annotations

import contextvars
import re
from datetime import timedelta
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from flask import Flask, current_app
from huey import crontab
from huey.exceptions import CancelExecution

from incidents import actor, events
from incidents.database import utcnow
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, IncidentRole
from incidents.jobs import enqueue_now, job, periodic
from incidents.notify.slack import escape
from incidents.slack import services
from incidents.slack.client import SlackClient, SlackError, client_from_config
from incidents.slack.models import OutboxState, SlackChannel, SlackInbound, SlackOutbox
from incidents.urls import public_base_url

NOT_ALLOWED = ("Only responders may do that. Ask an admin to give you the responder role in Incidents, with the "
               "same e-mail address as your Slack account.")
HELP = ("Usage: `/incident` or `/incident declare <title>` anywhere; in an incident channel: `/incident status`, "
        "`/incident sev SEV1`, `/incident note <text>`, `/incident commander @user`, `/incident update`, "
        "`/incident resolve`.")


def _client() -> SlackClient:
    return client_from_config(current_app.config)


# The response_url of the command or click being processed: Slack's way to answer its sender privately, which
# works in channels the bot is not in. Set by `process_inbound` for the job's duration.
_RESPONSE_URL: contextvars.ContextVar[str | None] = contextvars.ContextVar("slack_response_url", default=None)


def _response_url_allowed(url: str) -> bool:
    """Only Slack's own hooks host (or the configured Web API's host: a proxy, the tests' fake) is ever called."""
    parts, api = urlsplit(url), urlsplit(current_app.config.get("SLACK_API_URL") or "")
    return (parts.scheme == "https" and parts.hostname == "hooks.slack.com") or (
        bool(api.netloc) and (parts.scheme, parts.netloc) == (api.scheme, api.netloc))


def _respond(client: SlackClient, text: str) -> bool:
    """Answer through the response_url; False when there is none or it failed (the caller falls back)."""
    url = _RESPONSE_URL.get()
    if not url or not _response_url_allowed(url):
        return False
    try:
        resp = client.http.post(url, json={"response_type": "ephemeral", "replace_original": False, "text": text},
                                timeout=client.timeout)
    except requests.RequestException:
        return False
    return resp.status_code < 300


def _ephemeral(client: SlackClient, channel: str | None, user: str | None, text: str) -> None:
    """Tell one person privately: through the response_url when Slack gave one, else chat.postEphemeral; a channel
    the bot is not in cannot carry the latter, which is no reason to retry."""
    if _respond(client, text) or not channel or not user:
        return
    try:
        client.call("chat.postEphemeral", channel=channel, user=user, text=text)
    except SlackError as e:
        if e.error not in ("channel_not_found", "not_in_channel", "user_not_in_channel", "is_archived"):
            raise


# --- processing what Slack sent ---------------------------------------------------------------------------


@job(retries=5, retry_delay=10, backoff=2)
def process_inbound(inbound_id: int) -> None:
    """Act on one stored request once: its effect and `processed_at` commit together."""
    session = db.session
    row = session.get(SlackInbound, int(inbound_id))
    if row is None or row.processed_at is not None:
        return
    client = _client()
    token = _RESPONSE_URL.set(row.payload.get("response_url") if isinstance(row.payload, dict) else None)
    try:
        {"command": _command, "block_actions": _block_actions, "view_submission": _view_submission,
         "event": _event}[row.kind](client, row.payload)
    except DomainError as e:
        session.rollback()
        _ephemeral(client, *_where(row), e.message)
    finally:
        _RESPONSE_URL.reset(token)
    row = session.get(SlackInbound, int(inbound_id))
    row.processed_at = utcnow()
    session.commit()


def _where(row: SlackInbound) -> tuple[str | None, str | None]:
    """(channel, user) to answer privately in."""
    p = row.payload
    if row.kind == "command":
        return p.get("channel_id"), p.get("user_id")
    if row.kind == "view_submission":
        return services.metadata(p.get("view") or {}).get("channel"), (p.get("user") or {}).get("id")
    return (p.get("channel") or {}).get("id"), (p.get("user") or {}).get("id")


def _actor(client: SlackClient, slack_user: str, channel: str | None):
    """Our user behind a Slack user when they may act, else None (and they are told why)."""
    user = services.our_user(db.session, client, slack_user)
    if not services.may_act(user):
        _ephemeral(client, channel, slack_user, NOT_ALLOWED)
        return None
    actor.become(actor.person(user))  # what the job changes is audited as this person
    return user


def _command(client: SlackClient, p: dict) -> None:
    channel, slack_user = p.get("channel_id"), p.get("user_id")
    sub, _, rest = (p.get("text") or "").strip().partition(" ")
    sub, rest = sub.lower(), rest.strip()
    incident = services.incident_for_channel(db.session, channel or "")
    if incident is None:
        _ephemeral(client, channel, slack_user, "That works in an incident's channel. " + HELP)
        return
    if sub == "status":
        _ephemeral(client, channel, slack_user, services.summary_text(incident))
        return
    if sub not in ("sev", "note", "commander"):
        _ephemeral(client, channel, slack_user, HELP)
        return
    user = _actor(client, slack_user, channel)
    if user is None:
        return
    if sub == "sev":
        incidents.update_incident(db.session, incident, by=user, severity=rest.upper())
    elif sub == "note":
        incidents.add_note(db.session, incident, rest, by=user)
    else:
        # should_escape: a mention arrives as <@U123|name> (or <@U123>)
        match = re.fullmatch(r"<@([A-Z0-9]+)(?:\|[^>]*)?>", rest)
        holder = services.our_user(db.session, client, match.group(1)) if match else None
        if not services.may_act(holder):
            _ephemeral(client, channel, slack_user, "Name a responder with @: their Slack e-mail must be that "
                                                    "of a responder in Incidents.")
            return
        incidents.set_role(db.session, incident, IncidentRole.COMMANDER, holder.id, by=user)


def _block_actions(client: SlackClient, p: dict) -> None:
    channel, slack_user = (p.get("channel") or {}).get("id"), (p.get("user") or {}).get("id")
    action = (p.get("actions") or [{}])[0]
    action_id = action.get("action_id")
    if action_id not in services.ACTIONS or not str(action.get("value", "")).isdigit():
        return  # not one of our buttons
    incident = db.session.get(Incident, int(action["value"]))
    if incident is None:
        return
    user = _actor(client, slack_user, channel)
    if user is None:
        return
    if action_id in services.STATUS_ACTIONS:
        incidents.transition(db.session, incident, services.STATUS_ACTIONS[action_id], by=user)
    elif action_id == "commander":
        incidents.set_role(db.session, incident, IncidentRole.COMMANDER, user.id, by=user)


def _view_submission(client: SlackClient, p: dict) -> None:
    view = p.get("view") or {}
    meta, values = services.metadata(view), services.view_values(view)
    user = _actor(client, (p.get("user") or {}).get("id"), meta.get("channel"))
    if user is None:
        return
    callback = view.get("callback_id")
    if callback == services.DECLARE_VIEW:
        incidents.create_incident(db.session, title=values.get("title", ""), severity=values.get("severity") or "SEV3",
                                  summary=values.get("summary", ""), service_id=values.get("service") or None,
                                  created_by=user)
        return
    incident = db.session.get(Incident, int(meta.get("incident_id") or 0))
    if incident is None:
        return
    if callback == services.RESOLVE_VIEW:
        incidents.transition(db.session, incident, "resolved", by=user, resolution=values.get("resolution", ""))
    elif callback == services.UPDATE_VIEW:
        incidents.post_status_update(db.session, incident, impact=values.get("impact", ""),
                                     actions=values.get("actions", ""), by=user)


def _event(client: SlackClient, p: dict) -> None:
    ev = p.get("event") or {}
    if ev.get("type") not in ("reaction_added", "reaction_removed") or ev.get("reaction") != "pushpin":
        return
    item = ev.get("item") or {}
    channel, ts = item.get("channel") or "", item.get("ts") or ""
    incident = services.incident_for_channel(db.session, channel)
    if incident is None or item.get("type") != "message":
        return
    permalink = client.call("chat.getPermalink", channel=channel, message_ts=ts).get("permalink", "")
    author = services.our_user(db.session, client, ev["item_user"]) if ev.get("item_user") else None
    who = author.name if author else (ev.get("item_user") or "someone")
    data = {"slack_channel": channel, "slack_ts": ts, "permalink": permalink, "slack_user": ev.get("item_user"),
            "event_id": p.get("event_id")}
    if ev["type"] == "reaction_added":
        history = client.call("conversations.history", channel=channel, latest=ts, oldest=ts, inclusive=True,
                              limit=1)
        text = ((history.get("messages") or [{}])[0]).get("text", "")
        quoted = "\n".join(f"> {line}" for line in text.splitlines()) or "> (no text)"
        incidents.add_timeline_entry(db.session, incident, EntryKind.NOTE, f"Pinned from Slack: message by {who}",
                                     body=f"{quoted}\n\n[View in Slack]({permalink})", data=data, author=author,
                                     occurred_at=services.ts_time(ts))
    else:
        incidents.add_timeline_entry(db.session, incident, EntryKind.NOTE, f"Unpinned in Slack: message by {who}",
                                     body=f"[The message]({permalink}) lost its :pushpin:; what it added stays.",
                                     data=data)


# --- the incident's channel -------------------------------------------------------------------------------


@job(retries=8, retry_delay=15, backoff=2)
def setup_channel(incident_id: int) -> None:
    """Once per incident, each step keyed in the outbox so a retry resumes: create the channel (or find the one
    an interrupted attempt made), invite the declarer and commander, set the topic, post and pin the summary,
    announce it."""
    session, cfg = db.session, current_app.config
    incident = session.get(Incident, int(incident_id))
    if incident is None or not services.configured(cfg):
        return
    link = services.channel_of(session, incident.id)
    if link is None and not services.wants_channel(incident, cfg):
        return
    client, key, base = _client(), f"incident:{incident.id}:", public_base_url()
    if link is None:
        created = services.outbox_step(session, key + "create", incident.id, "conversations.create",
                                       lambda row: _create_channel(client, row.result),
                                       intent={"name": services.channel_name(incident)})
        if "channel_id" not in created:
            raise CancelExecution(retry=False)  # refused for good; the outbox row shows why
        link = SlackChannel(incident_id=incident.id, channel_id=created["channel_id"], name=created["name"])
        session.add(link)
        session.commit()
    channel = link.channel_id
    services.outbox_step(session, key + "invite", incident.id, "conversations.invite",
                         lambda row: _invite(client, channel, incident))
    url = services.incident_url(base, incident)
    topic = f"{incident.ref} · {incident.severity.value} · {url}"[:250]
    services.outbox_step(session, key + "topic", incident.id, "conversations.setTopic",
                         lambda row: _call(client, "conversations.setTopic", channel=channel, topic=topic))
    posted = services.outbox_step(session, key + "summary", incident.id, "chat.postMessage",
                                  lambda row: _post_summary(client, channel, incident, base, row.result))
    if posted.get("ts") and link.summary_ts != posted["ts"]:
        link.summary_ts = posted["ts"]
        session.commit()
    if link.summary_ts:
        services.outbox_step(session, key + "pin", incident.id, "pins.add",
                             lambda row: _pin(client, channel, link.summary_ts))
    if cfg.get("SLACK_ANNOUNCE_CHANNEL"):
        services.outbox_step(session, key + "announce", incident.id, "chat.postMessage",
                             lambda row: _announce(client, cfg["SLACK_ANNOUNCE_CHANNEL"], channel, incident, url,
                                                   row.result))


def _call(client: SlackClient, method: str, **args) -> dict:
    client.call(method, **args)
    return {}


def _create_channel(client: SlackClient, intent: dict) -> dict:
    """conversations.create; name_taken is ours only when an earlier attempt of this row may have made it and the
    channel's creator is our bot; a stranger's channel makes us try the name with a suffix."""
    base = intent["name"]
    for n in range(1, 6):
        name = base if n == 1 else f"{base[:76]}-{n}"
        if intent.get("resumed"):
            found = _our_channel(client, name)
            if found:
                return {"channel_id": found, "name": name}
        try:
            channel = client.call("conversations.create", name=name)["channel"]
            return {"channel_id": channel["id"], "name": name}
        except SlackError as e:
            if e.error != "name_taken":
                raise
    raise SlackError("conversations.create", "name_taken")


def _our_channel(client: SlackClient, name: str) -> str | None:
    bot = client.call("auth.test").get("user_id")
    cursor = None
    for _page in range(50):
        page = client.call("conversations.list", exclude_archived=True, types="public_channel", limit=200,
                           cursor=cursor)
        for channel in page.get("channels") or ():
            if channel.get("name") == name and channel.get("creator") == bot:
                return channel["id"]
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def _invite(client: SlackClient, channel: str, incident: Incident) -> dict:
    people = {u.id: u for u in (incident.created_by, incident.commander) if u is not None}
    ids = sorted({sid for u in people.values() if (sid := services.slack_id(client, u))})
    if not ids:
        return {"invited": []}
    try:
        client.call("conversations.invite", channel=channel, users=",".join(ids))
    except SlackError as e:
        if e.error != "already_in_channel":
            raise
    return {"invited": ids}


def _post_summary(client: SlackClient, channel: str, incident: Incident, base: str, intent: dict) -> dict:
    if intent.get("resumed"):  # an earlier attempt may have posted it: reuse that message
        history = client.call("conversations.history", channel=channel, limit=50)
        for message in history.get("messages") or ():
            if any(b.get("block_id") == f"incident:{incident.id}" for b in message.get("blocks") or ()):
                return {"ts": message["ts"]}
    blocks = services.summary_blocks(db.session, incident, base)
    return {"ts": client.call("chat.postMessage", channel=channel, text=services.summary_text(incident),
                              blocks=blocks)["ts"]}


def _announce(client: SlackClient, announce: str, channel: str, incident: Incident, url: str, intent: dict) -> dict:
    """Post the declaration once: a resumed attempt first looks for the one an earlier attempt may have posted."""
    marker = f"announce:{incident.id}"
    if intent.get("resumed"):
        history = client.call("conversations.history", channel=announce, limit=100)
        for message in history.get("messages") or ():
            if any(b.get("block_id") == marker for b in message.get("blocks") or ()):
                return {"ts": message["ts"]}
    text = (f":rotating_light: {incident.severity.value} declared: {incident.ref} {escape(incident.title)} "
            f"· join <#{channel}> · <{url}|details>")
    blocks = [{"type": "section", "block_id": marker, "text": {"type": "mrkdwn", "text": text}}]
    return {"ts": client.call("chat.postMessage", channel=announce, text=text, blocks=blocks)["ts"]}


def _pin(client: SlackClient, channel: str, ts: str) -> dict:
    try:
        client.call("pins.add", channel=channel, timestamp=ts)
    except SlackError as e:
        if e.error != "already_pinned":
            raise
    return {}


@job(retries=5, retry_delay=10, backoff=2)
def refresh_summary(incident_id: int) -> None:
    """Rewrite the pinned summary with the incident as it is now (absolute, so a repeat is harmless)."""
    session = db.session
    incident = session.get(Incident, int(incident_id))
    link = services.channel_of(session, int(incident_id)) if incident else None
    if link is None or not link.summary_ts or not services.configured(current_app.config):
        return
    client = _client()
    try:
        client.call("chat.update", channel=link.channel_id, ts=link.summary_ts, text=services.summary_text(incident),
                    blocks=services.summary_blocks(session, incident, public_base_url()))
    except SlackError as e:
        if e.error in ("message_not_found", "channel_not_found", "is_archived", "cant_update_message"):
            raise CancelExecution(retry=False) from e
        raise


@periodic(crontab(minute="*/5"))
def sweep() -> None:
    """Every 5 minutes, re-queue what a lost hand-over or a dead worker left behind: stored requests still
    unprocessed and channel setups still unfinished after a minute (both jobs are safe to run again)."""
    session, cutoff = db.session, utcnow() - timedelta(minutes=1)
    inbound = session.scalars(sa.select(SlackInbound.id).where(
        SlackInbound.processed_at.is_(None), SlackInbound.received_at < cutoff).order_by(SlackInbound.id).limit(200))
    setups = session.scalars(sa.select(SlackOutbox.incident_id).distinct().where(
        SlackOutbox.state.in_([OutboxState.PENDING, OutboxState.SENDING]), SlackOutbox.updated_at < cutoff,
        SlackOutbox.incident_id.is_not(None)).limit(200))
    inbound, setups = list(inbound), list(setups)
    session.commit()  # release the read before the jobs (inline in tests) take their own sessions
    for inbound_id in inbound:
        enqueue_now(process_inbound, inbound_id)
    for incident_id in setups:
        enqueue_now(setup_channel, incident_id)


# --- subscribers ------------------------------------------------------------------------------------------


def open_channel(event: events.Event) -> None:
    if services.configured(current_app.config):
        enqueue_now(setup_channel, event["incident_id"])


def follow_change(event: events.Event) -> None:
    if services.configured(current_app.config):
        enqueue_now(refresh_summary, event["incident_id"])


CHANGES = ("incident.status_changed", "incident.role_assigned", "incident.update_posted",
           "incident.severity_changed", "incident.updated")


def init_app(app: Flask) -> None:
    events.subscribe(app, "incident.declared", events.AFTER_COMMIT, open_channel)
    for name in CHANGES:
        events.subscribe(app, name, events.AFTER_COMMIT, follow_change)
