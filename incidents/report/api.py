"""The ledger's figures for other tools, mounted under /api/v1 as api.report."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from incidents.apihttp import lookup_field, query_args
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.report import schemas as s
from incidents.report.queries import Week, build_ledger
from incidents.report.services import report_tz

bp = Blueprint("report", __name__)


@bp.get("/debt")
@require(Role.VIEWER)
def debt():
    """The tech-debt ledger of a team or service over the last weeks.
    ---
    get:
      tags: [debt]
      summary: Tech-debt ledger figures
      parameters: [{in: query, schema: DebtArgsSchema}]
      responses:
        200: {description: The ledger, content: {application/json: {schema: DebtSchema}}}
        422: ValidationError
    """
    args = query_args(s.DebtArgsSchema())
    team = lookup_field(catalog.get_team, args["team"], "team") if args.get("team") else None
    service = lookup_field(catalog.get_service, args["service"], "service") if args.get("service") else None
    tz = report_tz(current_app.config)
    try:
        until = Week.parse(args["until"], tz) if args.get("until") else None
    except ValueError:
        raise Invalid("until is an ISO week, YYYY-Www.", {"until": ["YYYY-Www."]}) from None
    ledger = build_ledger(db.session, now=utcnow(), tz=tz, weeks=args.get("weeks") or current_app.config["DEBT_WEEKS"],
                          until=until, team_id=team.id if team else None, service_id=service.id if service else None)
    return jsonify(s.DebtSchema().dump(s.ledger_dict(ledger, team, service)))
