"""The weekly report: who gets it, when it is due, what it says, and sending each (week, team, recipient) once.

Sending reuses the notification log (`notify.services.claim_delivery`): the event key is
`report:weekly:<week>:team:<id>` (or `:all` for the global list's all-teams report), the recipient the address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from flask import render_template
from sqlalchemy.orm import Session

from incidents import events
from incidents.catalog import services as catalog
from incidents.catalog.models import Team
from incidents.errors import Invalid
from incidents.incident.durations import Durations, durations
from incidents.incident.models import Incident
from incidents.mail import build_message, message_id_for, send_message
from incidents.notify.models import Channel, DeliveryStatus, NotificationLog
from incidents.notify.services import Delivery, NotificationReport, deliver_once
from incidents.report.models import ReportRecipient
from incidents.report.queries import Item, Ledger, RepeatFlag, Week, build_ledger, incidents_in, repeat_flags
from incidents.urls import public_base_url

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHART_WEEKS = 8
KEY_PREFIX = "report:weekly:"


# --- settings ----------------------------------------------------------------------------------------


def report_tz(config: Mapping) -> ZoneInfo:
    name = str(config.get("REPORT_TIMEZONE") or "UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"REPORT_TIMEZONE {name!r} is not an IANA time zone") from None


def report_schedule(config: Mapping) -> tuple[int, time, ZoneInfo]:
    """(weekday 0=Monday, local time, zone) of the weekly send; ValueError names a bad setting."""
    day = str(config.get("REPORT_WEEKDAY") or "mon").strip().lower()[:3]
    if day not in WEEKDAYS:
        raise ValueError(f"REPORT_WEEKDAY must be one of {', '.join(WEEKDAYS)}, not {day!r}")
    try:
        at = time.fromisoformat(str(config.get("REPORT_TIME") or "09:00").strip())
    except ValueError:
        raise ValueError("REPORT_TIME must be HH:MM") from None
    return WEEKDAYS.index(day), at, report_tz(config)


def send_moment(week: Week, config: Mapping) -> datetime:
    """When the report of `week` is due: the scheduled day and time of the following week."""
    weekday, at, tz = report_schedule(config)
    local_day = week.next().monday + timedelta(days=weekday)
    return datetime.combine(local_day, at, tz).astimezone(week.start.tzinfo)


def due_week(now: datetime, config: Mapping) -> Week:
    """The week whose report is due at `now`: the latest week whose send moment has passed."""
    tz = report_tz(config)
    week = Week.containing(now, tz).previous()
    return week if send_moment(week, config) <= now else week.previous()


def _clean_emails(raw) -> list[str]:
    values = raw if isinstance(raw, list | tuple) else str(raw or "").replace("\n", ",").replace(";", ",").split(",")
    out, bad = [], []
    for value in values:
        value = value.strip()
        if not value:
            continue
        address = parseaddr(value)[1].lower()
        if "@" not in address or " " in address or len(address) > 254:
            bad.append(value)
        elif address not in out:
            out.append(address)
    if bad:
        raise Invalid(f"Not an e-mail address: {', '.join(bad)}.",
                      {"recipients": [f"Not an address: {b}" for b in bad]})
    return out


def configured_recipients(config: Mapping) -> list[str]:
    try:
        return _clean_emails(config.get("REPORT_RECIPIENTS") or "")
    except Invalid:
        return []


def stored_recipients(session: Session, team_id: int | None) -> list[str]:
    scope = ReportRecipient.team_id.is_(None) if team_id is None else ReportRecipient.team_id == team_id
    return list(session.scalars(sa.select(ReportRecipient.email).where(scope).order_by(ReportRecipient.email)))


def recipients_for(session: Session, config: Mapping, team: Team | None) -> list[str]:
    """A team's list; for `team` None the global list (REPORT_RECIPIENTS plus the settings page)."""
    if team is not None:
        return stored_recipients(session, team.id)
    return list(dict.fromkeys([*configured_recipients(config), *stored_recipients(session, None)]))


def set_recipients(session: Session, team_id: int | None, raw) -> list[str]:
    """Replace the stored list of a team (or the global one) with the addresses in `raw`."""
    emails = _clean_emails(raw)
    before = stored_recipients(session, team_id)
    scope = ReportRecipient.team_id.is_(None) if team_id is None else ReportRecipient.team_id == team_id
    session.execute(sa.delete(ReportRecipient).where(scope).execution_options(synchronize_session=False))
    session.add_all(ReportRecipient(team_id=team_id, email=e) for e in emails)
    session.flush()
    if before != sorted(emails):
        events.emit(session, "report.recipients_changed", team_id=team_id,
                    changes={"recipients": [before, sorted(emails)]})
    return emails


# --- what it says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One figure, this week against last; `up_is_good` decides whether a rise reads as good news."""

    label: str
    this: float | None
    last: float | None
    up_is_good: bool
    percent: bool = False

    def _fmt(self, v: float | None) -> str:
        if v is None:
            return "—"
        return f"{round(v * 100)}%" if self.percent else f"{v:g}"

    @property
    def this_text(self) -> str:
        return self._fmt(self.this)

    @property
    def last_text(self) -> str:
        return self._fmt(self.last)

    @property
    def direction(self) -> str:
        if self.this is None or self.last is None or self.this == self.last:
            return "same"
        return "up" if self.this > self.last else "down"

    @property
    def arrow(self) -> str:
        return {"up": "▲", "down": "▼", "same": "="}[self.direction]

    @property
    def verdict(self) -> str:
        """better, worse or same."""
        if self.direction == "same":
            return "same"
        return "better" if (self.direction == "up") == self.up_is_good else "worse"


@dataclass
class IncidentLine:
    incident: Incident
    durations: Durations  # as the incident page and the post-mortem show them (incidents.incident.durations)
    repeat: RepeatFlag | None

    @property
    def tta(self) -> float | None:
        return self.durations.time_to_acknowledge

    @property
    def ttr(self) -> float | None:
        return self.durations.time_to_resolve


@dataclass
class WeeklyReport:
    week: Week
    team: Team | None
    ledger: Ledger  # CHART_WEEKS weeks ending with `week`, seen at the end of `week` (or now)
    comparisons: list[Comparison]
    overdue: list[Item]
    due_next_week: list[Item]
    repaid: list[Item]
    written_off: list[Item]
    incidents: list[IncidentLine]
    base_url: str = ""
    chart: list[dict] = field(default_factory=list)

    @property
    def scope(self) -> str:
        return self.team.name if self.team else "All teams"

    @property
    def subject(self) -> str:
        this = self.ledger.last
        return (f"Tech-debt report {self.week.label} · {self.scope}: {len(this.balance)} open, "
                f"{len(this.repaid)} repaid, {len(this.overdue)} overdue")

    @property
    def repeats(self) -> list[IncidentLine]:
        return [line for line in self.incidents if line.repeat]


def build_weekly_report(session: Session, config: Mapping, *, week: Week, team: Team | None,
                        now: datetime) -> WeeklyReport:
    """The report of `week` for one team (or all), as it stands at the end of the week (or `now`, if sooner)."""
    team_id = team.id if team else None
    ledger = build_ledger(session, now=now, tz=week.tz, weeks=CHART_WEEKS, until=week, team_id=team_id,
                          with_repeats=False)
    this, last = ledger.weeks[-1], ledger.weeks[-2]
    comparisons = [
        Comparison("Opened", len(this.opened), len(last.opened), up_is_good=False),
        Comparison("Repaid", len(this.repaid), len(last.repaid), up_is_good=True),
        Comparison("Open balance", len(this.balance), len(last.balance), up_is_good=False),
        Comparison("Open points", this.balance_points, last.balance_points, up_is_good=False),
        Comparison("Overdue", len(this.overdue), len(last.overdue), up_is_good=False),
        Comparison("Repayment rate (4 weeks)", ledger.repayment_rate(), ledger.repayment_rate(1), up_is_good=True,
                   percent=True),
    ]
    next_week = week.next()
    due_next = sorted((i for i in ledger.open_items
                       if i.due_date and next_week.monday <= i.due_date <= next_week.sunday),
                      key=lambda i: (i.due_date, i.id))
    week_incidents = incidents_in(session, week.start, week.end, team_id=team_id)
    flags = repeat_flags(session, week_incidents)
    lines = [IncidentLine(i, durations(i, now), (flags.get(i.id) or [None])[0])
             for i in week_incidents]
    top = max([max(len(w.opened), len(w.repaid)) for w in ledger.weeks] + [1])
    chart = [{"label": w.week.label[-3:], "week": w.week.label, "opened": len(w.opened), "repaid": len(w.repaid),
              "balance": len(w.balance), "opened_px": round(160 * len(w.opened) / top),
              "repaid_px": round(160 * len(w.repaid) / top)} for w in ledger.weeks]
    return WeeklyReport(week=week, team=team, ledger=ledger, comparisons=comparisons, overdue=ledger.overdue,
                        due_next_week=due_next, repaid=this.repaid, written_off=this.written_off, incidents=lines,
                        base_url=public_base_url(config), chart=chart)


@dataclass(frozen=True)
class RenderedReport:
    subject: str
    text: str
    html: str


def render_weekly_report(report: WeeklyReport) -> RenderedReport:
    context = {"r": report, "base": report.base_url}
    return RenderedReport(report.subject, render_template("email/weekly_report.txt", **context),
                          render_template("email/weekly_report.html", **context))


# --- sending, once ---------------------------------------------------------------------------------


def report_key(week: Week, team: Team | None) -> str:
    return f"{KEY_PREFIX}{week.label}:" + (f"team:{team.id}" if team else "all")


def send_weekly_report(session: Session, config: Mapping, *, week: Week, team: Team | None, now: datetime,
                       to: list[str] | None = None) -> NotificationReport:
    """Send the report to its recipients (or `to`) unless the log says it went already; one claim per address.

    Commits its own log rows: call it with nothing pending in the session."""
    result = NotificationReport()
    recipients = _clean_emails(to) if to else recipients_for(session, config, team)
    if not recipients:
        return result
    rendered = render_weekly_report(build_weekly_report(session, config, week=week, team=team, now=now))
    key = report_key(week, team)
    sender = config.get("MAIL_FROM") or "incidents@localhost"
    session.commit()  # no transaction stays open across SMTP
    lease = timedelta(seconds=float(config["NOTIFY_SEND_LEASE"]))
    for address in recipients:
        def send(address=address):
            send_message(config, build_message(
                address, rendered.subject, rendered.text, rendered.html,
                {"Auto-Submitted": "auto-generated", "X-Incidents-Report": key},
                sender=sender, message_id=message_id_for(f"{key}/{address}", sender)))

        deliver_once(session, key, Delivery(Channel.EMAIL, address, address), None, lease, result, send)
    return result


def _settled(session: Session, key: str, recipients: list[str]) -> bool:
    """Every recipient of `key` has a final log row (sent, or refused for good)."""
    done = set(session.scalars(sa.select(NotificationLog.recipient).where(
        NotificationLog.event_key == key, NotificationLog.channel == Channel.EMAIL,
        NotificationLog.status.in_([DeliveryStatus.SENT, DeliveryStatus.REJECTED]))))
    return set(recipients) <= done


def send_due_reports(session: Session, config: Mapping, now: datetime) -> dict[str, NotificationReport]:
    """The periodic job's body: send the due week's report of every team (and the global list) still owed it.

    Runs every few minutes; a missed tick, a dead run or an SMTP outage is caught up by a later one."""
    week = due_week(now, config)
    out: dict[str, NotificationReport] = {}
    for team in [None, *catalog.list_teams(session)]:
        recipients = recipients_for(session, config, team)
        key = report_key(week, team)
        if recipients and not _settled(session, key, recipients):
            out[key] = send_weekly_report(session, config, week=week, team=team, now=now)
    session.commit()
    return out


def delivery_log(session: Session, limit: int = 50) -> list[NotificationLog]:
    """The latest weekly-report deliveries, failures first: what the settings page reports."""
    stmt = (sa.select(NotificationLog).where(NotificationLog.event_key.startswith(KEY_PREFIX))
            .order_by(NotificationLog.status == DeliveryStatus.SENT, NotificationLog.id.desc()).limit(limit))
    return list(session.scalars(stmt))
