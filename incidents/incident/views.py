"""Incident pages: list, detail with timeline, create/edit forms, status buttons, notes."""

from __future__ import annotations

from flask import Blueprint, render_template

from incidents.auth.models import Role
from incidents.auth.permissions import require

bp = Blueprint("incident", __name__)


@bp.get("/")
@require(Role.VIEWER)
def index():
    return render_template("incident/list.html")
