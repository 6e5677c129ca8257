"""Incident pages: list, detail with timeline, create/edit forms, status buttons, notes."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.forms import form_errors, load_form
from incidents.incident import services
from incidents.incident.models import Incident, IncidentRole, Severity, Status
from incidents.incident.schemas import IncidentFormSchema, NoteFormSchema, RolesFormSchema

bp = Blueprint("incident", __name__)


# --- list -----------------------------------------------------------------------------------------

def _list_args() -> tuple[services.IncidentFilter, dict]:
    """Read the filters from the query string; unknown values are a clear 400, not a 500."""
    args = request.args
    statuses = [s for s in args.getlist("status") if s]
    severities = [s for s in args.getlist("severity") if s]
    bad = [s for s in statuses if s not in Status.__members__.values()]
    bad += [s for s in severities if s not in Severity.__members__.values()]
    if bad:
        abort(400, description=f"Unknown filter value {bad[0]!r}: choose from the filter form.")
    show = args.get("show", "open")
    if show not in ("open", "all"):
        abort(400, description="show must be 'open' or 'all'.")
    f = services.IncidentFilter(
        status=statuses or None, severity=severities or None,
        service=args.get("service") or None, team=args.get("team") or None,
        tag=(args.get("tag") or "").strip() or None, q=(args.get("q") or "").strip() or None,
        open_only=show == "open",
    )
    # What the pager must carry to the next page (per_page only when the user chose one).
    keep = {"status": statuses, "severity": severities, "service": f.service, "team": f.team, "tag": f.tag,
            "q": f.q, "show": show if show != "open" else None, "per_page": args.get("per_page")}
    return f, {k: v for k, v in keep.items() if v}


@bp.get("/")
@require(Role.VIEWER)
def index():
    f, keep = _list_args()
    cfg = current_app.config
    per_page = min(max(request.args.get("per_page", cfg["PER_PAGE"], type=int), 1), cfg["MAX_PER_PAGE"])
    page = services.list_incidents(db.session, f, page=int_arg("page", 1), per_page=per_page)
    return render_template(
        "incident/list.html", page=page, f=f, keep=keep, now=utcnow(), statuses=list(Status),
        severities=list(Severity), services=catalog.list_services(db.session), teams=catalog.list_teams(db.session),
        filtered=any(k in keep for k in ("status", "severity", "service", "team", "tag", "q")),
    )


# --- forms ----------------------------------------------------------------------------------------

def _incident_fields(form: MultiDict) -> dict:
    """The declare/edit form as service arguments, validated by the API's incident fields."""
    return load_form(IncidentFormSchema(), form)


def _form_page(incident: Incident | None, form, errors: dict, status: int = 200):
    return render_template(
        "incident/form.html", incident=incident, form=form, errors=errors, severities=list(Severity),
        services=catalog.list_services(db.session), teams=catalog.list_teams(db.session),
    ), status


@bp.route("/incidents/new", methods=["GET", "POST"])
@require(Role.RESPONDER)
def create():
    if request.method == "GET":
        preset = MultiDict({"severity": "SEV3", "service_id": request.args.get("service_id", "")})
        return _form_page(None, preset, {})
    try:
        incident = services.create_incident(db.session, created_by=actor(), **_incident_fields(request.form))
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form_page(None, request.form, form_errors(e), 422)
    flash(f"{incident.ref} declared. Acknowledge it when someone is on it.", "success")
    return redirect(url_for("incident.show", ref=incident.ref))


def _edit_form(incident: Incident) -> MultiDict:
    local = "%Y-%m-%dT%H:%M"
    return MultiDict({
        "title": incident.title, "severity": incident.severity.value, "summary": incident.summary,
        "service_id": str(incident.service_id or ""), "team_id": str(incident.team_id or ""),
        "tags": ", ".join(incident.tags),
        "started_at": incident.started_at.strftime(local), "detected_at": incident.detected_at.strftime(local),
    })


@bp.route("/incidents/<ref>/edit", methods=["GET", "POST"])
@require(Role.RESPONDER)
def edit(ref: str):
    incident = services.get_incident(db.session, ref)
    if request.method == "GET":
        return _form_page(incident, _edit_form(incident), {})
    try:
        services.update_incident(db.session, incident, by=actor(), **_incident_fields(request.form))
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form_page(incident, request.form, form_errors(e), 422)
    flash(f"Saved {incident.ref}.", "success")
    return redirect(url_for("incident.show", ref=incident.ref))


# --- the incident page and its actions ------------------------------------------------------------

def _detail_page(incident: Incident, errors: dict | None = None, status: int = 200, note: str = ""):
    return render_template(
        "incident/show.html", incident=incident, errors=errors or {}, note=note, now=utcnow(),
        next_statuses=services.next_statuses(incident), roles=list(IncidentRole),
        users=services.assignable_users(db.session),
    ), status


@bp.get("/incidents/<ref>")
@require(Role.VIEWER)
def show(ref: str):
    return _detail_page(services.get_incident(db.session, ref))


@bp.post("/incidents/<ref>/status")
@require(Role.RESPONDER)
def change_status(ref: str):
    incident = services.get_incident(db.session, ref)
    try:
        services.transition(db.session, incident, request.form.get("status", ""), by=actor(),
                            resolution=request.form.get("resolution"))
        db.session.commit()
    except DomainError as e:
        # A stale button (someone else moved it first): show the page as it is now, with the reason.
        db.session.rollback()
        return _detail_page(incident, {"_": [e.message]}, e.status)
    flash(f"{incident.ref} is now {incident.status.value}.", "success")
    return redirect(url_for("incident.show", ref=incident.ref))


@bp.post("/incidents/<ref>/notes")
@require(Role.RESPONDER)
def add_note(ref: str):
    incident = services.get_incident(db.session, ref)
    body = request.form.get("body", "")
    try:
        note = load_form(NoteFormSchema(), request.form, complete=False)
        services.add_note(db.session, incident, note["body"], by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _detail_page(incident, form_errors(e), 422, note=body)
    return redirect(url_for("incident.show", ref=incident.ref, _anchor="timeline-end"))


@bp.post("/incidents/<ref>/roles")
@require(Role.RESPONDER)
def set_roles(ref: str):
    incident = services.get_incident(db.session, ref)
    try:
        chosen = load_form(RolesFormSchema(), request.form, complete=False)
        for role in IncidentRole:
            if f"{role.value}_id" in chosen:
                services.set_role(db.session, incident, role, chosen[f"{role.value}_id"], by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _detail_page(incident, form_errors(e), 422)
    flash("Roles saved.", "success")
    return redirect(url_for("incident.show", ref=incident.ref))
