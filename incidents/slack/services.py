"""What the Slack app says and whom it trusts: channel names, the summary message, the modals, user mapping and
the outbox step that makes each outbound action happen once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from incidents.auth.models import Role, User
from incidents.database import utcnow
from incidents.formatting import format_duration
from incidents.incident import services as incident_services
from incidents.incident.durations import durations
from incidents.incident.models import Incident, IncidentRole, Severity, Status, StatusUpdate
from incidents.notify.slack import escape
from incidents.slack.client import SlackClient, SlackError
from incidents.slack.models import OutboxState, SlackChannel, SlackInbound, SlackOutbox

# Button action ids on the summary message -> the status they move to (None: not a status move).
STATUS_ACTIONS = {"ack": Status.ACKNOWLEDGED, "investigate": Status.INVESTIGATING, "mitigate": Status.MITIGATED}
MODAL_ACTIONS = ("resolve", "post_update")  # open a modal (views.open) inside the request
ACTIONS = (*STATUS_ACTIONS, "resolve", "commander", "post_update")

DECLARE_VIEW, RESOLVE_VIEW, UPDATE_VIEW = "declare", "resolve", "update"


def configured(config) -> bool:
    return bool(config.get("SLACK_BOT_TOKEN"))


def wants_channel(incident, config) -> bool:
    """A person's declaration always gets a channel; an alert's only at SLACK_ALERT_CHANNEL_SEVERITIES."""
    if incident.created_by_id is not None:
        return True
    raw = config.get("SLACK_ALERT_CHANNEL_SEVERITIES") or ""
    wanted = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return incident.severity.value in {s.strip().upper() for s in wanted}


# --- inbound dedup ----------------------------------------------------------------------------------------


def record_inbound(session: Session, key: str, kind: str, payload: dict, *, done: bool = False) -> SlackInbound | None:
    """Store one request under its dedup key; None when that key was seen before (a retry or a double click).
    `done`: the request was answered in full (a modal opened), no job follows."""
    if session.scalar(sa.select(SlackInbound.id).where(SlackInbound.key == key)) is not None:
        return None
    row = SlackInbound(key=key[:200], kind=kind, payload=payload, processed_at=utcnow() if done else None)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent retry won the race
        return None
    return row


def interaction_key(payload: dict) -> str:
    """Dedup key of an interaction: the view's id and hash for a submission, else each action's id and ts."""
    if payload.get("type") == "view_submission":
        view = payload.get("view") or {}
        return f"view:{view.get('id')}:{view.get('hash')}"
    actions = payload.get("actions") or [{}]
    return "action:" + ",".join(f"{a.get('action_id')}:{a.get('action_ts')}" for a in actions)


# --- names and messages -----------------------------------------------------------------------------------


def channel_name(incident: Incident, suffix: str = "") -> str:
    """inc-<n>-<slug>: lower case letters, digits and hyphens, at most 80 characters (Slack's rule)."""
    slug = re.sub(r"[^a-z0-9]+", "-", incident.title.lower()).strip("-")
    name = f"inc-{incident.id}-{slug}"[:80 - len(suffix)].rstrip("-")
    return name + suffix


def incident_url(base_url: str, incident: Incident) -> str:
    return f"{base_url}/incidents/{incident.ref}"


def _holder(incident: Incident, role: IncidentRole) -> str:
    user = incident.role_holder(role)
    return escape(user.name) if user else "unassigned"


def latest_update(session: Session, incident: Incident) -> StatusUpdate | None:
    return session.scalar(incident_services.status_updates(incident.id).limit(1))


def summary_text(incident: Incident) -> str:
    return f"{incident.ref} {incident.title} · {incident.severity.value} · {incident.status.value}"


def summary_blocks(session: Session, incident: Incident, base_url: str, now: datetime | None = None) -> list[dict]:
    """The pinned summary: severity, status, roles, duration, the latest update, and the buttons that act."""
    d = durations(incident, now)  # the one definition, as on the list and the incident page
    duration = (f"resolved after {format_duration(d.time_to_resolve)}" if d.time_to_resolve is not None else
                f"impact so far {format_duration(d.impact)}" if d.impact_ongoing else
                f"mitigated after {format_duration(d.time_to_mitigate)}")
    fields = [f"*Severity:* {incident.severity.value}", f"*Status:* {incident.status.value}",
              f"*Commander:* {_holder(incident, IncidentRole.COMMANDER)}",
              f"*Comms lead:* {_holder(incident, IncidentRole.COMMS_LEAD)}",
              f"*Scribe:* {_holder(incident, IncidentRole.SCRIBE)}", f"*Duration:* {duration}"]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{incident.ref}: {incident.title}"[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    update = latest_update(session, incident)
    if update is not None:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Latest update* ({update.status.value}):\n*Impact:* {escape(update.impact)}\n"
            f"*What we are doing:* {escape(update.actions)}")[:3000]}})
    if incident.resolution:  # people's text is escaped: no <!channel> pings, no links in disguise
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": f"*Resolution:* {escape(incident.resolution)}"[:3000]}})
    buttons = []
    if incident.is_open:
        for action_id, label, to in (("ack", "Acknowledge", Status.ACKNOWLEDGED),
                                     ("investigate", "Investigating", Status.INVESTIGATING),
                                     ("mitigate", "Mitigated", Status.MITIGATED)):
            if to != incident.status:
                buttons.append(_button(action_id, label, incident))
        buttons.append(_button("resolve", "Resolve", incident, style="primary"))
    buttons += [_button("commander", "Assign me as commander", incident),
                _button("post_update", "Post update", incident)]
    blocks.append({"type": "actions", "block_id": f"incident:{incident.id}", "elements": buttons})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"<{incident_url(base_url, incident)}|Open {incident.ref} in Incidents>"}]})
    return blocks


def _button(action_id: str, label: str, incident: Incident, style: str | None = None) -> dict:
    button = {"type": "button", "action_id": action_id, "value": str(incident.id),
              "text": {"type": "plain_text", "text": label}}
    if style:
        button["style"] = style
    return button


def _input(block_id: str, label: str, element: dict, optional: bool = False) -> dict:
    return {"type": "input", "block_id": block_id, "optional": optional,
            "label": {"type": "plain_text", "text": label}, "element": {**element, "action_id": block_id}}


def _text(initial: str = "", multiline: bool = False, max_length: int = 3000) -> dict:
    element = {"type": "plain_text_input", "multiline": multiline, "max_length": max_length}
    if initial:
        element["initial_value"] = initial
    return element


def _options(values: list[tuple[str, str]]) -> list[dict]:
    return [{"text": {"type": "plain_text", "text": label[:75]}, "value": value} for value, label in values]


def declare_modal(title: str, services: list[tuple[str, str]], channel_id: str) -> dict:
    """The declare modal: title, severity, service (optional), summary."""
    severity = {"type": "static_select", "options": _options([(s.value, s.value) for s in Severity]),
                "initial_option": _options([("SEV3", "SEV3")])[0]}
    blocks = [_input("title", "Title", _text(title, max_length=200)), _input("severity", "Severity", severity)]
    if services:
        blocks.append(_input("service", "Service", {"type": "static_select", "options": _options(services[:100])},
                             optional=True))
    blocks.append(_input("summary", "Summary", _text(multiline=True), optional=True))
    return _modal(DECLARE_VIEW, "Declare an incident", "Declare", blocks, {"channel": channel_id})


def resolve_modal(incident: Incident, channel_id: str) -> dict:
    blocks = [_input("resolution", "What resolved it?", _text(multiline=True))]
    return _modal(RESOLVE_VIEW, f"Resolve {incident.ref}", "Resolve", blocks,
                  {"incident_id": incident.id, "channel": channel_id})


def update_modal(incident: Incident, channel_id: str) -> dict:
    blocks = [_input("impact", "Impact now", _text(multiline=True)),
              _input("actions", "What we are doing", _text(multiline=True))]
    return _modal(UPDATE_VIEW, f"Update on {incident.ref}", "Post", blocks,
                  {"incident_id": incident.id, "channel": channel_id})


def _modal(callback_id: str, title: str, submit: str, blocks: list[dict], metadata: dict) -> dict:
    return {"type": "modal", "callback_id": callback_id, "title": {"type": "plain_text", "text": title[:24]},
            "submit": {"type": "plain_text", "text": submit}, "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": blocks, "private_metadata": json.dumps(metadata)}


def view_values(view: dict) -> dict[str, str]:
    """A submitted view's inputs by block id: text values and selected option values."""
    found = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for value in actions.values():
            if value.get("type") == "static_select":
                found[block_id] = ((value.get("selected_option") or {}).get("value")) or ""
            else:
                found[block_id] = value.get("value") or ""
    return found


def view_errors(callback_id: str, values: dict[str, str]) -> dict[str, str]:
    """Field errors Slack shows under the inputs (response_action: errors), checked before anything is stored."""
    required = {DECLARE_VIEW: ("title",), RESOLVE_VIEW: ("resolution",), UPDATE_VIEW: ("impact", "actions")}
    errors = {name: "Required." for name in required.get(callback_id, ()) if not values.get(name, "").strip()}
    if callback_id == DECLARE_VIEW and values.get("severity") and values["severity"] not in set(Severity):
        errors["severity"] = "Pick SEV1 to SEV4."
    if callback_id == DECLARE_VIEW and "\n" in values.get("title", ""):
        errors["title"] = "One line."
    return errors


def metadata(view: dict) -> dict:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --- people -----------------------------------------------------------------------------------------------


def our_user(session: Session, client: SlackClient, slack_user_id: str) -> User | None:
    """The active user whose e-mail is the Slack user's (users.info), or None."""
    try:
        info = client.call("users.info", user=slack_user_id)
    except SlackError as e:
        if e.error in ("user_not_found", "users_not_found"):
            return None
        raise
    email = ((info.get("user") or {}).get("profile") or {}).get("email") or ""
    if not email:
        return None
    return session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower(),
                                                User.active.is_(True)))


def may_act(user: User | None) -> bool:
    return user is not None and user.role in (Role.RESPONDER, Role.ADMIN)


def slack_id(client: SlackClient, user: User) -> str | None:
    """The Slack user with this user's e-mail (users.lookupByEmail), or None."""
    try:
        return client.call("users.lookupByEmail", email=user.email)["user"]["id"]
    except SlackError as e:
        if e.error == "users_not_found":
            return None
        raise


def channel_of(session: Session, incident_id: int) -> SlackChannel | None:
    return session.scalar(sa.select(SlackChannel).where(SlackChannel.incident_id == incident_id))


def incident_for_channel(session: Session, channel_id: str) -> Incident | None:
    link = session.scalar(sa.select(SlackChannel).where(SlackChannel.channel_id == channel_id))
    return session.get(Incident, link.incident_id) if link else None


def ts_time(ts: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC)
    except (TypeError, ValueError):
        return None


# --- the outbox -------------------------------------------------------------------------------------------


def outbox_step(session: Session, key: str, incident_id: int | None, method: str,
                send: Callable[[SlackOutbox], dict], intent: dict | None = None) -> dict:
    """Do one keyed action once: a DONE row returns its stored result; otherwise the row is marked SENDING and
    committed before `send(row)` runs (so a retry knows a call may have gone out), then DONE with the result.
    A SlackError that retrying cannot fix marks it FAILED; the others propagate so the job retries.
    `intent` (what the call will send, e.g. the channel name) is stored first; an earlier attempt's wins, so a
    resumed call asks for the same thing and `row.result["resumed"]` tells it to look for the earlier result."""
    row = session.scalar(sa.select(SlackOutbox).where(SlackOutbox.key == key))
    if row is None:
        row = SlackOutbox(key=key, incident_id=incident_id, method=method)
        session.add(row)
    if row.state == OutboxState.DONE:
        return row.result
    resumed = row.state == OutboxState.SENDING or bool((row.result or {}).get("resumed"))
    row.result = {**(intent or {}), **(row.result or {}), "resumed": resumed}
    row.state, row.attempts = OutboxState.SENDING, (row.attempts or 0) + 1
    session.commit()
    try:
        result = send(row)
    except SlackError as e:
        row.last_error = e.error
        # A timeout or a dropped answer may have done it: stay SENDING so the retry looks first.
        row.state = (OutboxState.SENDING if e.unknown_outcome else
                     OutboxState.PENDING if _retryable(e) else OutboxState.FAILED)
        session.commit()
        if row.state != OutboxState.FAILED:
            raise
        return {"failed": e.error}
    row.state, row.result, row.last_error = OutboxState.DONE, result or {}, ""
    session.commit()
    return row.result


def _retryable(e: SlackError) -> bool:
    return e.unknown_outcome or e.error in ("ratelimited", "invalid_response", "internal_error", "fatal_error",
                                            "service_unavailable", "request_timeout") or e.error.startswith("http_5")


def outbox_counts(session: Session) -> dict[str, int]:
    rows = session.execute(sa.select(SlackOutbox.state, sa.func.count()).group_by(SlackOutbox.state)).all()
    return {state.value: count for state, count in rows}


def failed_outbox(session: Session, limit: int = 20) -> list[SlackOutbox]:
    return list(session.scalars(sa.select(SlackOutbox).where(SlackOutbox.state != OutboxState.DONE)
                                .order_by(SlackOutbox.updated_at.desc()).limit(limit)))


def last_inbound(session: Session) -> SlackInbound | None:
    return session.scalar(sa.select(SlackInbound).order_by(SlackInbound.id.desc()).limit(1))
