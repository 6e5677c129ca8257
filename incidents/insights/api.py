"""The insights over the API, mounted under /api/v1 as api.insights: JSON, or one table as CSV (`format=csv`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from incidents.apihttp import query_args
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.database import utcnow
from incidents.extensions import db
from incidents.insights import queries as q
from incidents.insights import rollup
from incidents.insights import schemas as s
from incidents.insights.tables import (
    TABLES,
    csv_filename,
    factor_tables,
    follow_tables,
    response_tables,
    to_csv,
)

bp = Blueprint("insights", __name__)


def _scope(schema) -> tuple[q.Scope, dict]:
    args = query_args(schema)  # types and choices: a 422 naming the parameter
    scope = q.parse_scope(db.session, request.args, utcnow().date(), severities=args.get("severity") or ())
    return scope, args


def _figures(kind: str, scope: q.Scope):
    return rollup.figures(db.session, kind, scope, utcnow().date(), current_app.config["INSIGHTS_CACHE_SECONDS"])


def _csv(endpoint: str, scope: q.Scope, tables: dict, args: dict) -> Response:
    table = args.get("table") or TABLES[endpoint][0]
    name = csv_filename(endpoint, table, (scope.since.isoformat(), scope.until.isoformat()))
    return Response(to_csv(tables[table]), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/insights/response-times")
@require(Role.VIEWER)
def insights_response_times():
    """Response times (p50/p90 of each duration), incident volume, the trend and repeats of a period.
    ---
    get:
      tags: [insights]
      summary: Response times, volume and repeats
      description: Incidents whose impact started from since to until (both included, UTC). Durations are
        whole seconds; percentiles are nearest-rank, each with the count it is based on.
      parameters: [{in: query, schema: ResponseTimesArgsSchema}]
      responses:
        200:
          description: The figures, or with format=csv one table
          content:
            application/json: {schema: ResponseTimesSchema}
            text/csv: {schema: {type: string}}
        422: ValidationError
    """
    scope, args = _scope(s.ResponseTimesArgsSchema())
    metrics, vol = _figures("response_times", scope), _figures("volume", scope)
    if args.get("format") == "csv":
        return _csv("response-times", scope, response_tables(metrics, vol), args)
    return jsonify(s.ResponseTimesSchema().dump(s.response_times_dict(scope, metrics, vol)))


@bp.get("/insights/factors")
@require(Role.VIEWER)
def insights_factors():
    """Contributing factors of the published post-mortems of a period's incidents.
    ---
    get:
      tags: [insights]
      summary: Contributing factors by category, service and over time
      description: Each figure counts incidents (an incident once per category) whose published post-mortem names
        the category.
      parameters: [{in: query, schema: FactorsArgsSchema}]
      responses:
        200:
          description: The figures, or with format=csv one table
          content:
            application/json: {schema: FactorsSchema}
            text/csv: {schema: {type: string}}
        422: ValidationError
    """
    scope, args = _scope(s.FactorsArgsSchema())
    figures = _figures("factors", scope)
    if args.get("format") == "csv":
        return _csv("factors", scope, factor_tables(figures), args)
    return jsonify(s.FactorsSchema().dump(s.factors_dict(scope, figures)))


@bp.get("/insights/follow-through")
@require(Role.VIEWER)
def insights_follow_through():
    """Action items done on time, days to done, overdue by type and team; post-mortem lead time and coverage.
    ---
    get:
      tags: [insights]
      summary: Follow-through of a period's incidents
      parameters: [{in: query, schema: FollowThroughArgsSchema}]
      responses:
        200:
          description: The figures, or with format=csv one table
          content:
            application/json: {schema: FollowThroughSchema}
            text/csv: {schema: {type: string}}
        422: ValidationError
    """
    scope, args = _scope(s.FollowThroughArgsSchema())
    figures = _figures("follow_through", scope)
    if args.get("format") == "csv":
        return _csv("follow-through", scope, follow_tables(figures), args)
    return jsonify(s.FollowThroughSchema().dump(s.follow_through_dict(scope, figures)))
