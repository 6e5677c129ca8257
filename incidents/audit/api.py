"""The audit log for other tools (a SIEM), mounted under /api/v1 as api.audit: admin scope only."""

from __future__ import annotations

from flask import Blueprint, jsonify

from incidents.apihttp import page_response, page_window, query_args
from incidents.audit import services
from incidents.audit.schemas import AuditArgsSchema, AuditEntrySchema
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.extensions import db

bp = Blueprint("audit", __name__)


def audit_filter(args: dict) -> services.AuditFilter:
    """The filters of the page and the API, from their loaded AuditArgsSchema arguments."""
    names = ("actor_kind", "actor_id", "actor", "object_type", "object_id", "kind", "since", "until")
    return services.AuditFilter(**{name: args.get(name) or None for name in names})


@bp.get("/audit")
@require(Role.ADMIN)
def list_audit():
    """The audit log, newest first: security and admin events and every field change, with who, when and where.
    ---
    get:
      tags: [audit]
      summary: Read the audit log (admin scope)
      parameters: [{in: query, schema: AuditArgsSchema}]
      responses:
        200:
          description: A page of audit rows
          content:
            application/json:
              schema: AuditPageSchema
        403: Forbidden
        422: ValidationError
    """
    args = query_args(AuditArgsSchema())
    page, per_page = page_window(args)
    return jsonify(page_response(services.list_entries(db.session, audit_filter(args), page, per_page),
                                 AuditEntrySchema()))
