"""Admin pages for teams and services."""

from __future__ import annotations

from flask import Blueprint, render_template

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services
from incidents.extensions import db

bp = Blueprint("catalog", __name__)


@bp.get("/admin/teams")
@require(Role.VIEWER)
def teams():
    return render_template("catalog/teams.html", teams=services.list_teams(db.session))
