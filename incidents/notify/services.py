"""Incident notifications: which events exist, who hears them, what they say, and sending each one once.

A job enqueued after commit calls `send_incident_notification(incident_id, event.as_dict())`; it is safe to
run twice, or twice at once: every (event, channel, recipient) is claimed in `notification_log` first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from email.utils import formataddr
from enum import StrEnum

import sqlalchemy as sa
from flask import current_app, render_template
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from incidents.action_item.models import ActionItem
from incidents.auth.models import User
from incidents.catalog.models import Team
from incidents.database import read_only, utcnow
from incidents.errors import Invalid, NotFound
from incidents.extensions import db
from incidents.incident.models import EntryKind, Incident, Severity, StatusUpdate, TimelineEntry
from incidents.mail import MailError, build_message, message_id_for, send_message
from incidents.notify import slack
from incidents.notify.models import Channel, DeliveryStatus, IncidentSubscriber, NotificationLog, Subscription
from incidents.outbound import private_allowed
from incidents.urls import public_base_url

# --- events -----------------------------------------------------------------------------------------


class EventKind(StrEnum):
    OPENED = "opened"
    STATUS_CHANGED = "status_changed"
    POSTMORTEM_PUBLISHED = "postmortem_published"
    ACTION_ITEM_OVERDUE = "action_item_overdue"
    STATUS_UPDATE = "status_update"


@dataclass(frozen=True)
class Event:
    """Something worth telling people about an incident; `key` names it uniquely and forever (idempotency)."""

    kind: EventKind
    key: str
    from_status: str | None = None
    to_status: str | None = None
    postmortem_id: int | None = None
    action_item_id: int | None = None
    update_id: int | None = None

    @classmethod
    def opened(cls, incident_id: int) -> Event:
        return cls(EventKind.OPENED, f"incident:{incident_id}:opened")

    @classmethod
    def status_changed(cls, entry_id: int, from_status: str, to_status: str) -> Event:
        # Keyed by the timeline entry: resolving, reopening and resolving again are two events.
        return cls(EventKind.STATUS_CHANGED, f"timeline:{entry_id}", from_status=from_status, to_status=to_status)

    @classmethod
    def postmortem_published(cls, postmortem_id: int) -> Event:
        return cls(EventKind.POSTMORTEM_PUBLISHED, f"postmortem:{postmortem_id}:published",
                   postmortem_id=postmortem_id)

    @classmethod
    def action_item_overdue(cls, action_item_id: int, on: date) -> Event:
        """One reminder per item and day: a daily job calling this twice on one day sends once."""
        return cls(EventKind.ACTION_ITEM_OVERDUE, f"action_item:{action_item_id}:overdue:{on.isoformat()}",
                   action_item_id=action_item_id)

    @classmethod
    def status_update(cls, update_id: int) -> Event:
        return cls(EventKind.STATUS_UPDATE, f"update:{update_id}", update_id=update_id)

    def as_dict(self) -> dict:
        """Plain JSON-able arguments for a job (the fields are plain values: no deep copy as `asdict` makes)."""
        return vars(self) | {"kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: Mapping) -> Event:
        return cls(**(dict(data) | {"kind": EventKind(data["kind"])}))


def notification_events_for_timeline_entry(entry: TimelineEntry) -> list[Event]:
    """The notifications a timeline entry stands for (a declaration, or a status change): the same keys the
    `incident.declared` and `incident.status_changed` subscribers in notify/jobs.py queue."""
    if entry.kind == EntryKind.CREATED:
        return [Event.opened(entry.incident_id)]
    if entry.kind == EntryKind.STATUS and entry.data.get("from") and entry.data.get("to"):
        return [Event.status_changed(entry.id, entry.data["from"], entry.data["to"])]
    return []


# --- who hears it -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    channel: Channel
    recipient: str  # what the log records: an e-mail address, or "global" / "team:<id>" for Slack
    target: str = field(repr=False)  # where it goes: the address, or the webhook URL (secret)
    name: str = ""
    user_url: bool = False  # the target is a URL a user stored (team hook): incidents/outbound.py guards it


def configured_severities(config: Mapping) -> list[str]:
    raw = config.get("NOTIFY_SEVERITIES") or ""
    values = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return [s.strip().upper() for s in values if s.strip()]


@dataclass(frozen=True)
class Audience:
    """What deciding who hears about an incident reads of it: one row, read without loading the incident, so that
    an event nobody can receive (no hook, no mail server: the usual case) costs one query."""

    id: int
    severity: Severity
    team_id: int | None
    team_hook: str
    created_by_id: int | None
    commander_id: int | None
    comms_lead_id: int | None
    scribe_id: int | None

    @classmethod
    def load(cls, session: Session, incident_id: int) -> Audience | None:
        row = session.execute(_AUDIENCE, {"id": incident_id}).one_or_none()
        return None if row is None else cls(row[0], row[1], row[2], row[3] or "", *row[4:])


def _audience_statement() -> sa.Select:
    """Built once, on table columns: a Core statement runs without the ORM's per-execution setup."""
    i, t = Incident.__table__.c, Team.__table__.c
    return (sa.select(i.id, i.severity, i.team_id, t.slack_webhook_url, i.created_by_id, i.commander_id,
                      i.comms_lead_id, i.scribe_id)
            .select_from(Incident.__table__.outerjoin(Team.__table__, t.id == i.team_id))
            .where(i.id == sa.bindparam("id")))


_AUDIENCE = _audience_statement()


def recipients(session: Session, audience: Audience, event: Event, config: Mapping) -> list[Delivery]:
    """Slack: the global hook and the team's (declarations and status changes only for NOTIFY_SEVERITIES);
    e-mail: subscribers, and for status changes and updates also the incident's own followers."""
    out: list[Delivery] = []
    every_severity = event.kind not in (EventKind.OPENED, EventKind.STATUS_CHANGED)
    if every_severity or audience.severity.value in configured_severities(config):
        hooks = [("global", config.get("SLACK_WEBHOOK_URL") or "")]
        if audience.team_id is not None:
            hooks.append((f"team:{audience.team_id}", audience.team_hook))
        seen: set[str] = set()
        for recipient, url in hooks:
            if url and url not in seen:  # a team pointing at the global channel hears it once
                seen.add(url)
                out.append(Delivery(Channel.SLACK, recipient, url, user_url=recipient != "global"))
    if config.get("SMTP_URL"):
        people = subscribers(session, audience)
        if event.kind in (EventKind.STATUS_CHANGED, EventKind.STATUS_UPDATE):
            known = {u.id for u in people}
            people += [u for u in followers(session, audience) if u.id not in known]
        out += [Delivery(Channel.EMAIL, u.email, u.email, u.name) for u in people]
        owner = _overdue_owner(session, event)
        if owner is not None and all(d.recipient != owner.email for d in out):
            out.append(Delivery(Channel.EMAIL, owner.email, owner.email, owner.name))
    return out


def _overdue_item(session: Session, event: Event) -> ActionItem | None:
    if event.kind != EventKind.ACTION_ITEM_OVERDUE or event.action_item_id is None:
        return None
    return session.get(ActionItem, event.action_item_id)


def _overdue_owner(session: Session, event: Event) -> User | None:
    """The owner of an overdue action item hears about it too, subscribed or not (when active)."""
    item = _overdue_item(session, event)
    owner = item.owner if item is not None else None
    return owner if owner is not None and owner.active else None


def subscribers(session: Session, incident: Incident | Audience) -> list[User]:
    """Active users subscribed to this incident's team or to everything, for its severity; each once."""
    scope = Subscription.team_id.is_(None)
    if incident.team_id is not None:
        scope = sa.or_(scope, Subscription.team_id == incident.team_id)
    stmt = (sa.select(Subscription, User).join(User, Subscription.user_id == User.id)
            .where(scope, User.active.is_(True)).order_by(User.email))
    users: dict[int, User] = {}
    for sub, user in session.execute(stmt):
        if incident.severity.value in sub.severity_list:
            users.setdefault(user.id, user)
    return list(users.values())


def followers(session: Session, incident: Incident | Audience) -> list[User]:
    """The incident's own audience: who pressed Subscribe on it, its declarer and its role holders (active ones)."""
    ids = {incident.created_by_id, incident.commander_id, incident.comms_lead_id, incident.scribe_id}
    ids |= set(session.scalars(sa.select(IncidentSubscriber.user_id)
                               .where(IncidentSubscriber.incident_id == incident.id)))
    ids.discard(None)
    if not ids:
        return []
    return list(session.scalars(sa.select(User).where(User.id.in_(ids), User.active.is_(True)).order_by(User.email)))


def subscribe_to_incident(session: Session, incident: Incident, user: User) -> None:
    """Follow one incident's status changes and updates by e-mail (pressing Subscribe twice is one subscription)."""
    if not is_subscribed(session, incident, user):
        session.add(IncidentSubscriber(incident_id=incident.id, user_id=user.id))
        session.flush()


def unsubscribe_from_incident(session: Session, incident: Incident, user: User) -> None:
    session.execute(sa.delete(IncidentSubscriber).where(IncidentSubscriber.incident_id == incident.id,
                                                        IncidentSubscriber.user_id == user.id))


def is_subscribed(session: Session, incident: Incident, user: User) -> bool:
    return session.get(IncidentSubscriber, (incident.id, user.id)) is not None


# --- what it says -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    slack: dict
    headers: dict[str, str]


def _headline(incident: Incident, event: Event, item: ActionItem | None = None) -> tuple[str, str]:
    """(headline, one sentence of detail) for an event."""
    ref = incident.ref
    if event.kind == EventKind.OPENED:
        return f"{ref} opened: {incident.title}", f"A {incident.severity.value} incident was declared."
    if event.kind == EventKind.STATUS_CHANGED:
        return (f"{ref} {event.to_status}: {incident.title}",
                f"Status changed from {event.from_status} to {event.to_status}.")
    if event.kind == EventKind.STATUS_UPDATE:
        return (f"{ref} update: {incident.title}",
                f"A status update on this {incident.severity.value} incident, now {incident.status.value}.")
    if event.kind == EventKind.POSTMORTEM_PUBLISHED:
        return (f"Post-mortem published for {ref}: {incident.title}",
                "The post-mortem of this incident is published: read what happened and what changes now.")
    if item is not None:
        owner = item.owner.name if item.owner else "nobody"
        due = item.due_date.isoformat() if item.due_date else "—"
        return (f"Action item overdue for {ref}: {item.title}",
                f"Action item #{item.id} \u201c{item.title}\u201d (owner: {owner}) was due {due} and is still "
                f"{item.status.label}.")
    return (f"Action item overdue for {ref}: {incident.title}",
            f"Action item #{event.action_item_id} from this incident is past its due date.")


def _facts(incident: Incident, update: StatusUpdate | None = None) -> list[tuple[str, str]]:
    """Label/value lines; an update's own lines come first (Slack shows the first four)."""
    told = [] if update is None else [
        ("Impact now", update.impact), ("What we are doing", update.actions),
        ("Next update", update.next_update_at.strftime("%Y-%m-%d %H:%M UTC") if update.next_update_at else "none")]
    return told + [
        ("Severity", incident.severity.value),
        ("Status", incident.status.value),
        ("Service", incident.service.name if incident.service else "—"),
        ("Team", incident.team.name if incident.team else "—"),
        ("Commander", incident.commander.name if incident.commander else "—"),
    ]


def render_notification(incident: Incident, event: Event, config: Mapping,
                        session: Session | None = None) -> Rendered:
    """The e-mail (text + HTML) and the Slack message of one event, from the same facts."""
    session = session or db.session
    headline, detail = _headline(incident, event, _overdue_item(session, event))
    url = f"{public_base_url(config)}/incidents/{incident.ref}"
    update = session.get(StatusUpdate, event.update_id) if event.update_id else None
    facts = _facts(incident, update)
    context = {"incident": incident, "event": event, "headline": headline, "detail": detail, "url": url,
               "facts": facts, "manage_url": f"{public_base_url(config)}/account/notifications"}
    return Rendered(
        subject=f"[{incident.severity.value}] {headline}",
        text=render_template("email/incident_event.txt", **context),
        html=render_template("email/incident_event.html", **context),
        slack=_slack_payload(headline, detail, url, facts, incident),
        headers={"X-Incident": incident.ref, "Auto-Submitted": "auto-generated"},
    )


def _slack_payload(headline: str, detail: str, url: str, facts: list[tuple[str, str]], incident: Incident) -> dict:
    fallback = f"[{incident.severity.value}] {headline} ({incident.status.value}) {url}"
    return {
        "text": fallback,  # notifications and clients without Block Kit show this
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack.link(url, headline)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack.escape(detail)},
             "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{slack.escape(value[:1500])}"}
                        for label, value in facts[:4]]},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": f"Open {incident.ref}"}, "url": url},
            ]},
        ],
    }


# --- sending, once ----------------------------------------------------------------------------------


@dataclass
class NotificationReport:
    """What one run did, per delivery ("slack:global", "email:rita@example.com")."""

    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already sent or permanently refused before
    failed: list[str] = field(default_factory=list)  # temporary failure now: retry later
    rejected: list[str] = field(default_factory=list)  # permanent failure now: will not be retried
    busy: list[str] = field(default_factory=list)  # another worker holds it now: retry later to be sure

    @property
    def complete(self) -> bool:
        return not (self.failed or self.busy)


class NotificationIncomplete(Exception):
    """Some deliveries should be tried again later; raising it makes the job queue retry the whole call."""

    def __init__(self, report: NotificationReport):
        super().__init__(f"notification incomplete: failed={report.failed} busy={report.busy}")
        self.report = report


class Claim(StrEnum):
    MINE = "mine"
    DONE = "done"
    BUSY = "busy"


def send_incident_notification(incident_id: int, event: Event | Mapping, *, session: Session | None = None,
                               config: Mapping | None = None) -> NotificationReport:
    """Send `event` of incident `incident_id` to every recipient that has not had it yet.

    Meant as a job's body: it commits its own log rows, so call it with nothing pending in the session.
    Raises NotificationIncomplete when a retry is needed; what went out already is not sent again."""
    session = session or db.session
    config = config or current_app.config
    event = event if isinstance(event, Event) else Event.from_dict(event)
    report = NotificationReport()
    # Reading and rendering take no write lock (SQLite): the web's webhook writers never wait for a job.
    with read_only():
        # The incident itself loads only when someone is to hear of it: most events have nobody to tell.
        audience = Audience.load(session, incident_id)
        deliveries = recipients(session, audience, event, config) if audience is not None else []
        if deliveries:  # tags and the rest load only if a template uses them
            incident = session.get(Incident, incident_id, options=[lazyload("*")])
            rendered = render_notification(incident, event, config, session)
        session.commit()  # no transaction stays open across network I/O
    if not deliveries:  # deleted since, or nobody to tell: nothing rendered, nothing logged
        return report
    lease = timedelta(seconds=float(config["NOTIFY_SEND_LEASE"]))
    for delivery in deliveries:
        deliver_once(session, event.key, delivery, incident_id, lease, report,
                     lambda delivery=delivery: _deliver(delivery, rendered, event, config))
    if not report.complete:
        raise NotificationIncomplete(report)
    return report


def deliver_once(session: Session, key: str, delivery: Delivery, incident_id: int | None, lease: timedelta,
                 report: NotificationReport, send: Callable[[], None]) -> None:
    """Claim (key, channel, recipient) in the notification log; if this worker holds it, run `send` and record
    the outcome in the log and in `report`. MailError and SlackError are failed (temporary) or rejected; any other
    error is recorded as failed and raised. Every sender that must deliver once goes through here."""
    name = f"{delivery.channel.value}:{delivery.recipient}"
    claim, log_id = claim_delivery(session, key, delivery, incident_id, lease)
    if claim == Claim.DONE:
        report.skipped.append(name)
        return
    if claim == Claim.BUSY:
        report.busy.append(name)
        return
    try:
        send()
    except (MailError, slack.SlackError) as e:
        finish_delivery(session, log_id, DeliveryStatus.FAILED if e.temporary else DeliveryStatus.REJECTED, str(e))
        (report.failed if e.temporary else report.rejected).append(name)
    except Exception as e:
        finish_delivery(session, log_id, DeliveryStatus.FAILED, type(e).__name__)
        raise
    else:
        finish_delivery(session, log_id, DeliveryStatus.SENT)
        report.sent.append(name)


def _deliver(delivery: Delivery, rendered: Rendered, event: Event, config: Mapping) -> None:
    if delivery.channel == Channel.SLACK:
        slack.post_message(delivery.target, rendered.slack, timeout=float(config["SLACK_TIMEOUT"]),
                           user_url=delivery.user_url, allow_private=private_allowed(config))
        return
    sender = config.get("MAIL_FROM") or "incidents@localhost"
    message = build_message(
        formataddr((delivery.name, delivery.target)), rendered.subject, rendered.text, rendered.html,
        rendered.headers, sender=sender, message_id=message_id_for(f"{event.key}/{delivery.recipient}", sender),
    )
    send_message(config, message)


def claim_delivery(session: Session, key: str, delivery: Delivery, incident_id: int | None,
           lease: timedelta) -> tuple[Claim, int]:
    """Take the (event, channel, recipient) row for this worker, or learn it is done or held by another.

    Any sender that must deliver once (incident events, the weekly report) claims here, then `finish_delivery`."""
    now = utcnow()
    row = NotificationLog(event_key=key, channel=delivery.channel, recipient=delivery.recipient,
                          incident_id=incident_id, status=DeliveryStatus.SENDING, attempts=1, claimed_at=now)
    session.add(row)
    try:
        session.flush()  # the unique key decides: exactly one worker inserts it
        log_id = row.id
        session.commit()
        return Claim.MINE, log_id
    except IntegrityError:
        session.rollback()
    found = session.execute(
        sa.select(NotificationLog.id, NotificationLog.status, NotificationLog.attempts, NotificationLog.claimed_at)
        .where(NotificationLog.event_key == key, NotificationLog.channel == delivery.channel,
               NotificationLog.recipient == delivery.recipient)
    ).one()
    claim = Claim.BUSY
    if found.status in (DeliveryStatus.SENT, DeliveryStatus.REJECTED):
        claim = Claim.DONE
    elif found.status == DeliveryStatus.FAILED or found.claimed_at < now - lease:
        # Compare-and-set on `attempts`: of two workers retrying at once, one wins.
        taken = session.execute(
            sa.update(NotificationLog)
            .where(NotificationLog.id == found.id, NotificationLog.attempts == found.attempts,
                   NotificationLog.status == found.status)
            .values(status=DeliveryStatus.SENDING, attempts=found.attempts + 1, claimed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        claim = Claim.MINE if taken == 1 else Claim.BUSY
    session.commit()
    return claim, found.id


def finish_delivery(session: Session, log_id: int, status: DeliveryStatus, error: str = "") -> None:
    session.execute(
        sa.update(NotificationLog).where(NotificationLog.id == log_id)
        .values(status=status, last_error=error[:500], sent_at=utcnow() if status == DeliveryStatus.SENT else None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


# --- subscriptions ----------------------------------------------------------------------------------


def list_subscriptions(session: Session, user: User) -> list[Subscription]:
    stmt = (sa.select(Subscription).where(Subscription.user_id == user.id)
            .order_by(Subscription.team_id.is_not(None), Subscription.id))
    return list(session.scalars(stmt))


def subscribe(session: Session, user: User, *, team_id: int | None, severities: list[str]) -> Subscription:
    """E-mail `user` about a team's incidents (or all, team_id None); subscribing again replaces the severities."""
    wanted = {v.strip().upper() for v in severities}
    if not wanted or not wanted <= {s.value for s in Severity}:
        raise Invalid("Choose at least one severity.", {"severities": ["Choose one or more of SEV1-SEV4."]})
    if team_id is not None and session.get(Team, team_id) is None:
        raise Invalid(f"No team {team_id}.", {"team_id": ["Unknown team."]})
    scope = Subscription.team_id.is_(None) if team_id is None else Subscription.team_id == team_id
    sub = session.scalar(sa.select(Subscription).where(Subscription.user_id == user.id, scope))
    if sub is None:
        sub = Subscription(user_id=user.id, team_id=team_id, severities="")
        session.add(sub)
    sub.severities = ",".join(s.value for s in Severity if s.value in wanted)
    session.flush()
    return sub


def unsubscribe(session: Session, user: User, subscription_id: int) -> None:
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.user_id != user.id:
        raise NotFound("No such subscription.")
    session.delete(sub)
    session.flush()
