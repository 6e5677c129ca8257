"""The roll-up (incidents/insights/rollup.py) gives exactly the figures that counting the incidents gives: after a
refresh, after each kind of change made through the services (the changed days are stale and counted again), and
after the next refresh. On SQLite and PostgreSQL (the suite runs on both)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.action_item import services as items
from incidents.action_item.models import ActionItem
from incidents.database import DEFER_SERIALISED, utcnow
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.incident.models import Incident
from incidents.insights import queries as q
from incidents.insights import rollup
from incidents.insights.models import InsightsRollup
from incidents.postmortem import services as pm_services
from incidents.postmortem.models import Postmortem
from tests.factories import make_user
from tests.insights.data import at, build

PERIODS = [
    (date(2026, 1, 5), date(2026, 2, 1), "week"),  # the hand-worked period: runs of days
    (date(2025, 12, 1), date(2026, 3, 31), "month"),  # whole months, stored as months
    (date(2025, 12, 20), date(2026, 2, 10), "week"),  # a month and the days around it
]


def scopes(data) -> list[q.Scope]:
    """Every period for all incidents, a team (core), a service (frontend), a severity, two severities, each pair
    of team, service and severity, and a counted scope (all three)."""
    core, web, frontend = data["teams"]["core"], data["teams"]["web"], data["services"]["frontend"]
    out = []
    for since, until, period in PERIODS:
        out += [q.Scope(since, until, period=period), q.Scope(since, until, team=core, period=period),
                q.Scope(since, until, service=frontend, period=period),
                q.Scope(since, until, team=web, service=frontend, period=period),
                q.Scope(since, until, severities=("SEV2",), period=period),
                q.Scope(since, until, severities=("SEV3", "SEV1"), period=period),
                q.Scope(since, until, team=core, severities=("SEV2",), period=period),
                q.Scope(since, until, service=frontend, severities=("SEV2", "SEV3"), period=period),
                q.Scope(since, until, team=core, service=frontend, severities=("SEV2",), period=period)]
    return out


@pytest.fixture
def data(session):
    return build()


def live(kind: str, scope: q.Scope, today: date):
    """The figures counted from the incidents, as if there were no roll-up."""
    name, finish = q.FIGURES[kind]
    return finish(db.session, scope, q.compute_parts(db.session, name, scope.where()).get(None, {}), today)


def assert_same_figures(today: date, data) -> None:
    for scope in scopes(data):
        for kind in q.FIGURES:
            assert rollup.figures(db.session, kind, scope, today) == live(kind, scope, today), (kind, scope)
    db.session.rollback()


def current(span: str, day: date, facet: str = "") -> bool:
    row = db.session.get(InsightsRollup, (span, day, facet))
    db.session.rollback()
    return row is not None and row.state_version == row.version


def test_refresh_stores_days_and_months_that_give_the_same_figures(data):
    today = utcnow().date()
    assert_same_figures(today, data)  # nothing stored yet: every day counted
    done = rollup.refresh(db.session, today)
    # From the first incident's month (2026-01) to the day before yesterday.
    first, last = date(2026, 1, 1), rollup.last_stored(today)
    assert done["day"] == (last - first).days + 1
    assert current("day", date(2026, 1, 5)) and current("month", date(2026, 1, 1))
    assert not current("day", today - timedelta(days=1))  # recent days are never stored
    assert rollup.refresh(db.session, today) == {}  # nothing changed: nothing to store
    assert_same_figures(today, data)


def test_the_stored_parts_are_what_is_read(data):
    """An out-of-band edit (no event) is not seen until the day is counted again: proof the figures came from
    the roll-up; `touch` then marks the day and the next read counts it."""
    today = utcnow().date()
    rollup.refresh(db.session, today)
    scope = scopes(data)[0]
    i5 = data["incidents"]["I5"]
    was = q.Scope(scope.since, scope.until, severities=(i5.severity.value,))
    pair = q.Scope(scope.since, scope.until, team=data["teams"]["web"], severities=(i5.severity.value,))
    before = rollup.figures(db.session, "volume", scope, today)
    before_was, before_pair = (rollup.figures(db.session, "volume", s, today) for s in (was, pair))
    db.session.execute(sa.update(Incident).where(Incident.id == i5.id).values(severity="SEV4"))
    db.session.commit()
    assert rollup.figures(db.session, "volume", scope, today) == before
    assert rollup.figures(db.session, "volume", was, today) == before_was  # a severity's facet, stored
    assert rollup.figures(db.session, "volume", pair, today) == before_pair  # a team and severity's, stored
    rollup.touch(db.session, (at("2026-01-19T10:00:00"), None, None, None))
    db.session.commit()
    assert not current("day", date(2026, 1, 19)) and not current("month", date(2026, 1, 1))
    after = rollup.figures(db.session, "volume", scope, today)
    assert {g.key: g.incidents for g in after.by_severity}["SEV4"] == 1
    assert after == live("volume", scope, today)


def _admin():
    return make_user(role="admin")


CHANGES = {
    "resolve": lambda d: incidents.transition(db.session, d["incidents"]["I5"], "resolved", resolution="Rolled back."),
    "severity": lambda d: incidents.update_incident(db.session, d["incidents"]["I3"], severity="SEV1"),
    "move to another day": lambda d: incidents.update_incident(db.session, d["incidents"]["I2"],
                                                               started_at=at("2026-01-04T09:30:00"),
                                                               detected_at=at("2026-01-04T09:31:00")),
    "reopen a published post-mortem": lambda d: pm_services.reopen_postmortem(
        db.session, db.session.scalar(sa.select(Postmortem).where(Postmortem.incident_id == d["incidents"]["I1"].id)),
        by=_admin(), reason="Missed a factor."),
    "action item done": lambda d: items.update_action_item(
        db.session, db.session.scalar(sa.select(ActionItem).where(ActionItem.title == "A3")), status="done"),
    "action item deleted": lambda d: items.delete_action_item(
        db.session, db.session.scalar(sa.select(ActionItem).where(ActionItem.title == "A7"))),
    "move to another service and team": lambda d: incidents.update_incident(
        db.session, d["incidents"]["I5"], service_id=d["services"]["api"].id),
    "declared in the past": lambda d: incidents.declare_incident(
        db.session, title="Late report", severity="SEV2", started_at=at("2026-01-08T08:00:00"),
        detected_at=at("2026-01-08T09:00:00")),
    # The declaration's own event says which team and service facets it counts in (nothing is read back).
    "declared in the past on a service": lambda d: incidents.declare_incident(
        db.session, title="Late report", severity="SEV3", service_id=d["services"]["frontend"].id,
        started_at=at("2026-01-09T08:00:00"), detected_at=at("2026-01-09T09:00:00")),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_makes_its_days_stale_and_the_figures_stay_exact(data, change):
    today = utcnow().date()
    rollup.refresh(db.session, today)
    before = {kind: rollup.figures(db.session, kind, scopes(data)[0], today) for kind in q.FIGURES}
    db.session.rollback()
    CHANGES[change](data)
    db.session.commit()
    stale = db.session.scalars(sa.select(InsightsRollup.day).distinct().where(
        InsightsRollup.span == "day", InsightsRollup.version != InsightsRollup.state_version)).all()
    db.session.rollback()
    assert stale, "the change marked no day"
    after = {kind: rollup.figures(db.session, kind, scopes(data)[0], today) for kind in q.FIGURES}
    assert after != before  # every change above moves some figure of the period
    assert_same_figures(today, data)
    assert rollup.refresh(db.session, today)["day"] == len(stale)
    assert_same_figures(today, data)
    assert rollup.refresh(db.session, today) == {}


def test_a_refresh_reads_again_only_the_months_a_change_unsettled(data, monkeypatch):
    """The periodic job's cost: once a month's spans are all stored and current it is not read again, until a
    change marks one of its days; the month still filling is read every time."""
    today = utcnow().date()
    rollup.refresh(db.session, today)
    visited = []
    real = rollup._store_spans
    monkeypatch.setattr(rollup, "_store_spans", lambda session, month, last: visited.append(month) or real(
        session, month, last))
    rollup.refresh(db.session, today)
    filling = {rollup.last_stored(today).replace(day=1)}
    if rollup._month_end(rollup.last_stored(today)) == rollup.last_stored(today):
        filling = set()  # the last stored day closes its month: it was settled by the first refresh
    assert set(visited) == filling
    visited.clear()
    incidents.update_incident(db.session, data["incidents"]["I3"], severity="SEV1")  # 2026-01-12
    db.session.commit()
    assert rollup.refresh(db.session, today)["month"] >= 1
    assert set(visited) == {date(2026, 1, 1)} | filling
    assert_same_figures(today, data)


def test_a_rolled_back_change_marks_nothing(data):
    today = utcnow().date()
    rollup.refresh(db.session, today)
    incidents.update_incident(db.session, data["incidents"]["I3"], severity="SEV1")
    db.session.rollback()
    assert rollup.refresh(db.session, today) == {}


def test_at_commit_the_audit_rows_go_before_the_roll_up_versions(data):
    """The lock order database.AT_COMMIT_ORDER pins: a webhook writer's deferred audit rows (PostgreSQL) are
    written at COMMIT before the roll-up's version upsert, whatever registered first."""
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("audit rows are deferred to COMMIT on PostgreSQL only")
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement.split()[2] if statement.startswith("INSERT INTO") else None)

    db.session.info[DEFER_SERIALISED] = True
    incidents.update_incident(db.session, data["incidents"]["I3"], severity="SEV1")
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        db.session.commit()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
        db.session.info.pop(DEFER_SERIALISED, None)
    inserts = [table for table in statements if table]
    assert "audit_entry" in inserts and "insights_rollup" in inserts
    assert inserts.index("audit_entry") < inserts.index("insights_rollup")


def test_a_refresh_that_raced_a_change_stores_nothing_stale(data, monkeypatch):
    """The version is read before the data: a change committed between the two leaves the stored part stale."""
    today = utcnow().date()
    day = date(2026, 1, 12)
    real = q.compute_parts
    incident = data["incidents"]["I3"]
    i3 = (incident.id, incident.started_at, incident.team_id, incident.service_id, incident.severity.value)
    db.session.rollback()

    def change_then_count(session, name, where, by_day=False):
        if by_day and name == "volume" and not getattr(change_then_count, "done", False):
            change_then_count.done = True
            with Session(db.engine) as other:  # another transaction commits a change to I3, on 2026-01-12
                other.execute(sa.update(Incident).where(Incident.id == i3[0]).values(severity="SEV4"))
                rollup.touch(other, i3[1:], (*i3[1:4], "SEV4"))  # the severity it left and the one it took
                other.commit()
        return real(session, name, where, by_day)

    monkeypatch.setattr(q, "compute_parts", change_then_count)
    rollup.refresh(db.session, today)
    monkeypatch.undo()
    assert not current("day", day)  # the count may have missed the change: not current
    assert current("day", date(2026, 1, 13))
    assert_same_figures(today, data)
    rollup.refresh(db.session, today)
    assert current("day", day)
    assert_same_figures(today, data)


def test_recent_days_are_counted_and_only_those_of_the_scope(data):
    today = utcnow().date()
    for days_ago in (0, 1, 2, 3, 5):
        incidents.declare_incident(db.session, title=f"{days_ago} days ago", severity="SEV2",
                                   started_at=utcnow() - timedelta(days=days_ago))
    db.session.commit()
    rollup.refresh(db.session, today)
    assert current("day", today - timedelta(days=2)) and not current("day", today - timedelta(days=1))
    for since, until in ((0, 0), (1, 0), (1, 1), (2, 1), (3, 0), (10, 0), (10, 3)):
        scope = q.Scope(today - timedelta(days=since), today - timedelta(days=until))
        for kind in q.FIGURES:
            assert rollup.figures(db.session, kind, scope, today) == live(kind, scope, today), (kind, since, until)
    assert rollup.figures(db.session, "volume", q.Scope(today, today), today).total == 1


def test_refresh_command(app, data):
    result = app.test_cli_runner().invoke(args=["insights", "refresh"])
    assert result.exit_code == 0, result.output
    assert "Stored" in result.output and "months" in result.output
    assert current("month", date(2026, 1, 1))


def test_spans_cover_every_day_once_with_few_rows():
    assert rollup._cover(date(2026, 1, 5), date(2026, 2, 1)) == [
        ("d4", date(2026, 1, 5), date(2026, 1, 8)), ("d8", date(2026, 1, 9), date(2026, 1, 16)),
        ("d16", date(2026, 1, 17), date(2026, 1, 31)), ("day", date(2026, 2, 1), date(2026, 2, 1))]
    first = date(2024, 1, 1)
    for start in range(0, 400, 7):
        for length in (0, 1, 13, 31, 95, 366):
            a = first + timedelta(days=start)
            b = a + timedelta(days=length)
            spans = rollup._cover(a, b)
            days = [d for _, f, e in spans for d in (f + timedelta(days=i) for i in range((e - f).days + 1))]
            assert days == [a + timedelta(days=i) for i in range(length + 1)]
            assert len(spans) <= 10 * (b.year * 12 + b.month - a.year * 12 - a.month + 1)
            for span, f, _ in spans:  # each span is one that a change to its days marks
                assert all((span, f) in rollup._containing(d) for d in days if f <= d <= _)


def test_the_job_worker_refreshes_every_ten_minutes(app, data):
    from datetime import datetime

    from incidents.insights.jobs import refresh_insights
    from incidents.jobs import get_queue

    huey = get_queue(app).huey
    assert "refresh_insights" in {t.name for t in huey.read_periodic(datetime(2026, 11, 30, 9, 20))}
    assert "refresh_insights" not in {t.name for t in huey.read_periodic(datetime(2026, 11, 30, 9, 21))}
    get_queue(app).enqueue(refresh_insights)  # immediate in tests: runs inline, in its own app context
    assert current("day", date(2026, 1, 5)) and current("d16", date(2026, 1, 17))
    assert current("month", date(2026, 1, 1))


def test_the_version_bump_is_compiled_once_whatever_the_number_of_days(data):
    """The before-commit bump runs inside the webhook writer's transaction: built per commit as one multi-row
    VALUES, each number of touched days made a new statement, compiled afresh (3 ms on the writer's turn)."""
    from sqlalchemy.engine.default import CACHE_HIT

    seen = []

    def record(_conn, _cursor, statement, _params, context, _many):
        if statement.startswith("INSERT INTO insights_rollup"):
            seen.append(context.cache_hit)

    changes = [lambda: incidents.update_incident(db.session, data["incidents"]["I3"], severity="SEV1"),
               lambda: incidents.update_incident(db.session, data["incidents"]["I2"],
                                                 started_at=at("2026-01-04T09:30:00"),
                                                 detected_at=at("2026-01-04T09:31:00")),
               lambda: incidents.update_incident(db.session, data["incidents"]["I5"],
                                                 service_id=data["services"]["api"].id)]
    sa.event.listen(db.engine, "after_cursor_execute", record)
    try:
        for change in changes:
            change()
            db.session.commit()
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", record)
    assert len(seen) == len(changes)
    assert all(hit is CACHE_HIT for hit in seen[1:]), seen
