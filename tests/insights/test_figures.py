"""Every insight figure of the hand-built data set (tests/insights/data.py), through the API, worked out by hand.

Same answers on SQLite and PostgreSQL: the suite runs on both."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from incidents.extensions import db
from incidents.incident.durations import STORED_COLUMNS, durations, whole_seconds
from incidents.incident.models import Incident
from incidents.insights.queries import Percentiles, nearest_rank
from tests.insights.data import PERIOD, build


@pytest.fixture
def data(session):
    return build()


def _get(api, path, **expect):
    response = api.get(path)
    assert response.status_code == expect.get("status", 200), response.get_json()
    return response.get_json()


def _metrics(body) -> dict:
    return {m["metric"]: m for m in body["metrics"]}


def _p(m) -> tuple:
    return m["count"], m["p50"], m["p90"]


def _sev(m) -> dict:
    return {s["severity"]: (s["count"], s["p50"], s["p90"]) for s in m["by_severity"]}


# --- nearest rank ---------------------------------------------------------------------------------------

def test_nearest_rank_is_the_value_at_rank_ceil_p_n():
    assert nearest_rank([], 50) is None
    assert nearest_rank([(7, 1)], 50) == nearest_rank([(7, 1)], 90) == 7
    values = [(v, 1) for v in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert nearest_rank(values, 50) == 50  # rank 5
    assert nearest_rank(values, 90) == 90  # rank 9, exactly: no floating point drift
    assert nearest_rank([(1, 1), (2, 1), (3, 1)], 50) == 2  # rank ceil(1.5) = 2
    assert nearest_rank([(1, 3), (9, 1)], 90) == 9  # ties: rank ceil(3.6) = 4 is the 9
    assert nearest_rank([(1, 3), (9, 1)], 50) == 1
    assert Percentiles.of_values([5, 1, 5, 3]) == Percentiles(4, 3, 5)


# --- the stored seconds are durations.py's ------------------------------------------------------------

def test_stored_seconds_are_durations_py_whole_seconds(data):
    for incident in db.session.scalars(sa.select(Incident)):
        d = durations(incident)
        for metric, column in STORED_COLUMNS.items():
            assert getattr(incident, column) == whole_seconds(getattr(d, metric)), (incident.title, metric)
    i11 = data["incidents"]["I11"]
    db.session.refresh(i11)
    assert durations(i11).time_to_detect == pytest.approx(60.9)
    assert (i11.seconds_to_detect, i11.seconds_to_acknowledge, i11.seconds_to_mitigate,
            i11.seconds_to_resolve) == (60, 1, 61, 61)


def test_stored_seconds_follow_an_edit_of_the_milestones(data):
    i1 = data["incidents"]["I1"]
    i1.detected_at = i1.started_at.replace(minute=5, second=30, microsecond=999999)
    db.session.commit()
    db.session.refresh(i1)
    assert (i1.seconds_to_detect, i1.seconds_to_acknowledge) == (330, 0)  # acknowledged before detection: 0


# --- response times and volume ------------------------------------------------------------------------

def test_response_times_of_the_period(api, data):
    body = _get(api, f"/api/v1/insights/response-times?{PERIOD}")
    assert body["scope"] == {"since": "2026-01-05", "until": "2026-02-01", "start": "2026-01-05T00:00:00+00:00",
                             "end": "2026-02-02T00:00:00+00:00", "team": None, "service": None, "severity": [],
                             "period": "week"}
    assert body["incidents"] == 9
    m = _metrics(body)
    assert list(m) == ["time_to_detect", "time_to_acknowledge", "time_to_mitigate", "time_to_resolve"]
    # detect: 0,30,60,60,60,120,120,300,600 -> rank 5 and rank 9
    assert _p(m["time_to_detect"]) == (9, 60, 600)
    assert _sev(m["time_to_detect"]) == {"SEV1": (2, 60, 60), "SEV2": (3, 120, 300), "SEV3": (4, 30, 600),
                                         "SEV4": (0, None, None)}
    # acknowledge: 1,30,60,60,60,120,300,600 -> rank 4 and rank 8
    assert _p(m["time_to_acknowledge"]) == (8, 60, 600)
    assert _sev(m["time_to_acknowledge"]) == {"SEV1": (2, 120, 300), "SEV2": (3, 60, 600), "SEV3": (3, 30, 60),
                                              "SEV4": (0, None, None)}
    # mitigate: 61,300,600,900,900,1200,1800 -> rank 4 and rank 7
    assert _p(m["time_to_mitigate"]) == (7, 900, 1800)
    assert _sev(m["time_to_mitigate"]) == {"SEV1": (2, 600, 1800), "SEV2": (2, 900, 900), "SEV3": (3, 300, 1200),
                                           "SEV4": (0, None, None)}
    # resolve: 61,600,1200,1800,2400,3600 -> rank 3 and rank 6
    assert _p(m["time_to_resolve"]) == (6, 1200, 3600)
    assert _sev(m["time_to_resolve"]) == {"SEV1": (2, 1200, 3600), "SEV2": (1, 1800, 1800),
                                          "SEV3": (3, 600, 2400), "SEV4": (0, None, None)}


def test_volume_repeats_and_trend(api, data):
    body = _get(api, f"/api/v1/insights/response-times?{PERIOD}")
    v = body["volume"]
    assert [(g["key"], g["incidents"]) for g in v["by_severity"]] == [("SEV1", 2), ("SEV2", 3), ("SEV3", 4),
                                                                       ("SEV4", 0)]
    assert [(g["key"], g["name"], g["incidents"], g["repeats"]) for g in v["by_service"]] == [
        ("api", "API", 3, 1), ("db", "Database", 2, 1), ("etl", "ETL", 0, 0), ("frontend", "Frontend", 3, 0),
        (None, "No service", 1, 0)]
    assert [(g["key"], g["incidents"], g["repeats"]) for g in v["by_team"]] == [
        ("core", 5, 2), ("data", 0, 0), ("web", 3, 0), (None, 1, 0)]
    assert [(g["key"], g["incidents"]) for g in v["by_source"]] == [("manual", 5), ("alertmanager", 3),
                                                                     ("grafana", 1)]
    assert body["trend"] == [{"period": "2026-W02", "incidents": 2}, {"period": "2026-W03", "incidents": 2},
                             {"period": "2026-W04", "incidents": 2}, {"period": "2026-W05", "incidents": 3}]
    assert body["repeats"]["count"] == 2
    assert body["repeats"]["rate"] == pytest.approx(2 / 9)
    assert [(g["key"], g["repeats"]) for g in body["repeats"]["services"]] == [("api", 1), ("db", 1)]


@pytest.mark.parametrize("query, incidents, detect, trend", [
    ("team=web", 3, (3, 30, 300), [0, 0, 2, 1]),  # web: I5, I6, I8 (0, 300, 30)
    ("service=db", 2, (2, 120, 120), [0, 2, 0, 0]),
    ("severity=SEV1,SEV2", 5, (5, 120, 300), [2, 2, 1, 0]),  # 60,60,120,120,300: ranks 3 and 5
    ("severity=SEV1&severity=SEV2", 5, (5, 120, 300), [2, 2, 1, 0]),
    ("severity=SEV4", 0, (0, None, None), [0, 0, 0, 0]),
])
def test_filters(api, data, query, incidents, detect, trend):
    body = _get(api, f"/api/v1/insights/response-times?{PERIOD}&{query}")
    assert body["incidents"] == incidents
    assert _p(_metrics(body)["time_to_detect"]) == detect
    assert [p["incidents"] for p in body["trend"]] == trend
    if query == "team=web":  # the breakdowns list the scope's team and services only
        assert [g["key"] for g in body["volume"]["by_team"]] == ["web"]
        assert [g["key"] for g in body["volume"]["by_service"]] == ["frontend"]


def test_since_until_and_months(api, data):
    body = _get(api, "/api/v1/insights/response-times?since=2026-01-12&until=2026-01-18")
    assert body["incidents"] == 2  # I3 and I4
    assert _p(_metrics(body)["time_to_resolve"]) == (1, 1800, 1800)
    assert body["repeats"]["rate"] == 0.5
    body = _get(api, f"/api/v1/insights/response-times?{PERIOD}&period=month")
    assert body["trend"] == [{"period": "2026-01", "incidents": 8}, {"period": "2026-02", "incidents": 1}]
    severity_filtered = _get(api, f"/api/v1/insights/response-times?{PERIOD}&severity=SEV1,SEV2")
    assert _p(_metrics(severity_filtered)["time_to_resolve"]) == (3, 1800, 3600)  # 1200, 1800, 3600


# --- contributing factors -------------------------------------------------------------------------------

def test_factors(api, data):
    body = _get(api, f"/api/v1/insights/factors?{PERIOD}")
    assert body["incidents"] == 3  # I1, I3, I7: I2's is in review, I9 is after the period
    counts = {c["category"]: c["incidents"] for c in body["by_category"]}
    assert counts == {"change": 2, "dependency": 2, "capacity": 0, "configuration": 0, "monitoring-gap": 0,
                      "process": 0, "unknown": 0}
    assert body["by_service"] == [
        {"service": "api", "name": "API", "incidents": 2, "categories": {"change": 1, "dependency": 2}},
        {"service": "db", "name": "Database", "incidents": 1, "categories": {"change": 1}}]
    assert body["over_time"] == [{"period": "2026-W02", "categories": {"change": 1, "dependency": 1}},
                                 {"period": "2026-W03", "categories": {"change": 1}},
                                 {"period": "2026-W04", "categories": {}},
                                 {"period": "2026-W05", "categories": {"dependency": 1}}]
    web = _get(api, f"/api/v1/insights/factors?{PERIOD}&team=web")
    assert web["incidents"] == 0 and web["by_service"] == []


# --- follow-through -------------------------------------------------------------------------------------

def test_follow_through(api, data):
    body = _get(api, f"/api/v1/insights/follow-through?{PERIOD}")
    assert body["action_items"] == {"total": 8, "done": 3, "done_with_due_date": 2, "done_on_time": 1,
                                    "on_time_rate": 0.5, "wont_do": 1, "open": 4, "overdue": 3,
                                    "days_to_done": {"count": 3, "p50": 9, "p90": 14}}
    assert body["overdue_by_type"] == [{"type": "prevent", "overdue": 1}, {"type": "mitigate", "overdue": 0},
                                       {"type": "detect", "overdue": 1}, {"type": "process", "overdue": 0},
                                       {"type": "repair", "overdue": 1}]
    assert body["overdue_by_team"] == [{"team": "core", "name": "Core", "overdue": 2},
                                       {"team": "web", "name": "Web", "overdue": 1}]
    assert body["postmortem_lead_time"] == {"count": 3, "p50": 2 * 86400, "p90": 3 * 86400}
    assert body["sev1_sev2"] == {"incidents": 5, "with_published_postmortem": 2, "rate": 0.4}
    web = _get(api, f"/api/v1/insights/follow-through?{PERIOD}&team=web")
    assert web["action_items"]["total"] == 1 and web["action_items"]["overdue"] == 1
    assert web["postmortem_lead_time"] == {"count": 0, "p50": None, "p90": None}
    assert web["sev1_sev2"] == {"incidents": 1, "with_published_postmortem": 0, "rate": 0.0}


def test_two_pass_percentiles_equal_sorting_every_value(session):
    """Many values sharing minutes, ties and all: the database's two passes give what sorting them all gives."""
    import random
    from datetime import timedelta

    from incidents.incident.models import Severity
    from incidents.insights import queries as q
    from tests.insights.data import at

    rng = random.Random(16)
    start = at("2026-03-02T00:00:00")
    for n in range(240):
        s = start + timedelta(minutes=n * 7, microseconds=rng.randrange(10**6))
        detected = s + timedelta(seconds=rng.choice([0, 59, 60, 61, 119, 120, rng.uniform(0, 900)]))
        ack = detected + timedelta(seconds=rng.uniform(0, 400)) if n % 5 else None
        db.session.add(Incident(title=f"r{n}", severity=rng.choice(list(Severity)), started_at=s,
                                detected_at=detected, acknowledged_at=ack, created_at=detected))
    db.session.commit()
    scope = q.Scope(at("2026-03-02T00:00:00").date(), at("2026-03-31T00:00:00").date())
    metrics = {m.key: m for m in q.response_times(db.session, scope, q.compute_parts(db.session, "response",
                                                                                       scope.where())[None])}
    rows = list(db.session.scalars(sa.select(Incident)))
    for metric in ("time_to_detect", "time_to_acknowledge"):
        for sev in (None, "SEV1", "SEV2", "SEV3", "SEV4"):
            values = sorted(whole_seconds(getattr(durations(i), metric)) for i in rows
                            if getattr(durations(i), metric) is not None and sev in (None, i.severity.value))
            want = Percentiles(len(values), values[-(-50 * len(values) // 100) - 1] if values else None,
                               values[-(-90 * len(values) // 100) - 1] if values else None)
            got = metrics[metric].all if sev is None else metrics[metric].by_severity[sev]
            assert got == want, (metric, sev)


def test_a_severity_scope_reads_the_period_or_a_duration_index_not_the_severity_index(data):
    """SQLite: with the severity's own index the planner would read every incident of that severity since the
    beginning (seconds, at a million); the scope's clauses leave it only the period's or a duration's index."""
    if db.session.get_bind().dialect.name != "sqlite":
        pytest.skip("SQLite's planner (PostgreSQL costs its plans)")
    from datetime import date

    from incidents.insights import queries as q

    scope = q.Scope(date(2026, 1, 5), date(2026, 2, 1), severities=("SEV2", "SEV3"))
    statements = []

    def record(_conn, _cursor, statement, parameters, *_args):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        for name, finish in q.FIGURES.values():
            finish(db.session, scope, q.compute_parts(db.session, name, scope.where()).get(None, {}), date(2026, 2, 2))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    incident_reads = [(s, p) for s, p in statements if "FROM incident" in s]
    assert len(incident_reads) >= 8  # the four durations' buckets and their exact seconds, at least
    for statement, parameters in incident_reads:
        plan = " | ".join(row[-1] for row in db.session.connection().exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert "ix_incident_severity" not in plan, (statement[:120], plan)
