"""The insights as named tables (header, rows): what the page shows, what `?format=csv` downloads, one source.

Each API endpoint has its tables in TABLES (the first is the default of `table=`); durations are seconds."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from incidents.insights.queries import Factors, FollowThrough, Metric, Volume

Table = tuple[list[str], list[list]]

TABLES = {
    "response-times": ("response_times", "by_severity", "by_service", "by_team", "by_source", "trend", "repeats"),
    "factors": ("by_category", "by_service", "over_time"),
    "follow-through": ("summary", "overdue_by_type", "overdue_by_team"),
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def response_tables(metrics: list[Metric], vol: Volume) -> dict[str, Table]:
    rows = []
    for m in metrics:
        rows.append([m.key, "all", m.all.count, m.all.p50, m.all.p90])
        rows += [[m.key, sev, p.count, p.p50, p.p90] for sev, p in m.by_severity.items()]
    groups = ["key", "name", "incidents"]
    return {
        "response_times": (["metric", "severity", "count", "p50_seconds", "p90_seconds"], rows),
        "by_severity": (groups, [[g.key, g.name, g.incidents] for g in vol.by_severity]),
        "by_service": (groups + ["repeats"], [[g.key, g.name, g.incidents, g.repeats] for g in vol.by_service]),
        "by_team": (groups + ["repeats"], [[g.key, g.name, g.incidents, g.repeats] for g in vol.by_team]),
        "by_source": (groups, [[g.key, g.name, g.incidents] for g in vol.by_source]),
        "trend": (["period", "incidents"], [[label, n] for label, n in vol.trend]),
        "repeats": (["service", "name", "repeats", "incidents"],
                    [[g.key, g.name, g.repeats, g.incidents] for g in vol.repeating_services]),
    }


def factor_tables(f: Factors) -> dict[str, Table]:
    cats = f.categories
    return {
        "by_category": (["category", "name", "incidents"], [[c.slug, c.name, f.total(c.id)] for c in cats]),
        "by_service": (["service", "name", *[c.slug for c in cats]],
                       [[g.key, g.name, *[counts.get(c.id, 0) for c in cats]] for g, counts in f.by_service]),
        "over_time": (["period", *[c.slug for c in cats]],
                      [[label, *[counts.get(c.id, 0) for c in cats]] for label, counts in f.over_time]),
    }


def follow_tables(ft: FollowThrough) -> dict[str, Table]:
    summary = [
        ["action_items", ft.items, None], ["done", ft.done, None], ["done_with_due_date", ft.done_with_due, None],
        ["done_on_time", ft.done_on_time, None], ["on_time_rate", _rate(ft.on_time_rate), ft.done_with_due],
        ["wont_do", ft.wont_do, None], ["open", ft.open, None], ["overdue", ft.overdue, None],
        ["days_to_done_p50", ft.days_to_done.p50, ft.days_to_done.count],
        ["days_to_done_p90", ft.days_to_done.p90, ft.days_to_done.count],
        ["postmortem_lead_time_p50_seconds", ft.lead_time.p50, ft.lead_time.count],
        ["postmortem_lead_time_p90_seconds", ft.lead_time.p90, ft.lead_time.count],
        ["sev1_sev2_incidents", ft.high_severity, None],
        ["sev1_sev2_with_published_postmortem", ft.high_severity_published, None],
        ["sev1_sev2_published_rate", _rate(ft.published_rate), ft.high_severity],
    ]
    return {
        "summary": (["figure", "value", "count"], summary),
        "overdue_by_type": (["type", "overdue"], [[t, n] for t, n in ft.overdue_by_type]),
        "overdue_by_team": (["team", "name", "overdue"], [[g.key, g.name, g.incidents] for g in ft.overdue_by_team]),
    }


def _cell(value) -> str:
    if value is None:
        return ""
    text = str(value)
    # A spreadsheet would run a cell starting like a formula: names people typed must stay text.
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_START) else text


def to_csv(table: Table) -> str:
    header, rows = table
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([_cell(h) for h in header])
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def csv_filename(endpoint: str, table: str, parts: Iterable[str]) -> str:
    return "-".join(["insights", endpoint, table.replace("_", "-"), *parts]) + ".csv"
