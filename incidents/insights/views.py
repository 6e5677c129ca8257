"""The insights page, the incidents behind each figure, and each table as CSV (any signed-in user)."""

from __future__ import annotations

import click
from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask.cli import AppGroup

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import Invalid, NotFound
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.insights import queries as q
from incidents.insights import rollup
from incidents.insights.tables import (
    TABLES,
    csv_filename,
    factor_tables,
    follow_tables,
    response_tables,
    to_csv,
)
from incidents.report import charts

bp = Blueprint("insights", __name__)

MAX_AXIS_LABELS = 14  # a year of weeks would overlap: label every n-th bucket only


def _scope() -> q.Scope:
    return q.parse_scope(db.session, request.args, utcnow().date(), severities=request.args.getlist("severity"))


def _figures(kind: str, scope: q.Scope):
    return rollup.figures(db.session, kind, scope, utcnow().date(), current_app.config["INSIGHTS_CACHE_SECONDS"])


def _thin(chart: charts.Chart) -> charts.Chart:
    step = -(-len(chart.axis) // MAX_AXIS_LABELS) or 1
    chart.axis = [(x, y, text if i % step == 0 else "") for i, (x, y, text) in enumerate(chart.axis)]
    return chart


def _charts(scope: q.Scope, metrics, vol, factors, follow) -> dict[str, charts.Chart]:
    def drill(**extra) -> str:
        return url_for("insights.incidents", **scope.args(**extra))

    minutes = [(m.label.replace("Time to ", "").capitalize(),
                [("p50 (minutes)", round((m.all.p50 or 0) / 60, 1), drill()),
                 ("p90 (minutes)", round((m.all.p90 or 0) / 60, 1), drill())]) for m in metrics]
    trend = [(label, n, drill(bucket=label)) for label, n in vol.trend]
    return {
        "response": charts.columns("p50 and p90 of each duration, in minutes", minutes),
        "severity": charts.bars("Incidents by severity", [(g.name, g.incidents, drill(severity=g.key))
                                                          for g in vol.by_severity], series="incidents"),
        "service": charts.bars("Incidents by service", [(g.name, g.incidents, drill(service=g.key))
                                                        for g in vol.by_service if g.key], series="incidents"),
        "team": charts.bars("Incidents by team", [(g.name, g.incidents, drill(team=g.key))
                                                  for g in vol.by_team if g.key], series="incidents"),
        "source": charts.bars("Incidents by source", [(g.name, g.incidents, drill(source=g.key))
                                                      for g in vol.by_source], series="incidents"),
        "trend": _thin(charts.line(f"Incidents per {scope.period}", trend, series="incidents", unit="incidents")),
        "repeats": charts.bars("Repeat incidents by service", [(g.name, g.repeats, drill(service=g.key, repeat=1))
                                                               for g in vol.repeating_services if g.key],
                               series="repeats"),
        "factors": charts.bars("Contributing factors by category", [
            (c.name, factors.total(c.id), drill(factor=c.slug)) for c in factors.categories], series="factors"),
        "overdue_type": charts.bars("Overdue action items by type", [
            (t, n, drill(overdue=1, item_type=t)) for t, n in follow.overdue_by_type if t != "none"],
            series="overdue"),
    }


@bp.get("/insights")
@require(Role.VIEWER)
def index():
    teams = catalog.list_teams(db.session)
    try:
        scope = _scope()
    except Invalid as e:
        return render_template("insights/index.html", scope=None, errors=form_errors(e), teams=teams,
                               severities=q.SEVERITIES, args=request.args), 422
    metrics, vol = _figures("response_times", scope), _figures("volume", scope)
    factors, follow = _figures("factors", scope), _figures("follow_through", scope)

    def drill(**extra) -> str:
        return url_for("insights.incidents", **scope.args(**extra))

    def csv_url(endpoint: str, table: str) -> str:
        return url_for("insights.download", name=endpoint, **scope.args(table=table))

    return render_template(
        "insights/index.html", scope=scope, errors={}, teams=teams, severities=q.SEVERITIES, args=request.args,
        metrics=metrics, vol=vol, factors=factors, follow=follow, charts=_charts(scope, metrics, vol, factors, follow),
        drill=drill, csv_url=csv_url)


@bp.get("/insights/incidents")
@require(Role.VIEWER)
def incidents():
    """The incidents behind one figure of the page: its scope plus what the figure counts."""
    scope = _scope()
    stmt, said = q.drill_down(db.session, scope, request.args, utcnow().date())
    rows, total = q.drill_incidents(db.session, stmt)
    return render_template("insights/incidents.html", scope=scope, rows=rows, total=total, said=said,
                           back=url_for("insights.index", **scope.args()))


@bp.get("/insights/<name>.csv")
@require(Role.VIEWER)
def download(name: str):
    """One table of the page as CSV, the same the API's `format=csv` answers."""
    endpoint = name
    if endpoint not in TABLES:
        raise NotFound(f"No insights {endpoint!r}.")
    table = request.args.get("table") or TABLES[endpoint][0]
    if table not in TABLES[endpoint]:
        raise Invalid(f"No table {table!r}; use one of {', '.join(TABLES[endpoint])}.",
                      {"table": list(TABLES[endpoint])})
    scope = _scope()
    if endpoint == "response-times":
        tables = response_tables(_figures("response_times", scope), _figures("volume", scope))
    elif endpoint == "factors":
        tables = factor_tables(_figures("factors", scope))
    else:
        tables = follow_tables(_figures("follow_through", scope))
    name = csv_filename(endpoint, table, (scope.since.isoformat(), scope.until.isoformat()))
    return Response(to_csv(tables[table]), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


insights_cli = AppGroup("insights", help="The insights roll-up.")


@insights_cli.command("refresh")
def refresh_command():
    """Store the roll-up of every closed day and month that changed or is new (the job worker does this every
    ten minutes; run it after a bulk load or a restore so the first insights page is quick)."""
    done = rollup.refresh(db.session, utcnow().date(), progress=click.echo)
    click.echo(f"Stored {done['day']} days, {done['block']} runs of days and {done['month']} months.")
