"""The tech-debt ledger: every action item is debt from its creation until it is done or won't do.

Read-only. One query loads the items of a scope (team, service) with the facts the ledger needs; the figures
are computed in Python from those rows, so every figure can also name the items behind it (dashboard links).
Weeks are ISO weeks (Monday to Monday) in the report's time zone; moments are timezone-aware UTC.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from incidents.action_item.models import ActionItem, ItemStatus
from incidents.alert.models import Alert
from incidents.auth.models import User
from incidents.incident.models import Incident
from incidents.postmortem.models import Postmortem

# Aging buckets of open debt, in days: (label, lowest age, highest age or None).
AGE_BUCKETS = (("0–7 days", 0, 7), ("8–30 days", 8, 30), ("31–90 days", 31, 90), ("over 90 days", 91, None))
RATE_WEEKS = 4  # the repayment rate looks back this many weeks


# --- weeks -------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Week:
    """One ISO week in a time zone; `start` and `end` (exclusive) are UTC moments."""

    monday: date
    tz: ZoneInfo = field(compare=False)

    @classmethod
    def containing(cls, moment: datetime, tz: ZoneInfo) -> Week:
        local = moment.astimezone(tz).date()
        return cls(local - timedelta(days=local.weekday()), tz)

    @classmethod
    def parse(cls, text: str, tz: ZoneInfo) -> Week:
        """`2026-W47` (ISO year and week); ValueError otherwise."""
        year, _, week = text.strip().upper().partition("-W")
        if not (year.isdigit() and week.isdigit()):
            raise ValueError(f"not an ISO week (YYYY-Www): {text!r}")
        return cls(date.fromisocalendar(int(year), int(week), 1), tz)

    @property
    def label(self) -> str:
        year, week, _ = self.monday.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.monday, time(), self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    def next(self) -> Week:
        return Week(self.monday + timedelta(days=7), self.tz)

    def previous(self) -> Week:
        return Week(self.monday - timedelta(days=7), self.tz)

    def back(self, n: int) -> Week:
        return Week(self.monday - timedelta(days=7 * n), self.tz)

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def __str__(self) -> str:
        return self.label


# --- the rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """What the ledger knows of one action item."""

    id: int
    title: str
    status: ItemStatus
    created_at: datetime
    closed_at: datetime | None
    due_date: date | None
    estimate: int | None
    wont_do_reason: str
    owner_id: int | None
    owner_name: str | None
    owner_email: str | None
    postmortem_id: int
    incident_id: int
    team_id: int | None
    service_id: int | None
    card_url: str | None = None

    @property
    def incident_ref(self) -> str:
        return f"INC-{self.incident_id}"

    @property
    def points(self) -> int:
        return self.estimate or 0

    def open_at(self, moment: datetime) -> bool:
        """Debt at `moment`: created by then and not yet closed."""
        return self.created_at < moment and (self.closed_at is None or self.closed_at >= moment)

    def overdue_at(self, moment: datetime, tz: ZoneInfo) -> bool:
        """Open and past its due date on the local day of `moment` (an item due today is not overdue yet)."""
        return self.due_date is not None and self.open_at(moment) and self.due_date < moment.astimezone(tz).date()

    def age_days(self, moment: datetime) -> int:
        return max((moment - self.created_at).days, 0)

    def repaid_in(self, week: Week) -> bool:
        return self.status == ItemStatus.DONE and self.closed_at is not None and self.closed_at in week

    def written_off_in(self, week: Week) -> bool:
        return self.status == ItemStatus.WONT_DO and self.closed_at is not None and self.closed_at in week


def card_url(item: ActionItem) -> str | None:
    """The Shortcut card of an item, once its export has created one."""
    return item.export.story_url if item.export is not None else None


def load_items(session: Session, *, team_id: int | None = None, service_id: int | None = None,
               created_before: datetime | None = None) -> list[Item]:
    """Every action item of the scope (the team or service of its incident), oldest first, in one query."""
    stmt = (
        sa.select(ActionItem, User.name, User.email, Incident.id, Incident.team_id, Incident.service_id)
        .join(Postmortem, ActionItem.postmortem_id == Postmortem.id)
        .join(Incident, Postmortem.incident_id == Incident.id)
        .outerjoin(User, ActionItem.owner_id == User.id)
        .order_by(ActionItem.created_at, ActionItem.id)
        .options(selectinload(ActionItem.export))
    )
    if team_id is not None:
        stmt = stmt.where(Incident.team_id == team_id)
    if service_id is not None:
        stmt = stmt.where(Incident.service_id == service_id)
    if created_before is not None:
        stmt = stmt.where(ActionItem.created_at < created_before)
    return [
        Item(id=a.id, title=a.title, status=a.status, created_at=a.created_at, closed_at=a.closed_at,
             due_date=a.due_date, estimate=a.estimate, wont_do_reason=a.wont_do_reason, owner_id=a.owner_id,
             owner_name=name, owner_email=email, postmortem_id=a.postmortem_id, incident_id=incident_id,
             team_id=team_id_, service_id=service_id_, card_url=card_url(a))
        for a, name, email, incident_id, team_id_, service_id_ in session.execute(stmt)
    ]


# --- repeat incidents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatFlag:
    """Incident `incident_id` hit what `source_id` was about while `open_items` of its action items were open."""

    incident_id: int
    source_id: int
    open_items: int
    reasons: tuple[str, ...]  # "same service", "same alert fingerprint"

    @property
    def incident_ref(self) -> str:
        return f"INC-{self.incident_id}"

    @property
    def source_ref(self) -> str:
        return f"INC-{self.source_id}"

    @property
    def text(self) -> str:
        n = self.open_items
        return f"repeat, {n} item{'s' if n != 1 else ''} still open from {self.source_ref}"


def repeat_flags(session: Session, incidents: Iterable[Incident], limit: int | None = None
                 ) -> dict[int, list[RepeatFlag]]:
    """For each incident: the earlier incidents on the same service or alert fingerprint whose post-mortem
    still had open action items when it was declared, the most recent first. The debt that bit back.

    With `limit` and one incident (its page), the service's earlier incidents are walked newest first and the walk
    stops after `limit` + 1 repeats, so at most that many come back: a busy service at a million incidents has
    thousands, and counting them all cost PostgreSQL 100-400 ms a page."""
    targets = {i.id: i for i in incidents if i.id is not None}
    if not targets:
        return {}
    fps: dict[int, set[str]] = defaultdict(set)
    for incident_id, fp in session.execute(sa.select(Alert.incident_id, Alert.fingerprint)
                                           .where(Alert.incident_id.in_(targets))):
        fps[incident_id].add(fp)
    by_fp: dict[str, set[int]] = defaultdict(set)
    all_fps = set().union(*fps.values()) if fps else set()
    if all_fps:
        for incident_id, fp in session.execute(sa.select(Alert.incident_id, Alert.fingerprint).where(
                Alert.fingerprint.in_(all_fps), Alert.incident_id.is_not(None))):
            by_fp[fp].add(incident_id)
    fp_sources = set().union(*by_fp.values()) if by_fp else set()
    repeat_of = {i.repeat_of_id for i in targets.values() if i.repeat_of_id}
    services = {i.service_id for i in targets.values() if i.service_id}
    # Only items that could count below: made before the latest target, still open at the earliest. Without
    # this every action item of the service came back (tens of thousands at a million incidents).
    latest = max(t.created_at for t in targets.values())
    earliest = min(t.created_at for t in targets.values())
    if limit is not None and len(targets) == 1 and services:
        (target,) = targets.values()
        at = target.created_at
        open_then = sa.exists().where(
            Postmortem.incident_id == Incident.id, ActionItem.postmortem_id == Postmortem.id,
            ActionItem.created_at < at, sa.or_(ActionItem.closed_at.is_(None), ActionItem.closed_at >= at))
        walked = session.scalars(
            sa.select(Incident.id).where(Incident.service_id == target.service_id, Incident.created_at < at,
                                         Incident.id != target.id, open_then)
            .order_by(Incident.created_at.desc()).limit(limit + 1)).all()  # (no id: the service index walks alone)
        candidates = Incident.id.in_(set(walked) | fp_sources | repeat_of)
    else:
        candidates = sa.or_(Incident.service_id.in_(services), Incident.id.in_(fp_sources | repeat_of))
    rows = session.execute(
        sa.select(Incident.id, Incident.created_at, Incident.service_id, ActionItem.created_at, ActionItem.closed_at)
        .join(Postmortem, Postmortem.incident_id == Incident.id)
        .join(ActionItem, ActionItem.postmortem_id == Postmortem.id)
        .where(candidates, Incident.created_at < latest, ActionItem.created_at < latest,
               sa.or_(ActionItem.closed_at.is_(None), ActionItem.closed_at >= earliest))
    ).all()
    sources: dict[int, dict] = {}
    for sid, s_created, s_service, i_created, i_closed in rows:
        src = sources.setdefault(sid, {"created": s_created, "service": s_service, "items": []})
        src["items"].append((i_created, i_closed))
    out: dict[int, list[RepeatFlag]] = {}
    for tid, target in targets.items():
        flags = []
        for sid, src in sources.items():
            if sid == tid or src["created"] >= target.created_at:
                continue
            reasons = []
            if target.service_id and src["service"] == target.service_id:
                reasons.append("same service")
            if target.repeat_of_id == sid or any(sid in by_fp[fp] for fp in fps.get(tid, ())):
                reasons.append("same alert fingerprint")
            if not reasons:
                continue
            at = target.created_at
            still_open = sum(1 for made, closed in src["items"] if made < at and (closed is None or closed >= at))
            if still_open:
                flags.append((src["created"], RepeatFlag(tid, sid, still_open, tuple(reasons))))
        if flags:
            out[tid] = [f for _, f in sorted(flags, key=lambda p: p[0], reverse=True)][:None if limit is None
                                                                                        else limit + 1]
    return out


def incidents_in(session: Session, start: datetime, end: datetime, *, team_id: int | None = None,
                 service_id: int | None = None) -> list[Incident]:
    """Incidents declared in [start, end) within the scope, oldest first."""
    stmt = sa.select(Incident).where(Incident.created_at >= start, Incident.created_at < end)
    if team_id is not None:
        stmt = stmt.where(Incident.team_id == team_id)
    if service_id is not None:
        stmt = stmt.where(Incident.service_id == service_id)
    return list(session.scalars(stmt.order_by(Incident.created_at, Incident.id)))


# --- the ledger ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeekFigures:
    week: Week
    opened: list[Item]
    repaid: list[Item]
    written_off: list[Item]
    balance: list[Item]  # open at the end of the week (or now, for the current week)
    overdue: list[Item]

    @property
    def balance_points(self) -> int:
        return sum(i.points for i in self.balance)


@dataclass(frozen=True)
class OwnerDebt:
    owner_id: int | None
    name: str
    items: list[Item]


@dataclass
class Ledger:
    """The figures of one scope and period; `as_of` is when "now" is for the open balance and ages."""

    weeks: list[WeekFigures]
    items: list[Item]
    as_of: datetime
    tz: ZoneInfo
    repeats: list[RepeatFlag] = field(default_factory=list)

    @property
    def last(self) -> WeekFigures:
        return self.weeks[-1]

    @property
    def opened(self) -> list[Item]:
        return [i for w in self.weeks for i in w.opened]

    @property
    def repaid(self) -> list[Item]:
        return [i for w in self.weeks for i in w.repaid]

    @property
    def written_off(self) -> list[Item]:
        return [i for w in self.weeks for i in w.written_off]

    @property
    def open_items(self) -> list[Item]:
        return [i for i in self.items if i.open_at(self.as_of)]

    @property
    def open_points(self) -> int:
        return sum(i.points for i in self.open_items)

    @property
    def overdue(self) -> list[Item]:
        return sorted((i for i in self.items if i.overdue_at(self.as_of, self.tz)), key=lambda i: (i.due_date, i.id))

    @property
    def median_age_days(self) -> float | None:
        ages = [i.age_days(self.as_of) for i in self.open_items]
        return statistics.median(ages) if ages else None

    @property
    def oldest(self) -> Item | None:
        return min(self.open_items, key=lambda i: (i.created_at, i.id), default=None)

    def repayment_rate(self, weeks_back: int = 0) -> float | None:
        """Repaid / opened over the RATE_WEEKS weeks ending `weeks_back` weeks before the last; None if none opened."""
        end = len(self.weeks) - weeks_back
        window = self.weeks[max(end - RATE_WEEKS, 0):end]
        opened = sum(len(w.opened) for w in window)
        return sum(len(w.repaid) for w in window) / opened if opened else None

    def aging(self) -> list[tuple[str, list[Item]]]:
        out = []
        for label, low, high in AGE_BUCKETS:
            out.append((label, [i for i in self.open_items
                                if i.age_days(self.as_of) >= low and (high is None or i.age_days(self.as_of) <= high)]))
        return out

    def overdue_by_owner(self) -> list[OwnerDebt]:
        groups: dict[int | None, list[Item]] = defaultdict(list)
        for item in self.overdue:
            groups[item.owner_id].append(item)
        owners = [OwnerDebt(oid, items[0].owner_name or "Unassigned", items) for oid, items in groups.items()]
        return sorted(owners, key=lambda o: (-len(o.items), o.name))

    def written_off_reasons(self) -> list[Item]:
        return [i for i in self.written_off if i.wont_do_reason]

    def week(self, label: str) -> WeekFigures | None:
        return next((w for w in self.weeks if w.week.label == label), None)

    def figure(self, name: str, week: str | None = None) -> list[Item]:
        """The items behind one figure: opened, repaid, written_off, balance, overdue (of a week, or the
        period / now), age:<bucket index>, owner:<id or none>. Unknown names give nothing."""
        if week:
            wf = self.week(week)
            if wf is None or name not in ("opened", "repaid", "written_off", "balance", "overdue"):
                return []
            return list(getattr(wf, name))
        if name in ("opened", "repaid", "written_off", "overdue"):
            return list(getattr(self, name))
        if name in ("balance", "open"):
            return self.open_items
        kind, _, arg = name.partition(":")
        if kind == "age" and arg.isdigit() and int(arg) < len(AGE_BUCKETS):
            return self.aging()[int(arg)][1]
        if kind == "owner":
            oid = int(arg) if arg.isdigit() else None
            return next((o.items for o in self.overdue_by_owner() if o.owner_id == oid), [])
        return []

    def by(self, key: str) -> dict[int | None, dict]:
        """Open balance, points and overdue per team_id or service_id (the breakdown table)."""
        out: dict[int | None, dict] = defaultdict(lambda: {"open": 0, "points": 0, "overdue": 0})
        for item in self.open_items:
            row = out[getattr(item, key)]
            row["open"] += 1
            row["points"] += item.points
            row["overdue"] += item.overdue_at(self.as_of, self.tz)
        return dict(out)


def build_ledger(session: Session, *, now: datetime, tz: ZoneInfo, weeks: int = 12, until: Week | None = None,
                 team_id: int | None = None, service_id: int | None = None, with_repeats: bool = True) -> Ledger:
    """The ledger of `weeks` weeks ending with `until` (default: the week of `now`, so far)."""
    until = until or Week.containing(now, tz)
    as_of = min(until.end, now)
    items = load_items(session, team_id=team_id, service_id=service_id, created_before=as_of)
    figures = []
    for n in range(max(weeks, 1) - 1, -1, -1):
        week = until.back(n)
        moment = min(week.end, as_of)
        figures.append(WeekFigures(
            week=week,
            opened=[i for i in items if i.created_at in week],
            repaid=[i for i in items if i.repaid_in(week)],
            written_off=[i for i in items if i.written_off_in(week)],
            balance=[i for i in items if i.open_at(moment)],
            overdue=[i for i in items if i.overdue_at(moment, tz)],
        ))
    ledger = Ledger(figures, items, as_of, tz)
    if with_repeats:
        period = incidents_in(session, figures[0].week.start, as_of, team_id=team_id, service_id=service_id)
        flags = repeat_flags(session, period)
        ledger.repeats = [f for i in period for f in flags.get(i.id, [])[:1]]
    return ledger
