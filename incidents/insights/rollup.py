"""The insights' roll-up: each closed day's and month's parts (queries.py) stored, so the unfiltered figures of a
year add up about twelve months and a few dozen days instead of counting 333,000 incidents at a million.

- **Stored** by `refresh` (the job worker's periodic job, or `incidents insights refresh`): days up to
  `last_stored(today)` (the day before yesterday, UTC), then each month whose days are all current.
- **Kept honest** by versions: every change to an incident, its post-mortem, factors or action items marks the
  incident's day (`touch`, an in-transaction handler of the domain events), and at COMMIT the day's and month's
  `version` go up in one sorted upsert. A stored part counts only while its `state_version` equals `version`;
  `refresh` reads the version before the data it counts and stores with a compare-and-set on it, so a change
  committed meanwhile leaves the row stale, never wrong. Days from yesterday on are never stored, so a change
  to a recent incident (every delivery's) writes nothing here.
- **Read** by `part`: current months and days from the table, the rest (recent, stale or not yet stored days, and
  every scope filtered by team, service or severity) counted from the incidents, added together.

A change to what a part holds (queries.py) needs a migration that empties `insights_rollup`: stored parts carry
no format of their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item.models import ActionItem
from incidents.database import read_only, utcnow, writing
from incidents.incident.models import Incident
from incidents.insights import queries as q
from incidents.insights.models import InsightsRollup
from incidents.postmortem.models import Postmortem

DAY, MONTH = "day", "month"
# Aligned runs of days within a month (span "d16": days 1-16 and 17 to the end, "d8": 1-8, 9-16, ...), so any
# run of days is a handful of rows: the days of a year's partial first month are three or four rows, not thirty.
BLOCKS = (16, 8, 4, 2)
SIZES = (*BLOCKS, 1)
_TOUCHED = "incidents.insights.touched"  # session.info: the days this transaction changed


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


def _range(first: date, last: date) -> list:
    return [Incident.started_at >= datetime.combine(first, time(), UTC),
            Incident.started_at < datetime.combine(last + timedelta(days=1), time(), UTC)]


# --- marking changes -------------------------------------------------------------------------------

def touch(session: Session, *moments: datetime | date | str | None) -> None:
    """Mark the UTC days of `moments` (impact starts, as datetimes or ISO text) as changed by this transaction;
    days from today on are skipped (never stored)."""
    today = utcnow().date()
    days = set()
    for moment in moments:
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if isinstance(moment, datetime):
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()
        if moment is not None and moment < today:
            days.add(moment)
    if days:
        session.info.setdefault(_TOUCHED, set()).update(days)
        _listen_once()


def _bump(session: Session) -> None:
    """before_commit: one version up for each touched day and every span holding it, in one upsert in key order
    (two transactions touching the same days lock them in the same order)."""
    days = session.info.pop(_TOUCHED, None)
    if not days:
        return
    keys = sorted({key for d in days for key in _containing(d)})
    stmt = _insert(session).values([{"span": s, "day": d, "version": 1} for s, d in keys])
    session.execute(stmt.on_conflict_do_update(index_elements=["span", "day"],
                                               set_={"version": InsightsRollup.version + 1}))


def _forget(session: Session, *_args) -> None:
    session.info.pop(_TOUCHED, None)


def _listen_once() -> None:
    if not sa.event.contains(Session, "before_commit", _bump):
        sa.event.listen(Session, "before_commit", _bump)
        sa.event.listen(Session, "after_rollback", _forget)


def _insert(session: Session):
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(InsightsRollup)


def _incident_started(session: Session, incident_id: int | None) -> datetime | None:
    incident = session.get(Incident, incident_id) if incident_id is not None else None
    return incident.started_at if incident is not None else None


def on_incident(session: Session, event: events.Event) -> None:
    moments = [event["started_at"] if event.name == "incident.declared"  # no read on the webhook hot path
               else _incident_started(session, event["incident_id"])]
    if event.name == "incident.updated" and "started_at" in event["changes"]:
        moments += event["changes"]["started_at"]  # the day it left and the day it joined
    touch(session, *moments)


def on_postmortem(session: Session, event: events.Event) -> None:
    incident_id = event.data.get("incident_id") or session.scalar(
        sa.select(Postmortem.incident_id).where(Postmortem.id == event["postmortem_id"]))
    touch(session, _incident_started(session, incident_id))


def on_action_item(session: Session, event: events.Event) -> None:
    pm_id = event.data.get("postmortem_id") or session.scalar(
        sa.select(ActionItem.postmortem_id).where(ActionItem.id == event["action_item_id"]))
    touch(session, _incident_started(session, session.scalar(
        sa.select(Postmortem.incident_id).where(Postmortem.id == pm_id))))


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
    for name, handler in SUBSCRIPTIONS.items():
        events.subscribe(app, name, events.IN_TRANSACTION, handler)


# --- reading ---------------------------------------------------------------------------------------

def _current(rows: Iterable) -> dict[tuple[str, date], str]:
    return {(span, day): text for span, day, version, state_version, text in rows
            if text is not None and state_version == version}


def part(session: Session, scope: q.Scope, name: str, today: date) -> q.Part:
    """The part `name` of the scope's incidents: the fewest stored spans covering its stored days where they are
    current, their days where a span is not, and counted from the incidents for the rest."""
    if scope.team is not None or scope.service is not None or scope.severities:
        return q.compute_parts(session, name, scope.where()).get(None, {})
    last = min(scope.until, last_stored(today))
    spans = _cover(scope.since, last) if scope.since <= last else []
    column = getattr(InsightsRollup, name)
    row = (InsightsRollup.span, InsightsRollup.day, InsightsRollup.version, InsightsRollup.state_version, column)
    found = _current(session.execute(sa.select(*row).where(sa.tuple_(InsightsRollup.span, InsightsRollup.day).in_(
        [(span, first) for span, first, _ in spans])))) if spans else {}
    parts, days = [], set()
    for span, first, end in spans:
        if (span, first) in found:
            parts.append(q.part_from_json(found[span, first]))
        else:
            days |= {first + timedelta(days=i) for i in range((end - first).days + 1)}
    if any(span != DAY and (span, first) not in found for span, first, _ in spans):  # not current: its days
        found = _current(session.execute(sa.select(*row).where(
            InsightsRollup.span == DAY, InsightsRollup.day.between(min(days), max(days)))))
        stored = {d for d in days if (DAY, d) in found}
        parts += [q.part_from_json(found[DAY, d]) for d in sorted(stored)]
        days -= stored
    tail = max(scope.since, last + timedelta(days=1))  # the days never stored: from the day after `last`
    runs = _runs(days) + ([(tail, scope.until)] if tail <= scope.until else [])
    if runs:
        where = sa.or_(*(sa.and_(*_range(a, b)) for a, b in runs))
        parts.append(q.compute_parts(session, name, [where]).get(None, {}))
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

def _versions(session: Session, span: str, first: date, last: date) -> dict[date, tuple[int, int | None]]:
    return {day: (version, state_version) for day, version, state_version in session.execute(
        sa.select(InsightsRollup.day, InsightsRollup.version, InsightsRollup.state_version)
        .where(InsightsRollup.span == span, InsightsRollup.day.between(first, last)))}


def _store(session: Session, span: str, day: date, version: int, parts: dict[str, q.Part | str]) -> None:
    """Compare-and-set: the parts land only if the row's version is still the one read before counting them."""
    stmt = _insert(session).values(span=span, day=day, version=version, state_version=version, **{
        name: part if isinstance(part := parts.get(name, {}), str) else q.part_json(part) for name in q.PARTS})
    session.execute(stmt.on_conflict_do_update(
        index_elements=["span", "day"],
        set_={"state_version": stmt.excluded.state_version, **{n: getattr(stmt.excluded, n) for n in q.PARTS}},
        where=InsightsRollup.version == stmt.excluded.state_version))


def _store_spans(session: Session, month: date, last: date) -> Counter:
    """Store each span of `month` up to `last` (its blocks, smallest first, then the month) that is not current,
    added up from the smaller spans covering it, where those are all current. One read (the versions and the
    parts in one statement, so each version is read with the data it vouches for) and one write."""
    columns = (InsightsRollup.span, InsightsRollup.day, InsightsRollup.version, InsightsRollup.state_version,
               *(getattr(InsightsRollup, n) for n in q.PARTS))
    with read_only():
        rows = session.execute(sa.select(*columns).where(InsightsRollup.day.between(month, _month_end(month)))).all()
        session.rollback()
    versions = {(r[0], r[1]): r[2] for r in rows}
    parts = {(r[0], r[1]): dict(zip(q.PARTS, r[4:], strict=True)) for r in rows if r[2] == r[3]}
    stored: list[tuple[str, date, int, dict]] = []
    for index, size in enumerate((*reversed(BLOCKS), None)):
        smaller = tuple(reversed((1, *reversed(BLOCKS))[:index + 1]))  # every size below this one
        day = month
        while day <= _month_end(month):
            end, key = _end(day, size), (_span(size), day)
            if end <= last and key not in parts:
                cover = [(span, first) for span, first, _ in _cover(day, end, smaller)]
                if all(k in parts for k in cover):
                    merged = {n: q.part_json(q.merge_parts(_parsed(parts[k], n) for k in cover)) for n in q.PARTS}
                    parts[key] = merged
                    stored.append((*key, versions.get(key, 0), merged))
            day = end + timedelta(days=1)
    if stored:
        with writing():
            for span, day, version, merged in stored:
                _store(session, span, day, version, merged)
            session.commit()
    return Counter(MONTH if span == MONTH else "block" for span, *_ in stored)


def _parsed(texts: dict, name: str) -> q.Part:
    return q.part_from_json(texts[name])


def refresh(session: Session, today: date, *, chunk_days: int = 31,
            progress: Callable[[str], None] | None = None) -> Counter:
    """Store the parts of every day up to `last_stored(today)` that has none current, a chunk of days per
    transaction, then of every span (blocks, months) whose days all are. Returns how many of each it stored."""
    done: Counter = Counter()
    last = last_stored(today)
    with read_only():
        oldest = session.scalar(sa.select(sa.func.min(Incident.started_at)))
        session.rollback()
    if oldest is None or oldest.date() > last:
        return done
    first = oldest.astimezone(UTC).date().replace(day=1)  # the first month's empty days too, so it can be stored
    with read_only():
        known = _versions(session, DAY, first, last)
        session.rollback()
    stale = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    stale = [d for d in stale if d not in known or known[d][0] != known[d][1]]
    for a, b in _runs(stale):
        while a <= b:
            end = min(b, a + timedelta(days=chunk_days - 1))
            with read_only():
                versions = _versions(session, DAY, a, end)  # before the data they vouch for
                counted = {name: q.compute_parts(session, name, _range(a, end), by_day=True) for name in q.PARTS}
                session.rollback()
            with writing():
                for i in range((end - a).days + 1):
                    d = a + timedelta(days=i)
                    _store(session, DAY, d, versions.get(d, (0, None))[0],
                           {name: counted[name].get(d.isoformat(), {}) for name in q.PARTS})
                session.commit()
            done[DAY] += (end - a).days + 1
            if progress:
                progress(f"days {a} to {end}")
            a = end + timedelta(days=1)
    month = first.replace(day=1)
    while month <= last:
        done += _store_spans(session, month, last)
        if progress and done[MONTH]:
            progress(f"spans of {month:%Y-%m}")
        month = _month_end(month) + timedelta(days=1)
    return done
