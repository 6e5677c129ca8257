"""Post-mortem JSON routes, mounted under /api/v1 as api.postmortem: parse -> one service call -> commit -> JSON."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from incidents.apihttp import load_json, lookup_field, page_args
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.database import reads_only
from incidents.errors import error_body
from incidents.extensions import db
from incidents.incident import services as incident_services
from incidents.postmortem import schemas as s
from incidents.postmortem import services

bp = Blueprint("postmortem", __name__)


def _dump(pm):
    return s.PostmortemSchema().dump(pm)


@bp.get("/postmortems")
@require(Role.VIEWER)
def list_postmortems():
    """List post-mortems, newest first, filtered and searched.
    ---
    get:
      tags: [postmortems]
      parameters:
        - {in: query, name: status, schema: {type: string, enum: [draft, in_review, published]}}
        - {in: query, name: team, schema: {type: string}, description: Team slug or id}
        - {in: query, name: service, schema: {type: string}, description: Service slug or id}
        - {in: query, name: since, schema: {anyOf: [{type: string, format: date}, {const: ""}]},
           description: "Incident started on or after (YYYY-MM-DD; empty for no bound)"}
        - {in: query, name: until, schema: {anyOf: [{type: string, format: date}, {const: ""}]},
           description: "Incident started on or before (YYYY-MM-DD; empty for no bound)"}
        - {in: query, name: q, schema: {type: string}, description: Full-text search over every section}
        - {in: query, name: page, schema: {type: integer, minimum: 1, maximum: 2147483647}}
        - {in: query, name: per_page, schema: {type: integer, minimum: 1, maximum: 2147483647}}
      responses:
        200: {description: One page, content: {application/json: {schema: PostmortemListSchema}}}
        404: {description: No such team or service, content: {application/json: {schema: Error}}}
        422: ValidationError
    """
    page, per_page = page_args()
    result = services.list_postmortems(db.session, s.filter_from_args(request.args), page, per_page)
    return jsonify(s.PostmortemListSchema().dump(result))


@bp.post("/incidents/<ref>/postmortem")
@require(Role.RESPONDER)
def start_postmortem(ref: str):
    """Start the incident's post-mortem from a template (one per incident).
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: ref, required: true, schema: {type: string}, description: INC-42 or 42}]
      requestBody: {required: true, content: {application/json: {schema: PostmortemStartSchema}}}
      responses:
        201: {description: Started, content: {application/json: {schema: PostmortemSchema}}}
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    data = load_json(s.PostmortemStartSchema())
    incident = incident_services.get_incident(db.session, ref)
    lookup_field(services.get_template, data["template"], "template")  # an unknown slug in a body is a 422
    pm = services.start_postmortem(db.session, incident, data["template"], by=actor())
    db.session.commit()
    return jsonify(_dump(pm)), 201, {"Location": f"/api/v1/postmortems/{pm.id}"}


@bp.get("/postmortems/<int:postmortem_id>")
@require(Role.VIEWER)
def get_postmortem(postmortem_id: int):
    """One post-mortem with its sections (each with its version), factors, participants and action items.
    ---
    get:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      responses:
        200: {description: The post-mortem, content: {application/json: {schema: PostmortemSchema}}}
        404: NotFound
    """
    return jsonify(_dump(services.get_postmortem(db.session, postmortem_id)))


@bp.put("/postmortems/<int:postmortem_id>/sections/<key>")
@require(Role.RESPONDER)
def save_section(postmortem_id: int, key: str):
    """Save one section if nobody saved it since the version you loaded.
    ---
    put:
      tags: [postmortems]
      parameters:
        - {in: path, name: postmortem_id, required: true, schema: {type: integer}}
        - {in: path, name: key, required: true, schema: {type: string}}
      requestBody: {required: true, content: {application/json: {schema: SectionUpdateSchema}}}
      responses:
        200: {description: Saved as a new version, content: {application/json: {schema: SectionSchema}}}
        404: NotFound
        409:
          description: Someone saved a newer version (nothing changed), or the post-mortem is published
          content: {application/json: {schema: SectionConflictSchema}}
        422: ValidationError
    """
    data = load_json(s.SectionUpdateSchema())
    pm = services.get_postmortem(db.session, postmortem_id)
    try:
        section = services.save_section(db.session, pm, key, data["body"], data["version"], by=actor())
    except services.SectionConflict as e:
        db.session.rollback()
        return error_body(409, e.code, e.message, e.fields, current=e.current, yours=e.yours)
    db.session.commit()
    return jsonify(s.SectionSchema().dump(section))


@bp.get("/postmortems/<int:postmortem_id>/sections/<key>/history")
@require(Role.VIEWER)
def section_history(postmortem_id: int, key: str):
    """Every saved version of a section, oldest first, with author and time.
    ---
    get:
      tags: [postmortems]
      parameters:
        - {in: path, name: postmortem_id, required: true, schema: {type: integer}}
        - {in: path, name: key, required: true, schema: {type: string}}
      responses:
        200: {description: The versions, content: {application/json: {schema: RevisionListSchema}}}
        404: NotFound
    """
    pm = services.get_postmortem(db.session, postmortem_id)
    section = services.get_section(pm, key)
    return jsonify(s.RevisionListSchema().dump({"items": section.revisions}))


@bp.post("/postmortems/<int:postmortem_id>/contributing-factors")
@require(Role.RESPONDER)
def add_factor(postmortem_id: int):
    """Add a contributing factor from the taxonomy (a post-mortem has several, never one root cause).
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      requestBody: {required: true, content: {application/json: {schema: ContributingFactorCreateSchema}}}
      responses:
        201: {description: Added, content: {application/json: {schema: ContributingFactorSchema}}}
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    data = load_json(s.ContributingFactorCreateSchema())
    pm = services.get_postmortem(db.session, postmortem_id)
    factor = services.add_factor(db.session, pm, data["category"], data["description"], by=actor())
    db.session.commit()
    return jsonify(s.ContributingFactorSchema().dump(factor)), 201


@bp.post("/postmortems/<int:postmortem_id>/comments")
@require(Role.RESPONDER)
def add_comment(postmortem_id: int):
    """Comment on a section as a reviewer.
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      requestBody: {required: true, content: {application/json: {schema: CommentCreateSchema}}}
      responses:
        201: {description: Added, content: {application/json: {schema: CommentSchema}}}
        404: NotFound
        409: Conflict
        422: ValidationError
    """
    data = load_json(s.CommentCreateSchema())
    pm = services.get_postmortem(db.session, postmortem_id)
    comment = services.add_comment(db.session, pm, data["section"], data["body"], by=actor())
    db.session.commit()
    return jsonify(s.CommentSchema().dump(comment)), 201


@bp.post("/postmortems/<int:postmortem_id>/review")
@require(Role.RESPONDER)
def submit_for_review(postmortem_id: int):
    """Draft -> in review.
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      responses:
        200: {description: In review, content: {application/json: {schema: PostmortemSchema}}}
        409: Conflict
    """
    pm = services.submit_for_review(db.session, services.get_postmortem(db.session, postmortem_id), by=actor())
    db.session.commit()
    return jsonify(_dump(pm))


@bp.post("/postmortems/<int:postmortem_id>/publish")
@require(Role.RESPONDER)
def publish(postmortem_id: int):
    """In review -> published, when every quality gate passes; 422 names each unmet gate.
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      responses:
        200: {description: Published (now read-only), content: {application/json: {schema: PostmortemSchema}}}
        409: Conflict
        422: {description: Quality gates unmet, content: {application/json: {schema: QualityGatesErrorSchema}}}
    """
    pm = services.get_postmortem(db.session, postmortem_id)
    try:
        services.publish_postmortem(db.session, pm, by=actor())
    except services.QualityGatesFailed as e:
        db.session.rollback()
        return error_body(422, e.code, e.message, e.fields, missing=e.missing)
    db.session.commit()
    return jsonify(_dump(pm))


@bp.post("/postmortems/<int:postmortem_id>/reopen")
@require(Role.ADMIN)
def reopen(postmortem_id: int):
    """Admins reopen a published post-mortem (published -> draft), recorded in its history.
    ---
    post:
      tags: [postmortems]
      parameters: [{in: path, name: postmortem_id, required: true, schema: {type: integer}}]
      requestBody: {required: false, content: {application/json: {schema: ReopenSchema}}}
      responses:
        200: {description: Reopened, content: {application/json: {schema: PostmortemSchema}}}
        403: Forbidden
        409: Conflict
    """
    data = load_json(s.ReopenSchema(), optional=True)
    pm = services.get_postmortem(db.session, postmortem_id)
    services.reopen_postmortem(db.session, pm, by=actor(), reason=data["reason"])
    db.session.commit()
    return jsonify(_dump(pm))


@bp.post("/blameless-check")
@reads_only
@require(Role.VIEWER)
def blameless_check():
    """Flag hindsight and blame wording in a text, with a learning-oriented rewrite for each (advice only).
    ---
    post:
      tags: [postmortems]
      requestBody: {required: true, content: {application/json: {schema: BlamelessCheckSchema}}}
      responses:
        200: {description: Findings (maybe none), content: {application/json: {schema: BlamelessCheckResultSchema}}}
        413: PayloadTooLarge
        422: ValidationError
    """
    return jsonify(s.blameless_findings())
