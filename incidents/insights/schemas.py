"""The insights over the API: query parameters and answers of GET /api/v1/insights/* (documented in OpenAPI)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from incidents.insights.queries import PERIODS, SEVERITIES
from incidents.insights.tables import TABLES

_SECONDS = "Whole seconds (nearest-rank percentile); null when count is 0"


class InsightsArgsSchema(Schema):
    since = fields.Date(metadata={"description": "First day (UTC) whose incidents count, by impact start; "
                                                 "default: 89 days before until"})
    until = fields.Date(metadata={"description": "Last day (UTC) included; default: today"})
    team = fields.String(metadata={"description": "Team slug or id"})
    service = fields.String(metadata={"description": "Service slug or id"})
    severity = fields.List(fields.String(validate=validate.OneOf(SEVERITIES)),
                           metadata={"description": "One or more of SEV1..SEV4 (repeat or comma-separate)"})
    period = fields.String(validate=validate.OneOf(PERIODS),
                           metadata={"description": "Trend buckets: ISO weeks (default) or calendar months"})
    format = fields.String(validate=validate.OneOf(("json", "csv")),
                           metadata={"description": "csv: one table as text/csv (see table)"})


def _table(tables: tuple[str, ...]) -> fields.String:
    return fields.String(validate=validate.OneOf(tables), metadata={
        "description": f"With format=csv, the table: {', '.join(tables)} (default {tables[0]})"})


class ResponseTimesArgsSchema(InsightsArgsSchema):
    table = _table(TABLES["response-times"])


class FactorsArgsSchema(InsightsArgsSchema):
    table = _table(TABLES["factors"])


class FollowThroughArgsSchema(InsightsArgsSchema):
    table = _table(TABLES["follow-through"])


class InsightsScopeSchema(Schema):
    since = fields.Date(required=True)
    until = fields.Date(required=True, metadata={"description": "Included"})
    start = fields.DateTime(required=True, metadata={"description": "since, 00:00 UTC"})
    end = fields.DateTime(required=True, metadata={"description": "Exclusive: the day after until, 00:00 UTC"})
    team = fields.String(allow_none=True, required=True)
    service = fields.String(allow_none=True, required=True)
    severity = fields.List(fields.String(), required=True, metadata={"description": "Empty: every severity"})
    period = fields.String(required=True)


class PercentilesSchema(Schema):
    count = fields.Integer(required=True, metadata={"description": "How many values the percentiles are of"})
    p50 = fields.Integer(allow_none=True, required=True, metadata={"description": _SECONDS})
    p90 = fields.Integer(allow_none=True, required=True, metadata={"description": _SECONDS})


class SeverityPercentilesSchema(PercentilesSchema):
    severity = fields.String(required=True)


class MetricSchema(PercentilesSchema):
    metric = fields.String(required=True, metadata={"description": "time_to_detect, time_to_acknowledge, "
                                                                   "time_to_mitigate or time_to_resolve"})
    label = fields.String(required=True)
    by_severity = fields.List(fields.Nested(SeverityPercentilesSchema), required=True)


class InsightsGroupSchema(Schema):
    key = fields.String(allow_none=True, required=True, metadata={"description": "Slug, severity or source; "
                                                                                "null for none"})
    name = fields.String(required=True)
    incidents = fields.Integer(required=True)


class RepeatGroupSchema(InsightsGroupSchema):
    repeats = fields.Integer(required=True, metadata={"description": "Incidents that repeat an earlier one"})


class VolumeSchema(Schema):
    by_severity = fields.List(fields.Nested(InsightsGroupSchema), required=True)
    by_service = fields.List(fields.Nested(RepeatGroupSchema), required=True)
    by_team = fields.List(fields.Nested(RepeatGroupSchema), required=True)
    by_source = fields.List(fields.Nested(InsightsGroupSchema), required=True,
                            metadata={"description": "The alert source that opened it, or manual"})


class TrendPointSchema(Schema):
    period = fields.String(required=True, metadata={"description": "2026-W47 or 2026-11"})
    incidents = fields.Integer(required=True)


class RepeatsSchema(Schema):
    count = fields.Integer(required=True)
    rate = fields.Float(allow_none=True, required=True, metadata={"description": "Repeats / incidents"})
    services = fields.List(fields.Nested(RepeatGroupSchema), required=True,
                           metadata={"description": "Services with repeats, most first"})


class ResponseTimesSchema(Schema):
    scope = fields.Nested(InsightsScopeSchema, required=True)
    incidents = fields.Integer(required=True)
    metrics = fields.List(fields.Nested(MetricSchema), required=True)
    volume = fields.Nested(VolumeSchema, required=True)
    trend = fields.List(fields.Nested(TrendPointSchema), required=True)
    repeats = fields.Nested(RepeatsSchema, required=True)


class FactorCountSchema(Schema):
    category = fields.String(required=True)
    name = fields.String(required=True)
    incidents = fields.Integer(required=True)


class FactorServiceSchema(Schema):
    service = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)
    incidents = fields.Integer(required=True)
    categories = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                             metadata={"description": "Category slug -> incidents"})


class FactorPeriodSchema(Schema):
    period = fields.String(required=True)
    categories = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class FactorsSchema(Schema):
    scope = fields.Nested(InsightsScopeSchema, required=True)
    incidents = fields.Integer(required=True, metadata={"description": "Incidents whose published post-mortem "
                                                                       "names any factor"})
    by_category = fields.List(fields.Nested(FactorCountSchema), required=True)
    by_service = fields.List(fields.Nested(FactorServiceSchema), required=True)
    over_time = fields.List(fields.Nested(FactorPeriodSchema), required=True)


class ActionItemFiguresSchema(Schema):
    total = fields.Integer(required=True)
    done = fields.Integer(required=True)
    done_with_due_date = fields.Integer(required=True)
    done_on_time = fields.Integer(required=True, metadata={"description": "Closed on or before the due date (UTC)"})
    on_time_rate = fields.Float(allow_none=True, required=True)
    wont_do = fields.Integer(required=True)
    open = fields.Integer(required=True)
    overdue = fields.Integer(required=True, metadata={"description": "Open now, due before today (UTC)"})
    days_to_done = fields.Nested(PercentilesSchema, required=True,
                                 metadata={"description": "UTC calendar days from creation to done"})


class OverdueTypeSchema(Schema):
    type = fields.String(required=True)
    overdue = fields.Integer(required=True)


class OverdueTeamSchema(Schema):
    team = fields.String(allow_none=True, required=True)
    name = fields.String(required=True)
    overdue = fields.Integer(required=True)


class HighSeveritySchema(Schema):
    incidents = fields.Integer(required=True)
    with_published_postmortem = fields.Integer(required=True)
    rate = fields.Float(allow_none=True, required=True)


class FollowThroughSchema(Schema):
    scope = fields.Nested(InsightsScopeSchema, required=True)
    action_items = fields.Nested(ActionItemFiguresSchema, required=True)
    overdue_by_type = fields.List(fields.Nested(OverdueTypeSchema), required=True)
    overdue_by_team = fields.List(fields.Nested(OverdueTeamSchema), required=True)
    postmortem_lead_time = fields.Nested(PercentilesSchema, required=True,
                                         metadata={"description": "Seconds from resolution to publication"})
    sev1_sev2 = fields.Nested(HighSeveritySchema, required=True)


def _group(g) -> dict:
    return {"key": g.key, "name": g.name, "incidents": g.incidents, "repeats": g.repeats}


def response_times_dict(scope, metrics, vol) -> dict:
    return {
        "scope": scope.as_dict(), "incidents": vol.total,
        "metrics": [{"metric": m.key, "label": m.label, **m.all.as_dict(),
                     "by_severity": [{"severity": s, **p.as_dict()} for s, p in m.by_severity.items()]}
                    for m in metrics],
        "volume": {"by_severity": [_group(g) for g in vol.by_severity],
                   "by_service": [_group(g) for g in vol.by_service], "by_team": [_group(g) for g in vol.by_team],
                   "by_source": [_group(g) for g in vol.by_source]},
        "trend": [{"period": label, "incidents": n} for label, n in vol.trend],
        "repeats": {"count": vol.repeats, "rate": vol.repeat_rate,
                    "services": [_group(g) for g in vol.repeating_services]},
    }


def factors_dict(scope, f) -> dict:
    slug = {c.id: c.slug for c in f.categories}
    return {
        "scope": scope.as_dict(), "incidents": f.incidents,
        "by_category": [{"category": c.slug, "name": c.name, "incidents": f.total(c.id)} for c in f.categories],
        "by_service": [{"service": g.key, "name": g.name, "incidents": g.incidents,
                        "categories": {slug[c]: n for c, n in counts.items() if c in slug}}
                       for g, counts in f.by_service],
        "over_time": [{"period": label, "categories": {slug[c]: n for c, n in counts.items() if c in slug}}
                      for label, counts in f.over_time],
    }


def follow_through_dict(scope, ft) -> dict:
    return {
        "scope": scope.as_dict(),
        "action_items": {"total": ft.items, "done": ft.done, "done_with_due_date": ft.done_with_due,
                         "done_on_time": ft.done_on_time, "on_time_rate": ft.on_time_rate, "wont_do": ft.wont_do,
                         "open": ft.open, "overdue": ft.overdue, "days_to_done": ft.days_to_done.as_dict()},
        "overdue_by_type": [{"type": t, "overdue": n} for t, n in ft.overdue_by_type],
        "overdue_by_team": [{"team": g.key, "name": g.name, "overdue": g.incidents} for g in ft.overdue_by_team],
        "postmortem_lead_time": ft.lead_time.as_dict(),
        "sev1_sev2": {"incidents": ft.high_severity, "with_published_postmortem": ft.high_severity_published,
                      "rate": ft.published_rate},
    }
