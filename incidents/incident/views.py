"""Incident pages: list, detail with timeline, create/edit forms, status buttons, notes."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError, Invalid
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.incident import services
from incidents.incident.models import Incident, IncidentRole, Severity, Status

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

def _parse_time(form: MultiDict, name: str, errors: dict) -> datetime | None:
    """A datetime-local value, read as UTC; blank means 'not given'."""
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        errors[name] = ["Use the date picker, or YYYY-MM-DDTHH:MM."]
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _incident_fields(form: MultiDict) -> dict:
    """Turn the incident form into service arguments; bad choices raise Invalid with every field error."""
    errors: dict[str, list[str]] = {}
    severity = form.get("severity", "")
    if severity not in Severity.__members__.values():
        errors["severity"] = ["Choose a severity."]
    for name in ("service_id", "team_id"):
        if form.get(name) and not form[name].isdigit():
            errors[name] = ["Choose from the list."]
    fields = {
        "title": form.get("title", ""), "severity": severity, "summary": form.get("summary", ""),
        "service_id": int(form["service_id"]) if form.get("service_id", "").isdigit() else None,
        "team_id": int(form["team_id"]) if form.get("team_id", "").isdigit() else None,
        "tags": [t for t in form.get("tags", "").split(",") if t.strip()],
        "started_at": _parse_time(form, "started_at", errors),
        "detected_at": _parse_time(form, "detected_at", errors),
    }
    if not fields["title"].strip():
        errors["title"] = ["A title is required."]
    if errors:
        raise Invalid("Please correct the marked fields.", errors)
    return fields


def _form_page(incident: Incident | None, form, errors: dict, status: int = 200):
    return render_template(
        "incident/form.html", incident=incident, form=form, errors=errors, severities=list(Severity),
        services=catalog.list_services(db.session), teams=catalog.list_teams(db.session),
    ), status


def _catalog_errors(e: DomainError) -> dict:
    # A vanished service or team is a field problem of this form, not a missing page.
    if e.status == 404 and "service" in e.message:
        return {"service_id": [e.message]}
    if e.status == 404 and "team" in e.message:
        return {"team_id": [e.message]}
    return form_errors(e)


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
        return _form_page(None, request.form, _catalog_errors(e), 422)
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
        return _form_page(incident, request.form, _catalog_errors(e), 422)
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
        services.transition(db.session, incident, request.form.get("status", ""), by=actor())
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
        services.add_note(db.session, incident, body, by=actor())
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
        for role in IncidentRole:
            raw = request.form.get(role.value)
            if raw is None:
                continue  # not on the submitted form: leave as is
            if raw and not raw.isdigit():
                raise Invalid("Choose a person from the list.", {role.value: ["Choose from the list."]})
            services.set_role(db.session, incident, role, int(raw) if raw else None, by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _detail_page(incident, form_errors(e), 422)
    flash("Roles saved.", "success")
    return redirect(url_for("incident.show", ref=incident.ref))
