"""The insights' roll-up: the parts (queries.py) of each closed day, aligned run of days and month stored, for
all incidents, per team, per service, per severity and per pair of those (a *facet*), so a year's figures add up
about twenty rows instead of counting 333,000 incidents at a million.

- **Stored** by `refresh` (the job worker's periodic job, or `incidents insights refresh`): days up to
  `last_stored(today)` (the day before yesterday, UTC), then each run of days and month whose days are current.
  A facet's row exists only where it has incidents, or had: no row, where the all-incidents row is current,
  means none.
- **Kept honest** by versions: every change to an incident, its post-mortem, factors or action items marks the
  incident's day, team and service (`touch`, an in-transaction handler of the domain events), and at COMMIT the
  `version` of every span holding the day goes up, for all incidents and those facets, in one sorted upsert. A
  stored part counts only while its `state_version` equals `version`;
  `refresh` reads the version before the data it counts and stores with a compare-and-set on it, so a change
  committed meanwhile leaves the row stale, never wrong. Days from yesterday on are never stored, so a change
  to a recent incident (every delivery's) writes nothing here.
- **Read** by `part`: current spans from the table (a scope of several severities adds up each one's), the rest
  (recent, stale or not yet stored days, and every scope filtered by team, service and severity at once) counted
  from the incidents, added together.

A change to what a part holds (queries.py) needs a migration that empties `insights_rollup`: stored parts carry
no format of their own.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item.models import ActionItem
from incidents.database import at_commit, read_only, utcnow, writing
from incidents.incident.models import Incident
from incidents.insights import queries as q
from incidents.insights.models import InsightsRollup
from incidents.postmortem.models import Postmortem

DAY, MONTH = "day", "month"
# Aligned runs of days within a month (span "d16": days 1-16 and 17 to the end, "d8": 1-8, 9-16, ...), so any
# run of days is a handful of rows: the days of a year's partial first month are three or four rows, not thirty.
BLOCKS = (16, 8, 4, 2)
SIZES = (*BLOCKS, 1)
# The facet of all incidents; a team's is "t<id>", a service's "s<id>", a severity's "v<severity>", and a pair of
# them the two run together ("t<id>s<id>", "t<id>v<severity>", "s<id>v<severity>").
ALL = ""
_TOUCHED = "incidents.insights.touched"  # session.info: the (day, facet)s this transaction changed


def _facet(team_id: int | None = None, service_id: int | None = None, severity: str | None = None) -> str:
    """The facet of the incidents of this team, service and severity (None: any)."""
    return ((f"t{team_id}" if team_id is not None else "") + (f"s{service_id}" if service_id is not None else "")
            + (f"v{severity}" if severity else ""))


def _facets(team_id: int | None, service_id: int | None, severity: str | None) -> list[str]:
    """The facets an incident of this team, service and severity counts in: all incidents, each of the three,
    and each pair of them."""
    t, s, v = team_id, service_id, severity  # a pair lacking one of its two is the other's facet: listed once
    return list(dict.fromkeys([ALL, _facet(t), _facet(service_id=s), _facet(severity=v), _facet(t, s),
                               _facet(t, severity=v), _facet(service_id=s, severity=v)]))


def _facets_of(scope: q.Scope) -> list[str] | None:
    """The facets whose incidents, added up, are exactly the scope's (severities: one each), or None: a scope
    filtered by team, service and severity at once is counted."""
    team, service = scope.team and scope.team.id, scope.service and scope.service.id
    if scope.severities:
        return None if team and service else [_facet(team, service, sev) for sev in sorted(set(scope.severities))]
    return [_facet(team, service)]  # ALL when neither


def last_stored(today: date) -> date:
    """The last day a part may be stored for: writers mark only days before their today (`touch`), so one day of
    margin keeps a clock a little behind, or a change at midnight, from missing a stored day."""
    return today - timedelta(days=2)


def _month_end(day: date) -> date:
    """The last day of `day`'s month."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _span(size: int | None) -> str:
    return MONTH if size is None else DAY if size == 1 else f"d{size}"


def _end(first: date, size: int | None) -> date:
    """The last day of the span of `size` days (None: the month) starting at `first`, clipped to its month."""
    return _month_end(first) if size is None else min(first + timedelta(days=size - 1), _month_end(first))


def _containing(day: date) -> list[tuple[str, date]]:
    """Every span a day is part of, as (span, first day)."""
    return [(_span(size), day - timedelta(days=(day.day - 1) % size)) for size in SIZES] + [
        (MONTH, day.replace(day=1))]


def _cover(first: date, last: date, sizes: tuple = (None, *SIZES)) -> list[tuple[str, date, date]]:
    """The fewest aligned spans of `sizes` (None: a month) covering first..last, as (span, first day, last day)."""
    out, day = [], first
    while day <= last:
        for size in sizes:
            aligned = day.day == 1 if size is None else (day.day - 1) % size == 0
            if aligned and _end(day, size) <= last:
                out.append((_span(size), day, _end(day, size)))
                day = _end(day, size) + timedelta(days=1)
                break
    return out


# --- marking changes -------------------------------------------------------------------------------

def touch(session: Session, *incidents: tuple[datetime | str | None, int | None, int | None, str | None]) -> None:
    """Mark the UTC day of each (impact start as a datetime or ISO text, team id, service id, severity) as changed
    by this transaction, for every facet it counts in (`_facets`); days from today on are skipped (never
    stored)."""
    today = utcnow().date()
    keys = set()
    for moment, team_id, service_id, severity in incidents:
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if moment is None:
            continue
        day = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()
        if day < today:
            keys |= {(day, facet) for facet in _facets(team_id, service_id, severity)}
    if keys:
        session.info.setdefault(_TOUCHED, set()).update(keys)


def _bump(session: Session) -> None:
    """before_commit: one version up for each touched day and every span holding it, in one upsert in key order
    (two transactions touching the same days lock them in the same order)."""
    touched = session.info.pop(_TOUCHED, None)
    if not touched:
        return
    keys = sorted({(span, first, facet) for day, facet in touched for span, first in _containing(day)})
    session.connection().execute(_bump_statement(session.get_bind().dialect.name),
                                 [{"span": s, "day": d, "facet": f, "version": 1} for s, d, f in keys])


@functools.cache
def _bump_statement(dialect: str):
    """The version upsert, built once per dialect and run once per key (executemany, in the keys' order): built
    as one multi-row VALUES per commit, it was compiled afresh every time (3 ms, on the webhook writer's turn)."""
    return _insert(dialect).on_conflict_do_update(index_elements=["span", "day", "facet"],
                                                  set_={"version": InsightsRollup.__table__.c.version + 1})


def _forget(session: Session, *_args) -> None:
    session.info.pop(_TOUCHED, None)


def _insert(dialect: str):
    """INSERT into the roll-up with the dialect's ON CONFLICT (SQLite and PostgreSQL spell it alike)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(InsightsRollup.__table__)


_PLACES = ("started_at", "team_id", "service_id", "severity")  # what decides an incident's days and facets


def _placed(session: Session, incident_id: int | None) -> tuple[datetime | None, int | None, int | None, str | None]:
    incident = session.get(Incident, incident_id) if incident_id is not None else None
    return (incident.started_at, incident.team_id, incident.service_id, incident.severity.value) if incident else (
        None, None, None, None)


def on_incident(session: Session, event: events.Event) -> None:
    if event.name == "incident.declared":  # the declaration says where it counts: read nothing (webhook hot path)
        touch(session, (event["started_at"], event["team_id"], event["service_id"], event["severity"]))
        return
    now = _placed(session, event["incident_id"])
    marked = [now]
    if event.name == "incident.updated":  # where it was: the day, team, service and severity it left
        changes = event["changes"]
        marked.append(tuple(changes[f][0] if f in changes else value
                            for f, value in zip(_PLACES, now, strict=True)))
    touch(session, *marked)


def on_postmortem(session: Session, event: events.Event) -> None:
    incident_id = event.data.get("incident_id") or session.scalar(
        sa.select(Postmortem.incident_id).where(Postmortem.id == event["postmortem_id"]))
    touch(session, _placed(session, incident_id))


def on_action_item(session: Session, event: events.Event) -> None:
    pm_id = event.data.get("postmortem_id") or session.scalar(
        sa.select(ActionItem.postmortem_id).where(ActionItem.id == event["action_item_id"]))
    touch(session, _placed(session, session.scalar(sa.select(Postmortem.incident_id).where(Postmortem.id == pm_id))))


SUBSCRIPTIONS: dict[str, Callable[[Session, events.Event], None]] = {
    "incident.declared": on_incident,
    "incident.status_changed": on_incident,
    "incident.updated": on_incident,
    "postmortem.started": on_postmortem,
    "postmortem.published": on_postmortem,
    "postmortem.reopened": on_postmortem,
    "postmortem.factor_added": on_postmortem,
    "postmortem.factor_removed": on_postmortem,
    "action_item.created": on_action_item,
    "action_item.updated": on_action_item,
    "action_item.deleted": on_action_item,
}


def init_app(app) -> None:
    at_commit("insights", _bump, _forget)
    for name, handler in SUBSCRIPTIONS.items():
        events.subscribe(app, name, events.IN_TRANSACTION, handler)


# --- reading ---------------------------------------------------------------------------------------

def _states(session: Session, column, where) -> tuple[dict, set]:
    """(span, day, facet) -> the part's JSON of the current rows matching `where`, and the keys of the rows that
    are not current."""
    current, stale = {}, set()
    for span, day, facet, version, state_version, text in session.execute(sa.select(
            InsightsRollup.span, InsightsRollup.day, InsightsRollup.facet, InsightsRollup.version,
            InsightsRollup.state_version, column).where(where)):
        if state_version == version and text is not None:
            current[span, day, facet] = text
        else:
            stale.add((span, day, facet))
    return current, stale


def _stored(current: Mapping, known: Container, key: tuple[str, date, str], parse: Callable[[Any], Any]) -> Any:
    """What a span's row says of its facet: `parse` of the row's value if it is current; empty ({}) where the
    facet has no row and the all-incidents row is current (the facet had no incidents then); None if the span
    must be counted. `current` maps the current rows' keys to their values; `known` holds the keys of the rows
    that exist (the current ones may be left out)."""
    if key in current:
        return parse(current[key])
    span, day, facet = key
    if facet != ALL and key not in known and (span, day, ALL) in current:
        return {}
    return None


def _lookup(current: dict, stale: set, span: str, day: date, facets: list[str]) -> list[q.Part] | None:
    """The stored parts of a span for each of `facets`, or None if any must be counted."""
    found = [_stored(current, stale, (span, day, facet), q.part_from_json) for facet in facets]
    return None if any(f is None for f in found) else found


def part(session: Session, scope: q.Scope, name: str, today: date) -> q.Part:
    """The part `name` of the scope's incidents: the fewest stored spans covering its stored days where they are
    current, their days where a span is not, and counted from the incidents for the rest."""
    wanted = _facets_of(scope)
    if wanted is None:
        return q.compute_parts(session, name, scope.where()).get(None, {})
    last = min(scope.until, last_stored(today))
    spans = _cover(scope.since, last) if scope.since <= last else []
    column = getattr(InsightsRollup, name)
    facets = {ALL, *wanted}
    # One primary-key seek per row (an OR of them: SQLite scans the table for a row-value IN).
    current, stale = _states(session, column, sa.or_(*(
        sa.and_(InsightsRollup.span == span, InsightsRollup.day == first, InsightsRollup.facet == f)
        for span, first, _ in spans for f in sorted(facets)))) if spans else ({}, set())
    parts, days, longer = [], set(), False
    for span, first, end in spans:
        found = _lookup(current, stale, span, first, wanted)
        if found is not None:
            parts += found
        else:
            days |= {first + timedelta(days=i) for i in range((end - first).days + 1)}
            longer = longer or span != DAY
    if longer:
        current, stale = _states(session, column, sa.and_(  # a run or month not current: its days one by one
            InsightsRollup.span == DAY, InsightsRollup.day.between(min(days), max(days)),
            InsightsRollup.facet.in_(facets)))
        for day in sorted(days):
            found = _lookup(current, stale, DAY, day, wanted)
            if found is not None:
                parts += found
                days.discard(day)
    tail = max(scope.since, last + timedelta(days=1))  # the days never stored: from the day after `last`
    runs = _runs(days) + ([(tail, scope.until)] if tail <= scope.until else [])
    if runs:
        where = sa.or_(*(sa.and_(*q.Scope(a, b).where()) for a, b in runs))
        parts.append(q.compute_parts(session, name, [where, *scope.filters()]).get(None, {}))
    return q.merge_parts(parts)


def _runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) ranges."""
    out: list[tuple[date, date]] = []
    for d in sorted(days):
        if out and out[-1][1] + timedelta(days=1) == d:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def figures(session: Session, kind: str, scope: q.Scope, today: date, cache_seconds: float = 0) -> Any:
    """One kind of figures (queries.FIGURES) for the scope, through the per-process cache when asked."""
    name, finish = q.FIGURES[kind]
    return q.cached(kind, scope, lambda: finish(session, scope, part(session, scope, name, today), today),
                    cache_seconds, today)


# --- storing ---------------------------------------------------------------------------------------

def _store(session: Session, span: str, day: date, facet: str, version: int, parts: dict[str, q.Part | str]) -> None:
    """Compare-and-set: the parts land only if the row's version is still the one read before counting them."""
    stmt = _insert(session.get_bind().dialect.name).values(
        span=span, day=day, facet=facet, version=version, state_version=version,
        **{name: part if isinstance(part := parts.get(name, {}), str) else q.part_json(part) for name in q.PARTS})
    session.execute(stmt.on_conflict_do_update(
        index_elements=["span", "day", "facet"],
        set_={"state_version": stmt.excluded.state_version, **{n: getattr(stmt.excluded, n) for n in q.PARTS}},
        where=InsightsRollup.version == stmt.excluded.state_version))


def _versions(session: Session, where) -> dict[tuple[str, date, str], tuple[int, int | None]]:
    return {(span, day, facet): (version, state_version) for span, day, facet, version, state_version in
            session.execute(sa.select(InsightsRollup.span, InsightsRollup.day, InsightsRollup.facet,
                                      InsightsRollup.version, InsightsRollup.state_version).where(where))}


def _store_days(session: Session, first: date, last: date) -> None:
    """Count the days first..last once, grouped by day, team, service and severity, and store every facet's part
    of each day: all incidents (empty days too), each facet with incidents, and any other with a row (it had
    incidents: its part is now empty)."""
    days = sa.and_(InsightsRollup.span == DAY, InsightsRollup.day.between(first, last))
    with read_only():
        versions = _versions(session, days)  # before the data they vouch for
        counted = {name: q.compute_parts(session, name, q.Scope(first, last).where(), by_day=True) for name in q.PARTS}
        session.rollback()
    folded: dict[tuple[str, str], dict[str, list]] = {}
    for name, by_key in counted.items():
        for (text, team_id, service_id, severity), part in by_key.items():
            for facet in _facets(team_id, service_id, severity):
                folded.setdefault((text, facet), {}).setdefault(name, []).append(part)
    keys = {(d.isoformat(), ALL) for d in (first + timedelta(days=i) for i in range((last - first).days + 1))}
    keys |= set(folded) | {(day.isoformat(), facet) for _, day, facet in versions}
    with writing():
        for text, facet in sorted(keys):
            day = date.fromisoformat(text)
            parts = {name: q.merge_parts(found) for name, found in folded.get((text, facet), {}).items()}
            _store(session, DAY, day, facet, versions.get((DAY, day, facet), (0, None))[0], parts)
        session.commit()


def _store_spans(session: Session, month: date, last: date) -> Counter:
    """Store each span of `month` up to `last` (its runs of days, smallest first, then the month), for every
    facet with a day row in it, that is not current, added up from the smaller spans covering it where those
    are all current. One read (the versions and the parts in one statement, so each version is read with the
    data it vouches for) and one write."""
    columns = (InsightsRollup.span, InsightsRollup.day, InsightsRollup.facet, InsightsRollup.version,
               InsightsRollup.state_version, *(getattr(InsightsRollup, n) for n in q.PARTS))
    with read_only():
        rows = session.execute(sa.select(*columns).where(InsightsRollup.day.between(month, _month_end(month)))).all()
        session.rollback()
    versions = {r[:3]: r[3] for r in rows}
    texts = {r[:3]: r[5:] for r in rows if r[3] == r[4]}
    parsed: dict[tuple, dict[str, q.Part]] = {}  # each row's parts read once, whatever it goes into

    def available(key) -> dict[str, q.Part] | None:
        if key in parsed:
            return parsed[key]
        found = _stored(texts, versions, key, lambda row: dict(zip(q.PARTS, map(q.part_from_json, row), strict=True)))
        if key in texts:
            parsed[key] = found
        return found

    stored: list[tuple[tuple[str, date, str], int, dict]] = []
    for facet in sorted({r[2] for r in rows if r[0] == DAY}):
        for index, size in enumerate((*reversed(BLOCKS), None)):
            smaller = SIZES[-(index + 1):]  # every size below this one
            day = month
            while day <= _month_end(month):
                end, key = _end(day, size), (_span(size), day, facet)
                if end <= last and key not in texts:
                    cover = [available((span, first, facet)) for span, first, _ in _cover(day, end, smaller)]
                    if all(c is not None for c in cover):
                        parsed[key] = merged = {n: q.merge_parts(c.get(n, {}) for c in cover) for n in q.PARTS}
                        texts[key] = ()
                        stored.append((key, versions.get(key, 0), merged))
                day = end + timedelta(days=1)
    if stored:
        with writing():
            for (span, day, facet), version, merged in stored:
                _store(session, span, day, facet, version, merged)
            session.commit()
    return Counter(MONTH if key[0] == MONTH else "block" for key, *_ in stored)


def refresh(session: Session, today: date, *, chunk_days: int = 31,
            progress: Callable[[str], None] | None = None) -> Counter:
    """Store the parts of every day up to `last_stored(today)` that has none current, a chunk of days per
    transaction, then of every span (blocks, months) whose days all are, in the months not yet settled. Returns
    how many of each it stored."""
    done: Counter = Counter()
    last = last_stored(today)
    with read_only():
        oldest = session.scalar(sa.select(sa.func.min(Incident.started_at)))
        session.rollback()
    if oldest is None or oldest.date() > last:
        return done
    first = oldest.astimezone(UTC).date().replace(day=1)  # the first month's empty days too, so it can be stored
    days_in = sa.and_(InsightsRollup.span == DAY, InsightsRollup.day.between(first, last))
    with read_only():  # the all-incidents rows and the stale ones only: every facet's row is ~150 per day
        current = set(session.scalars(sa.select(InsightsRollup.day).where(
            days_in, InsightsRollup.facet == ALL, InsightsRollup.version == InsightsRollup.state_version)))
        stale = set(session.scalars(sa.select(InsightsRollup.day).distinct().where(
            days_in, InsightsRollup.version != InsightsRollup.state_version)))
        session.rollback()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    touched = set()  # the months of the days stored now
    for a, b in _runs(d for d in days if d not in current or d in stale):
        while a <= b:
            end = min(b, a + timedelta(days=chunk_days - 1))
            _store_days(session, a, end)
            done[DAY] += (end - a).days + 1
            touched |= {d.replace(day=1) for d in (a + timedelta(days=i) for i in range((end - a).days + 1))}
            if progress:
                progress(f"days {a} to {end}")
            a = end + timedelta(days=1)
    # A month is settled when its all-incidents row is current and no row of it is stale: every span of it is
    # then stored and current, and reading its parts again (the periodic job's whole cost) would store nothing.
    with read_only():
        settled = set(session.scalars(sa.select(InsightsRollup.day).where(
            InsightsRollup.span == MONTH, InsightsRollup.facet == ALL,
            InsightsRollup.version == InsightsRollup.state_version)))
        settled -= {day.replace(day=1) for day in session.scalars(sa.select(InsightsRollup.day).distinct().where(
            InsightsRollup.version != InsightsRollup.state_version))}
        session.rollback()
    month = first.replace(day=1)
    while month <= last:
        if month not in settled or month in touched:
            done += _store_spans(session, month, last)
            if progress and done[MONTH]:
                progress(f"spans of {month:%Y-%m}")
        month = _month_end(month) + timedelta(days=1)
    return done
