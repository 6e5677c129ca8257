"""Liveness and database check for load balancers and `incidents serve`."""

import sqlalchemy as sa
from flask import Blueprint, jsonify

from incidents.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as e:
        return jsonify({"status": "error", "database": type(e).__name__}), 503
    return jsonify({"status": "ok", "database": "ok"})
