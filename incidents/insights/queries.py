"""The insights' figures, aggregated in the database (GROUP BY), never by loading incidents into Python.

Which incidents: those whose impact started (`started_at`) from `since` 00:00 UTC up to the end of `until`
(both dates included), in the scope's team, service and severities. Durations are durations.py's metrics in whole
seconds (the columns Incident.seconds_*); percentiles are nearest-rank: the p-th percentile of n sorted values is
the value at rank ceil(p * n / 100), from 1. Each percentile comes with the count it is based on.
"""

from __future__ import annotations

import json
import threading
import time as clock
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from incidents.action_item.models import ActionItem, ItemStatus, ItemType
from incidents.bounds import MAX_INT
from incidents.catalog import services as catalog
from incidents.catalog.models import Service, Team
from incidents.errors import Invalid, NotFound
from incidents.incident.durations import LABELS, STORED_COLUMNS, seconds_between
from incidents.incident.models import Incident, Severity
from incidents.postmortem.models import ContributingFactor, FactorCategory, Postmortem, PostmortemStatus

DEFAULT_DAYS = 90
MAX_DAYS = 3660
PERIODS = ("week", "month")
PERCENTILES = (50, 90)
SEVERITIES = tuple(s.value for s in Severity)
HIGH_SEVERITIES = ("SEV1", "SEV2")  # the ones every incident of deserves a published post-mortem
DRILL_LIMIT = 200  # incidents a drill-down page lists (it says how many more there are)


# --- percentiles ------------------------------------------------------------------------------------

def rank(n: int, percent: int) -> int:
    """The nearest rank of the `percent`-th percentile of n values: ceil(percent * n / 100), from 1 (integers only,
    so no floating point near the boundaries)."""
    return max(1, -(-percent * n // 100))


def value_at(histogram: Iterable[tuple[int, int]], k: int) -> tuple[int, int]:
    """The value at rank k of (value, how many) pairs sorted by value, and its rank within that value's pair."""
    seen = 0
    for value, count in histogram:
        if seen + count >= k:
            return value, k - seen
        seen += count
    raise ValueError(f"rank {k} beyond {seen} values")


def nearest_rank(histogram: Sequence[tuple[int, int]], percent: int) -> int | None:
    """The `percent`-th percentile of the values in `histogram` ((value, how many), sorted by value) by the
    nearest-rank method: the value at rank ceil(percent * n / 100), ranks from 1; None when there are none."""
    n = sum(count for _, count in histogram)
    return value_at(histogram, rank(n, percent))[0] if n else None


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: int | None
    p90: int | None

    @classmethod
    def of(cls, histogram: Sequence[tuple[int, int]]) -> Percentiles:
        ordered = sorted(histogram)
        return cls(sum(c for _, c in ordered), nearest_rank(ordered, 50), nearest_rank(ordered, 90))

    @classmethod
    def of_values(cls, values: Iterable[int]) -> Percentiles:
        ordered = sorted(values)
        n = len(ordered)
        return cls(n, *(ordered[rank(n, p) - 1] if n else None for p in PERCENTILES))

    def as_dict(self) -> dict:
        return {"count": self.count, "p50": self.p50, "p90": self.p90}


# --- the scope --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """Which incidents a figure counts: the period (dates, both included), team, service and severities."""

    since: date
    until: date
    team: Team | None = None
    service: Service | None = None
    severities: tuple[str, ...] = ()
    period: str = "week"

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight UTC after `until`."""
        return datetime.combine(self.until + timedelta(days=1), time(), UTC)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def args(self, **extra) -> dict:
        """The query string that gives this scope back (links, forms), plus `extra`; empty values dropped."""
        out = {"since": self.since.isoformat(), "until": self.until.isoformat(),
               "team": self.team.slug if self.team else None, "service": self.service.slug if self.service else None,
               "severity": ",".join(self.severities) or None, "period": self.period} | extra
        return {k: v for k, v in out.items() if v not in (None, "")}

    def as_dict(self) -> dict:
        return {"since": self.since, "until": self.until, "start": self.start, "end": self.end,
                "team": self.team.slug if self.team else None,
                "service": self.service.slug if self.service else None, "severity": list(self.severities),
                "period": self.period}

    def where(self) -> list:
        """The WHERE clauses on `incident` for this scope."""
        return [Incident.started_at >= self.start, Incident.started_at < self.end, *self.filters()]

    def filters(self) -> list:
        """The scope's clauses other than its period."""
        clauses = []
        # Team, service and severity are tested inside the period's (or a duration's) covering index
        # (not_indexed): driving from their own indexes would read every incident of the team since the
        # beginning, row by row.
        if self.team is not None:
            clauses.append(not_indexed(Incident.team_id) == self.team.id)
        if self.service is not None:
            clauses.append(not_indexed(Incident.service_id) == self.service.id)
        if self.severities:
            clauses.append(not_indexed(Incident.severity).in_(self.severities))
        return clauses


def _date(raw: str, name: str) -> date:
    try:
        value = date.fromisoformat(raw.strip())
    except ValueError:
        raise Invalid(f"{name} is a date, YYYY-MM-DD.", {name: ["A date, YYYY-MM-DD."]}) from None
    if not 1970 <= value.year <= 2999:
        raise Invalid(f"{name} is outside 1970 to 2999.", {name: ["From 1970 to 2999."]})
    return value


def _lookup(find, session: Session, key: str, name: str):
    key = key.strip()
    if key.isascii() and key.isdigit() and int(key) > MAX_INT:  # an id no column holds: unknown, not a 500
        raise Invalid(f"No {name} {key!r}.", {name: [f"No {name} {key!r}."]})
    try:
        return find(session, key)
    except NotFound as e:
        raise Invalid(e.message, {name: [e.message]}) from None


def parse_scope(session: Session, args: Mapping[str, str], today: date, *, severities: Sequence[str] = ()) -> Scope:
    """The scope from query parameters (`since`, `until`, `team`, `service`, `severity`, `period`); a value
    that cannot be read, or a team or service that does not exist, is a 422 naming the parameter."""
    until = _date(args["until"], "until") if args.get("until") else today
    since = _date(args["since"], "since") if args.get("since") else until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise Invalid("since is after until.", {"since": ["On or before until."]})
    if (until - since).days + 1 > MAX_DAYS:
        raise Invalid(f"The period is at most {MAX_DAYS} days.", {"since": [f"At most {MAX_DAYS} days before until."]})
    team = _lookup(catalog.get_team, session, args["team"], "team") if args.get("team") else None
    service = _lookup(catalog.get_service, session, args["service"], "service") if args.get("service") else None
    wanted = [v.strip().upper() for raw in severities for v in raw.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in SEVERITIES]
    if unknown:
        raise Invalid(f"Unknown severity {unknown[0]!r}; use {', '.join(SEVERITIES)}.",
                      {"severity": [f"One or more of {', '.join(SEVERITIES)}."]})
    period = (args.get("period") or "week").strip()
    if period not in PERIODS:
        raise Invalid("period is week or month.", {"period": ["week or month."]})
    return Scope(since, until, team, service, tuple(s for s in SEVERITIES if s in wanted), period)


# --- periods ----------------------------------------------------------------------------------------

def bucket_of(day: date, period: str) -> date:
    """The first day of the week (Monday, ISO) or month that `day` falls in."""
    return day - timedelta(days=day.weekday()) if period == "week" else day.replace(day=1)


def bucket_label(first: date, period: str) -> str:
    if period == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{first:%Y-%m}"


def buckets(scope: Scope) -> list[date]:
    """Every bucket the scope touches, oldest first (empty ones included)."""
    out, first = [], bucket_of(scope.since, scope.period)
    while first <= scope.until:
        out.append(first)
        first = first + timedelta(days=7) if scope.period == "week" else (first + timedelta(days=32)).replace(day=1)
    return out


def parse_bucket(label: str, period: str) -> date:
    """The first day of a bucket label (2026-W47 or 2026-11); ValueError otherwise."""
    if period == "week":
        year, _, week = label.partition("-W")
        return date.fromisocalendar(int(year), int(week), 1)
    year, _, month = label.partition("-")
    return date(int(year), int(month), 1)


def _utc_day(session: Session, column):
    """The UTC calendar day of a moment as YYYY-MM-DD text (SQLite stores UTC text; PostgreSQL timestamptz)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)


class not_indexed(FunctionElement):
    """A column whose index the query should not drive from: `+column` on SQLite, the column elsewhere. Without
    statistics (the app never runs ANALYZE) SQLite drives any join from an equality on an index, such as every
    published post-mortem by status, and probes the incidents for the period; the period's range is the
    selective side. PostgreSQL's planner has statistics and needs no hint."""

    inherit_cache = True
    name = "not_indexed"

    @property
    def type(self):
        return self.clauses.clauses[0].type


@compiles(not_indexed)
def _plain(element, compiler, **kw):
    return compiler.process(element.clauses.clauses[0], **kw)


@compiles(not_indexed, "sqlite")
def _plus(element, compiler, **kw):
    return "+" + compiler.process(element.clauses.clauses[0], **kw)


PUBLISHED = not_indexed(Postmortem.status) == PostmortemStatus.PUBLISHED


# --- parts: the mergeable state of each kind of figure ----------------------------------------------
#
# Every figure is computed in two steps: a *part* counts what the figure needs for a set of incidents (a period,
# or one day of the roll-up), then a *finish* turns the part into the figure. Parts of disjoint sets of incidents
# add up (Counter by Counter), which is what lets rollup.py keep one per day and per month: the figures of a scope
# are the same whether its part was counted now or added up from stored days.

# field -> Counter(key tuple of str/int/None -> count), a scalar's key being (); or, for a field named *_values,
# the list of values themselves (exact values with few repeats: a list is far cheaper to store and add up).
Part = dict[str, Counter | list]
PARTS = ("volume", "response", "factors", "follow")


def _is_values(name: str) -> bool:
    return name.endswith("_values")


def _text(value) -> str | None:
    """A key as JSON gives it back: enums and dates as their text, None kept."""
    if value is None or isinstance(value, int):
        return value
    return value.isoformat() if isinstance(value, date) else str(value)


def merge_parts(parts: Iterable[Part]) -> Part:
    out: Part = defaultdict(Counter)
    for part in parts:
        for name, counts in part.items():
            if _is_values(name):
                out.setdefault(name, []).extend(counts)
            else:
                out[name].update(counts)
    return out


def part_json(part: Part) -> str:
    return json.dumps({name: counts if _is_values(name) else [[*key, n] for key, n in counts.items() if n]
                       for name, counts in part.items()}, separators=(",", ":"))


def part_from_json(text: str) -> Part:
    out: Part = defaultdict(Counter)
    for name, rows in json.loads(text).items():
        out[name] = rows if _is_values(name) else Counter({tuple(row[:-1]): row[-1] for row in rows})
    return out


Key = tuple[str, int | None, int | None, str] | None  # (UTC day of impact start "YYYY-MM-DD", team, service, severity)


def compute_parts(session: Session, name: str, where: Sequence, by_day: bool = False) -> dict[Key, Part]:
    """The part `name` of the incidents matching `where`: with `by_day`, one per (day, team, service, severity)
    the incidents fall in (what the roll-up stores, by day and by team, service or severity), else one under
    None. A key without incidents has no entry."""
    return _COMPUTE[name](session, list(where), by_day)


def _grouped(session: Session, by_day: bool) -> list:
    return [_utc_day(session, Incident.started_at), Incident.team_id, Incident.service_id,
            Incident.severity] if by_day else []


def _key(row, by_day: bool) -> Key:
    return (row[0], row[1], row[2], _text(row[3])) if by_day else None


# --- response times and volume ----------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    all: Percentiles
    by_severity: dict[str, Percentiles]


@dataclass(frozen=True)
class Group:
    """One row of a breakdown: its key (slug, severity, source), what people read, and how many incidents."""

    key: str | None
    name: str
    incidents: int
    repeats: int = 0


@dataclass
class Volume:
    total: int
    repeats: int
    by_severity: list[Group]
    by_service: list[Group]
    by_team: list[Group]
    by_source: list[Group]
    trend: list[tuple[str, int]]  # (bucket label, incidents)

    @property
    def repeat_rate(self) -> float | None:
        return self.repeats / self.total if self.total else None

    @property
    def repeating_services(self) -> list[Group]:
        return sorted((g for g in self.by_service if g.repeats), key=lambda g: (-g.repeats, g.name))


BUCKET_SECONDS = ((7200, 60), (None, 600))  # (below, width): minutes up to two hours, ten minutes beyond


def seconds_bucket(column):
    """The coarse bucket of a whole-seconds duration, as its first second (durations are never negative). Buckets
    stay few whatever the period, so a part's histogram stays small; a percentile's exact second is read
    afterwards inside its bucket only, one index seek per second the bucket can hold (`_fine_seconds`)."""
    (below, minute), (_, wide) = BUCKET_SECONDS
    return sa.case((column < below, column // minute * minute), else_=column // wide * wide)


def _width(lo: int) -> int:
    return next(width for below, width in BUCKET_SECONDS if below is None or lo < below)


def _response_parts(session: Session, where: list, by_day: bool) -> dict[Key, Part]:
    """Per metric and severity, how many incidents fall in each coarse bucket of seconds."""
    out: dict[Key, Part] = defaultdict(lambda: defaultdict(Counter))
    day = _grouped(session, by_day)
    for key, name in STORED_COLUMNS.items():
        column = getattr(Incident, name)
        bucket = seconds_bucket(column)
        for row in session.execute(sa.select(*day, Incident.severity, bucket, sa.func.count())
                                   .where(*where, column.is_not(None)).group_by(*day, Incident.severity, bucket)):
            severity, lo, n = row[-3:]
            out[_key(row, by_day)]["hist"][key, _text(severity), int(lo)] += n
    return out


def response_times(session: Session, scope: Scope, part: Part) -> list[Metric]:
    """p50 and p90 of every metric, over all severities and per severity (every severity listed, even empty).

    Exact nearest rank: the part's histogram says which bucket holds each wanted rank and the rank within it;
    one pass per metric then counts the exact seconds of those buckets only, over the scope's incidents."""
    hist: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for (key, severity, lo), n in part.get("hist", Counter()).items():
        if n:
            hist[key][severity][lo] += n
    shown = [s for s in SEVERITIES if not scope.severities or s in scope.severities]
    out = []
    for key, name in STORED_COLUMNS.items():
        per_severity = {s: sorted(h.items()) for s, h in hist[key].items()}
        groups = {None: _merge(per_severity.values())} | per_severity
        wanted = {}  # (group, percent) -> (bucket, rank within the bucket)
        for group, h in groups.items():
            n = sum(c for _, c in h)
            for percent in PERCENTILES:
                if n:
                    wanted[group, percent] = value_at(h, rank(n, percent))
        fine = _fine_seconds(session, scope, getattr(Incident, name), sorted({lo for lo, _ in wanted.values()}))
        per = {}
        for group, h in groups.items():
            values = {}
            for percent in PERCENTILES:
                if (group, percent) in wanted:
                    lo, k = wanted[group, percent]
                    seconds = _merge([fine[s][lo] for s in fine]) if group is None else sorted(fine[group][lo])
                    # A change committed since the part was counted can leave the bucket short: its last value.
                    values[percent] = value_at(seconds, min(k, sum(c for _, c in seconds)))[0] if seconds else lo
            per[group] = Percentiles(sum(c for _, c in h), values.get(50), values.get(90))
        out.append(Metric(key, LABELS[key], per[None], {s: per.get(s, Percentiles(0, None, None)) for s in shown}))
    return out


def _fine_seconds(session: Session, scope: Scope, column, buckets: list[int]) -> dict[str, dict[int, list]]:
    """severity -> bucket -> [(second, how many)] of the scope's incidents in `buckets`, from the metric's own
    index (ix_incident_seconds_*: seconds, then started_at): one seek per second of each bucket, each reading
    only that second's incidents of the period, so a dense bucket costs its matches, not the whole period."""
    fine: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    seconds = [v for lo in buckets for v in range(lo, lo + _width(lo))]
    if seconds:
        # The seconds inline (hundreds of integers): bound one by one they cost more to bind than the query runs.
        stmt = (sa.select(column, sa.type_coerce(Incident.severity, sa.String), sa.func.count())
                .where(column.in_(sa.bindparam("seconds", seconds, expanding=True, literal_execute=True)),
                       *scope.where()).group_by(column, Incident.severity))
        (below, minute), (_, wide) = BUCKET_SECONDS
        for value, severity, count in session.execute(stmt):  # thousands of rows: no call per row
            fine[severity][value - value % (minute if value < below else wide)].append((value, count))
    return fine


def _merge(histograms: Iterable[Iterable[tuple[int, int]]]) -> list[tuple[int, int]]:
    total: Counter = Counter()
    for hist in histograms:
        for value, count in hist:
            total[value] += count
    return sorted(total.items())


def _volume_parts(session: Session, where: list, by_day: bool) -> dict[Key, Part]:
    """Incidents and repeats per (severity, service, team, source), and incidents per day."""
    out: dict[Key, Part] = defaultdict(lambda: defaultdict(Counter))
    keys = (Incident.severity, Incident.service_id, Incident.team_id, Incident.source)
    day = _utc_day(session, Incident.started_at)
    # Per day, one GROUP BY gives both; over a whole period two are cheaper (fewer groups in the sorter).
    grouped = _grouped(session, by_day) + list(keys)
    for row in session.execute(sa.select(*grouped, sa.func.count(), sa.func.count(Incident.repeat_of_id))
                               .where(*where).group_by(*grouped)):
        p = out[_key(row, by_day)]
        severity, service_id, team_id, source, n, repeats = row[-6:]
        key = (_text(severity), service_id, team_id, _text(source))
        p["incidents"][key] += n
        if repeats:
            p["repeats"][key] += repeats
        if by_day:
            p["days"][row[0],] += n
    if not by_day:
        for text, n in session.execute(sa.select(day, sa.func.count()).where(*where).group_by(day)):
            out[None]["days"][text,] += n
    return out


def volume(session: Session, scope: Scope, part: Part) -> Volume:
    """Incidents by severity, service, team and source, repeats, and incidents per bucket of the period."""
    sev, svc, team, src = Counter(), Counter(), Counter(), Counter()
    svc_rep, team_rep = Counter(), Counter()
    repeats = part.get("repeats", Counter())
    for key, n in part.get("incidents", Counter()).items():
        severity, service_id, team_id, source = key
        rep = repeats.get(key, 0)
        sev[severity] += n
        svc[service_id] += n
        svc_rep[service_id] += rep
        team[team_id] += n
        team_rep[team_id] += rep
        src[source] += n
    services = [s for s in catalog.list_services(session)
                if (scope.service is None or s.id == scope.service.id) and (scope.team is None
                                                                            or s.team_id == scope.team.id)]
    teams = [t for t in catalog.list_teams(session) if scope.team is None or t.id == scope.team.id]
    by_service = [Group(s.slug, s.name, svc[s.id], svc_rep[s.id]) for s in services]
    if svc[None]:
        by_service.append(Group(None, "No service", svc[None], svc_rep[None]))
    by_team = [Group(t.slug, t.name, team[t.id], team_rep[t.id]) for t in teams]
    if team[None]:
        by_team.append(Group(None, "No team", team[None], team_rep[None]))
    per_bucket: Counter = Counter()
    for (text,), n in part.get("days", Counter()).items():
        per_bucket[bucket_of(date.fromisoformat(text), scope.period)] += n
    return Volume(
        total=sum(sev.values()), repeats=sum(repeats.values()),
        by_severity=[Group(s, s, sev[s]) for s in SEVERITIES if not scope.severities or s in scope.severities],
        by_service=by_service, by_team=by_team,
        by_source=[Group(s, s, n) for s, n in sorted(src.items(), key=lambda kv: (-kv[1], kv[0])) if n],
        trend=[(bucket_label(b, scope.period), per_bucket[b]) for b in buckets(scope)])


# --- contributing factors ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Category:
    id: int
    slug: str
    name: str


@dataclass
class Factors:
    """Incidents whose published post-mortem names each category (an incident counts once per category)."""

    categories: list[Category]
    incidents: int  # incidents with a published post-mortem naming any factor
    by_category: dict[int, int]
    by_service: list[tuple[Group, dict[int, int]]]  # service -> category id -> incidents
    over_time: list[tuple[str, dict[int, int]]]  # bucket label -> category id -> incidents

    def total(self, category_id: int) -> int:
        return self.by_category.get(category_id, 0)


def _factor_parts(session: Session, where: list, by_day: bool) -> dict[Key, Part]:
    """One pass over the incidents' published factors (the day as text, no datetimes to build): incidents with
    any factor, per category, per service, per (service, category) and per (day, category); an incident counts
    once in each. An incident belongs to one day, so days' parts add up to the period's."""
    day = _utc_day(session, Incident.started_at)
    rows = session.execute(
        sa.select(Incident.id, ContributingFactor.category_id, Incident.service_id, day, Incident.team_id,
                  Incident.severity)
        .select_from(Incident)
        .join(Postmortem, Postmortem.incident_id == Incident.id)
        .join(ContributingFactor, ContributingFactor.postmortem_id == Postmortem.id)
        .where(PUBLISHED, *where)).all()
    sets: dict[Key, dict[str, dict[tuple, set[int]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
    for incident_id, category_id, service_id, text, team_id, severity in rows:
        s = sets[(text, team_id, service_id, _text(severity)) if by_day else None]
        for name, key in (("incidents", ()), ("category", (category_id,)), ("service", (service_id,)),
                          ("service_category", (service_id, category_id)), ("day_category", (text, category_id))):
            s[name][key].add(incident_id)
    return {d: defaultdict(Counter, {name: Counter({k: len(ids) for k, ids in keyed.items()})
                                     for name, keyed in s.items()}) for d, s in sets.items()}


def factors(session: Session, scope: Scope, part: Part) -> Factors:
    used = {category_id for (category_id,) in part.get("category", Counter())}
    categories = list(session.scalars(sa.select(FactorCategory).where(
        sa.or_(FactorCategory.active.is_(True), FactorCategory.id.in_(used or {0})))
        .order_by(FactorCategory.position, FactorCategory.name)))
    names = {s.id: s for s in catalog.list_services(session)}
    per_service: dict[int | None, dict[int, int]] = defaultdict(dict)
    for (service_id, category_id), n in part.get("service_category", Counter()).items():
        per_service[service_id][category_id] = n
    services = []
    for service_id, cats in sorted(per_service.items(), key=lambda kv: names[kv[0]].name if kv[0] in names else "~"):
        svc = names.get(service_id)
        services.append((Group(svc.slug if svc else None, svc.name if svc else "No service",
                               part["service"][service_id,]), cats))
    over_time: dict[date, Counter] = defaultdict(Counter)
    for (text, category_id), n in part.get("day_category", Counter()).items():
        over_time[bucket_of(date.fromisoformat(text), scope.period)][category_id] += n
    return Factors(categories=[Category(c.id, c.slug, c.name) for c in categories],
                   incidents=part.get("incidents", Counter())[()],
                   by_category={c: n for (c,), n in part.get("category", Counter()).items()}, by_service=services,
                   over_time=[(bucket_label(b, scope.period), dict(over_time[b])) for b in buckets(scope)])


# --- follow-through ---------------------------------------------------------------------------------

@dataclass
class FollowThrough:
    items: int  # action items of the scope's incidents' post-mortems
    done: int
    done_with_due: int  # done items that had a due date: the on-time share's base
    done_on_time: int  # closed on or before the due date (UTC day)
    wont_do: int
    open: int
    overdue: int  # open now and due before today (UTC)
    days_to_done: Percentiles  # whole UTC calendar days from creation to done
    overdue_by_type: list[tuple[str, int]]
    overdue_by_team: list[Group]
    lead_time: Percentiles  # seconds from the incident's resolution to its post-mortem's publication
    high_severity: int  # SEV1/SEV2 incidents of the scope
    high_severity_published: int  # of those, with a published post-mortem
    today: date = field(default_factory=date.today)

    @property
    def on_time_rate(self) -> float | None:
        return self.done_on_time / self.done_with_due if self.done_with_due else None

    @property
    def published_rate(self) -> float | None:
        return self.high_severity_published / self.high_severity if self.high_severity else None


def _utc_date(session: Session, column):
    """The UTC calendar day of a moment, comparable with a Date column (SQLite keeps dates as ISO text)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.substr(column, 1, 10)


def _days_between(session: Session, start, end):
    """Whole UTC calendar days from one moment's day to another's."""
    if session.get_bind().dialect.name == "postgresql":
        return _utc_date(session, end) - _utc_date(session, start)
    return sa.cast(sa.func.julianday(_utc_date(session, end)) - sa.func.julianday(_utc_date(session, start)),
                   sa.Integer)


def _follow_parts(session: Session, where: list, by_day: bool) -> dict[Key, Part]:
    """Action items by (status, type, team) with how many had a due date and were done on time, open items by
    (due date, type, team) (overdue depends on the day it is read), days to done, and the published
    post-mortems' lead times and SEV1/SEV2 coverage. Counted in the database (a year at a million incidents is
    tens of thousands of items)."""
    out: dict[Key, Part] = defaultdict(lambda: defaultdict(Counter))
    day = _grouped(session, by_day)
    is_done = not_indexed(ActionItem.status) == ItemStatus.DONE
    closed_due = sa.and_(is_done, ActionItem.due_date.is_not(None), ActionItem.closed_at.is_not(None))
    open_due = sa.case((ActionItem.status.not_in([ItemStatus.DONE, ItemStatus.WONT_DO]), ActionItem.due_date))

    def how_many(condition):
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    # One pass: the days to done of a done item join its group (NULL for the others), so the histogram of days
    # comes out of the same GROUP BY, and so does an open item's due date.
    days = sa.case((sa.and_(is_done, ActionItem.closed_at.is_not(None)),
                    _days_between(session, ActionItem.created_at, ActionItem.closed_at)))
    grouped = [*day, ActionItem.status, ActionItem.type, Incident.team_id, days, open_due]
    for row in session.execute(
            sa.select(*grouped, sa.func.count(), how_many(closed_due),
                      how_many(sa.and_(closed_due, _utc_date(session, ActionItem.closed_at) <= ActionItem.due_date)))
            .select_from(ActionItem).join(Postmortem, ActionItem.postmortem_id == Postmortem.id)
            .join(Incident, Postmortem.incident_id == Incident.id).where(*where).group_by(*grouped)):
        p = out[_key(row, by_day)]
        status, item_type, team_id, n_days, due, n, n_due, n_on_time = row[-8:]
        key = (_text(status), _text(item_type), team_id)
        p["items"][key] += n
        p["with_due"][key] += n_due
        p["on_time"][key] += n_on_time
        if n_days is not None:
            p["days_to_done"][int(n_days),] += n
        if due is not None:
            p["open_due"][_text(due)[:10], _text(item_type), team_id] += n
    # Post-mortems are far fewer than incidents: each published one's lead time and severity are read (one pass
    # for the lead time and the SEV1/SEV2 coverage). No test of resolved_at in SQL: on SQLite it would read every
    # incident's row, not only those with a published post-mortem.
    for row in session.execute(
            sa.select(*day, seconds_between(Incident.resolved_at, Postmortem.published_at), Incident.severity)
            .select_from(Incident).join(Postmortem, Postmortem.incident_id == Incident.id)
            .where(PUBLISHED, *where)):
        p = out[_key(row, by_day)]
        seconds, severity = row[-2:]
        if seconds is not None:
            p.setdefault("lead_values", []).append(int(seconds))
        if _text(severity) in HIGH_SEVERITIES:
            p["high_published"][()] += 1
    for row in session.execute(sa.select(*day, sa.func.count()).select_from(Incident).where(
            *where, not_indexed(Incident.severity).in_(HIGH_SEVERITIES)).group_by(*day)):
        out[_key(row, by_day)]["high"][()] += row[-1]
    return out


def follow_through(session: Session, scope: Scope, part: Part, today: date) -> FollowThrough:
    by_status, by_type, by_team, days = Counter(), Counter(), Counter(), Counter()
    for (status, _type, _team), n in part.get("items", Counter()).items():
        by_status[status] += n
    cutoff = today.isoformat()
    for (due, item_type, team_id), n in part.get("open_due", Counter()).items():
        if due < cutoff:
            by_type[item_type or "none"] += n
            by_team[team_id] += n
    for (n_days,), n in part.get("days_to_done", Counter()).items():
        days[n_days] += n
    teams = {t.id: t for t in catalog.list_teams(session)}
    return FollowThrough(
        items=sum(by_status.values()), done=by_status[ItemStatus.DONE],
        done_with_due=sum(part.get("with_due", Counter()).values()),
        done_on_time=sum(part.get("on_time", Counter()).values()), wont_do=by_status[ItemStatus.WONT_DO],
        open=by_status[ItemStatus.OPEN] + by_status[ItemStatus.IN_PROGRESS], overdue=sum(by_type.values()),
        days_to_done=Percentiles.of(list(days.items())),
        overdue_by_type=[(t.value, by_type[t.value]) for t in ItemType] + (
            [("none", by_type["none"])] if by_type["none"] else []),
        overdue_by_team=sorted((Group(teams[t].slug if t in teams else None, teams[t].name if t in teams
                                      else "No team", n) for t, n in by_team.items() if n),
                               key=lambda g: (-g.incidents, g.name)),
        lead_time=Percentiles.of_values(part.get("lead_values", [])),
        high_severity=part.get("high", Counter())[()],
        high_severity_published=part.get("high_published", Counter())[()], today=today)


_COMPUTE: dict[str, Callable[[Session, list, bool], dict[Key, Part]]] = {
    "volume": _volume_parts, "response": _response_parts, "factors": _factor_parts, "follow": _follow_parts,
}

# kind of figures -> (the part it is finished from, finish(session, scope, part, today))
FIGURES: dict[str, tuple[str, Callable[[Session, Scope, Part, date], Any]]] = {
    "response_times": ("response", lambda session, scope, part, today: response_times(session, scope, part)),
    "volume": ("volume", lambda session, scope, part, today: volume(session, scope, part)),
    "factors": ("factors", lambda session, scope, part, today: factors(session, scope, part)),
    "follow_through": ("follow", follow_through),
}


# --- a short-lived cache of figures -----------------------------------------------------------------

_CACHE: dict[tuple, tuple[float, Any]] = {}
_CACHE_LOCK = threading.Lock()
CACHE_ENTRIES = 64


def cached(kind: str, scope: Scope, compute: Callable[[], Any], seconds: float, *key: Any) -> Any:
    """`compute()`, or what it gave for the same figures, scope and `key` less than `seconds` ago in this process.
    The figures are plain data (no rows), so they outlive the request's session."""
    if seconds <= 0:
        return compute()
    full = (kind, tuple(sorted(scope.args().items())), *key)
    now = clock.monotonic()
    hit = _CACHE.get(full)
    if hit is not None and now - hit[0] < seconds:
        return hit[1]
    value = compute()
    with _CACHE_LOCK:
        if len(_CACHE) >= CACHE_ENTRIES:
            for old in sorted(_CACHE, key=lambda k: _CACHE[k][0])[:len(_CACHE) - CACHE_ENTRIES + 1]:
                _CACHE.pop(old, None)
        _CACHE[full] = (now, value)
    return value


# --- the incidents behind a figure ------------------------------------------------------------------

DRILL_FIGURES = ("factor", "bucket", "repeat", "source", "missing_postmortem", "overdue")


def drill_down(session: Session, scope: Scope, args: Mapping[str, str], today: date) -> tuple[sa.Select, str]:
    """The select of the incidents behind one figure (the scope plus `factor`, `bucket`, `repeat`, `source`,
    `missing_postmortem`, `overdue`, `item_type`), and a sentence saying which they are. Bad values are a 422."""
    clauses, said = list(scope.where()), []
    if args.get("factor"):
        category = session.scalar(sa.select(FactorCategory).where(FactorCategory.slug == args["factor"]))
        if category is None:
            raise Invalid(f"No contributing-factor category {args['factor']!r}.", {"factor": ["Unknown category."]})
        clauses.append(Incident.id.in_(
            sa.select(Postmortem.incident_id)
            .join(ContributingFactor, ContributingFactor.postmortem_id == Postmortem.id)
            .where(Postmortem.status == PostmortemStatus.PUBLISHED, ContributingFactor.category_id == category.id)))
        said.append(f"whose published post-mortem names {category.name}")
    if args.get("bucket"):
        try:
            first = parse_bucket(args["bucket"], scope.period)
        except ValueError:
            raise Invalid("bucket is a week (2026-W47) or a month (2026-11), as period says.",
                          {"bucket": ["A week or month label."]}) from None
        last = first + timedelta(days=7) if scope.period == "week" else (first + timedelta(days=32)).replace(day=1)
        clauses += [Incident.started_at >= datetime.combine(first, time(), UTC),
                    Incident.started_at < datetime.combine(last, time(), UTC)]
        said.append(f"started in {args['bucket']}")
    if args.get("repeat"):
        clauses.append(Incident.repeat_of_id.is_not(None))
        said.append("that repeat an earlier incident")
    if args.get("source"):
        clauses.append(Incident.source == args["source"])
        said.append(f"opened by {args['source']}")
    if args.get("missing_postmortem"):
        clauses += [Incident.severity.in_(HIGH_SEVERITIES), ~sa.exists().where(
            Postmortem.incident_id == Incident.id, Postmortem.status == PostmortemStatus.PUBLISHED)]
        said.append("SEV1/SEV2 without a published post-mortem")
    if args.get("overdue"):
        item = [ActionItem.status.in_([ItemStatus.OPEN, ItemStatus.IN_PROGRESS]), ActionItem.due_date < today]
        if args.get("item_type"):
            if args["item_type"] not in [t.value for t in ItemType]:
                raise Invalid("Unknown action item type.", {"item_type": [", ".join(t.value for t in ItemType)]})
            item.append(ActionItem.type == args["item_type"])
        clauses.append(Incident.id.in_(sa.select(Postmortem.incident_id).join(
            ActionItem, ActionItem.postmortem_id == Postmortem.id).where(*item)))
        said.append("with an overdue action item" + (f" of type {args['item_type']}" if args.get("item_type") else ""))
    return sa.select(Incident).where(*clauses), ", ".join(said)


def drill_incidents(session: Session, stmt: sa.Select, limit: int = DRILL_LIMIT) -> tuple[list[Incident], int]:
    """The first `limit` incidents of a drill-down, newest impact first, and how many there are in all."""
    total = session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery()))
    rows = list(session.scalars(stmt.order_by(Incident.started_at.desc(), Incident.id.desc()).limit(limit)))
    return rows, total
