"""JSON API under /api/v1, authenticated by bearer tokens only (no cookies, so no CSRF exposure)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, g, jsonify, request

from incidents.auth import services as auth_services
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.extensions import csrf, db
from incidents.incident import services as incident_services

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


@bp.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user = auth_services.user_for_token(db.session, token.strip())
        if user is not None:
            g.api_user = user
            if db.session.dirty:  # last_used_at moved: best effort, never fail a request for it
                try:
                    db.session.commit()
                except sa.exc.OperationalError:
                    db.session.rollback()


@bp.get("/incidents")
@require(Role.VIEWER)
def list_incidents():
    page = incident_services.list_incidents(db.session, incident_services.IncidentFilter())
    return jsonify({"items": [{"id": i.id, "ref": i.ref, "title": i.title} for i in page.items],
                    "page": page.page, "pages": page.pages, "total": page.total})
import incidents.action_item.api, incidents.postmortem.api  # noqa: E401, E402, F401, I001  (routes on `bp`)
