"""Incident pages: list, the war room (people, status updates, links, timeline), create/edit forms, status
buttons, notes; and the public stakeholder view at /status/<token>."""

from __future__ import annotations

import math
from datetime import UTC, timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError, Invalid, NotFound
from incidents.extensions import db
from incidents.forms import form_errors, load_form
from incidents.incident import services
from incidents.incident.durations import durations
from incidents.incident.models import EntryKind, Incident, IncidentRole, Severity, Status
from incidents.incident.schemas import (
    IncidentFormSchema,
    LinksFormSchema,
    NoteFormSchema,
    RolesFormSchema,
    StatusUpdateFormSchema,
)
from incidents.urls import public_base_url

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
    page = services.list_incidents(db.session, f, page=int_arg("page", 1), per_page=per_page,
                                   before=request.args.get("before") or None)
    return render_template(
        "incident/list.html", page=page, f=f, keep=keep, now=utcnow(), durations=durations, statuses=list(Status),
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


# --- the incident page: the war room ------------------------------------------------------------

# Timeline filters (?show=notes,status,alerts,updates; repeated or comma-separated): each picks entry kinds, and
# none picked shows every entry.
TIMELINE_FILTERS: dict[str, tuple[str, frozenset[EntryKind]]] = {
    "notes": ("Notes", frozenset({EntryKind.NOTE})),
    "status": ("Status and people", frozenset({EntryKind.CREATED, EntryKind.STATUS, EntryKind.ROLE, EntryKind.EDIT})),
    "alerts": ("Alerts and deploys", frozenset({EntryKind.ALERT, EntryKind.DEPLOY})),
    "updates": ("Status updates", frozenset({EntryKind.UPDATE})),
}
NEXT_UPDATE_CHOICES = (15, 30, 60, 120, 240)  # minutes offered for "next update in"


def _timeline_filter() -> list[str]:
    chosen = [part.strip() for raw in request.args.getlist("show") for part in raw.split(",") if part.strip()]
    if bad := [c for c in chosen if c not in TIMELINE_FILTERS]:
        abort(400, description=f"Unknown timeline filter {bad[0]!r}: use notes, status, alerts or updates.")
    return list(dict.fromkeys(chosen))


def _timeline(incident: Incident, chosen: list[str]) -> tuple[list, list]:
    """The entries to show (newest first while the incident is open, as it happened once it is over) and the
    pinned ones, which are always shown on top."""
    kinds = frozenset().union(*(TIMELINE_FILTERS[c][1] for c in chosen)) if chosen else None
    entries = [e for e in incident.timeline if kinds is None or e.kind in kinds]
    if incident.is_open:
        entries.reverse()
    return entries, [e for e in incident.timeline if e.pinned]


def update_timer(incident: Incident, now) -> dict | None:
    """Minutes until the next status update is due, or by which it is overdue (open incidents with a timer)."""
    if not incident.is_open or incident.next_update_at is None:
        return None
    seconds = (incident.next_update_at - now).total_seconds()
    return {"overdue": incident.update_overdue(now), "minutes": max(math.ceil(abs(seconds) / 60), 1),
            "at": incident.next_update_at}


_LINKS = (("chat_url", "Chat channel", "Chat"), ("call_url", "Call", "Call"), ("runbook_url", "Runbook", "Runbook"))


def _links(incident: Incident) -> list[dict]:
    """The war room's links; only http(s) ones become links (the service accepts no other, older rows aside)."""
    return [{"key": key, "label": label, "short": short,
             "url": url if (url := getattr(incident, key)).startswith(("https://", "http://")) else ""}
            for key, label, short in _LINKS]


def _status_url(incident: Incident) -> str | None:
    token = incident.status_token
    return public_base_url() + url_for("status.view", token=token) if token else None


def _detail_page(incident: Incident, errors: dict | None = None, status: int = 200, *, failed: str = "",
                 form: MultiDict | None = None, note: str = ""):
    """The page; after a refused post, `failed` names the form whose fields carry `errors` and keep `form`."""
    now = utcnow()
    chosen = _timeline_filter() if request.method == "GET" else []
    entries, pinned = _timeline(incident, chosen)
    updates = incident.updates
    moves = services.next_statuses(incident)
    interval = current_app.config["UPDATE_INTERVAL_MINUTES"]
    return render_template(
        "incident/show.html", incident=incident, errors=errors or {}, failed=failed, form=form or MultiDict(),
        note=note, now=now, next_statuses=moves, roles=list(IncidentRole), users=services.assignable_users(db.session),
        durations=durations(incident, now), open_for=(now - incident.started_at).total_seconds(),
        timer=update_timer(incident, now), latest=updates[0] if updates else None,
        updates_by_id={u.id: u for u in updates}, entries=entries, pinned=pinned, filters=TIMELINE_FILTERS,
        chosen=chosen, update_statuses=[incident.status] + [s for s in moves if s.is_open or s == Status.RESOLVED],
        next_choices=sorted({*NEXT_UPDATE_CHOICES, interval}), interval=interval, status_url=_status_url(incident),
        links=_links(incident),
    ), status


def _refused(incident: Incident, e: DomainError, failed: str):
    """Roll back and show the page again with the reasons beside the inputs; a missing row is a plain 404."""
    db.session.rollback()
    if isinstance(e, NotFound):
        raise e
    return _detail_page(incident, form_errors(e, headline=True), e.status, failed=failed, form=request.form)


def _back(incident: Incident, anchor: str | None = None):
    return redirect(url_for("incident.show", ref=incident.ref, _anchor=anchor))


@bp.get("/incidents/<ref>")
@require(Role.VIEWER)
def show(ref: str):
    return _detail_page(services.get_incident(db.session, ref))


@bp.post("/incidents/<ref>/status")
@require(Role.RESPONDER)
def change_status(ref: str):
    incident = services.get_incident(db.session, ref)
    to = request.form.get("status", "")
    resolution = request.form.get("resolution", "").strip()
    try:
        services.transition(db.session, incident, to, by=actor(), resolution=resolution or None)
        db.session.commit()
    except DomainError as e:
        # A stale button (someone else moved it first) or a missing resolution: the page as it is now, with why.
        return _refused(incident, e, "resolve" if to == Status.RESOLVED else "status")
    flash(f"{incident.ref} is now {incident.status.value}.", "success")
    return _back(incident)


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
        return _detail_page(incident, form_errors(e), 422, failed="note", note=body)
    return _back(incident, "timeline")


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
        return _refused(incident, e, "roles")
    flash("Roles saved.", "success")
    return _back(incident)


@bp.post("/incidents/<ref>/assign-me")
@require(Role.RESPONDER)
def assign_me(ref: str):
    incident = services.get_incident(db.session, ref)
    try:
        if request.form.get("role") not in {r.value for r in IncidentRole}:
            raise Invalid("Choose a role to take.", {"role": ["Choose commander, communications lead or scribe."]})
        role = IncidentRole(request.form["role"])
        services.set_role(db.session, incident, role, actor().id, by=actor())
        db.session.commit()
    except DomainError as e:
        return _refused(incident, e, "roles")
    flash(f"You are the {role.label.lower()} of {incident.ref}.", "success")
    return _back(incident)


@bp.post("/incidents/<ref>/updates")
@require(Role.RESPONDER)
def post_update(ref: str):
    incident = services.get_incident(db.session, ref)
    try:
        data = load_form(StatusUpdateFormSchema(), request.form)
        next_at = data["next_at"].astimezone(UTC) if data["next_at"] else None
        if next_at is None and data["next_in"]:
            next_at = utcnow() + timedelta(minutes=data["next_in"])
        services.post_status_update(
            db.session, incident, impact=data["impact"].strip(), actions=data["actions"].strip(),
            status=data["status"], next_update_at=next_at, resolution=data["resolution"].strip() or None, by=actor())
        db.session.commit()
    except DomainError as e:
        return _refused(incident, e, "update")
    flash("Update posted." + (" It is on the stakeholder page." if incident.status_token else ""), "success")
    return _back(incident)


@bp.post("/incidents/<ref>/links")
@require(Role.RESPONDER)
def set_links(ref: str):
    incident = services.get_incident(db.session, ref)
    try:
        links = {k: v.strip() for k, v in load_form(LinksFormSchema(), request.form).items()}
        services.set_links(db.session, incident, **links, by=actor())
        db.session.commit()
    except DomainError as e:
        return _refused(incident, e, "links")
    flash("Links saved.", "success")
    return _back(incident)


@bp.post("/incidents/<ref>/status-link")
@require(Role.RESPONDER)
def status_link(ref: str):
    incident = services.get_incident(db.session, ref)
    action = request.form.get("action", "")
    try:
        if action == "issue":
            services.issue_status_link(db.session, incident, show_names=bool(request.form.get("show_names")),
                                       by=actor())
            message = "Stakeholder link ready: anyone with it can read the updates, so share it with care."
        elif action == "revoke":
            services.revoke_status_link(db.session, incident, by=actor())
            message = "Stakeholder link revoked: it now answers 404."
        else:
            raise Invalid("Choose to issue or revoke the link.", {"action": ["Use issue or revoke."]})
        db.session.commit()
    except DomainError as e:
        return _refused(incident, e, "status_link")
    flash(message, "success")
    return _back(incident, "stakeholders")


@bp.post("/incidents/<ref>/timeline/<int:entry_id>/pin")
@require(Role.RESPONDER)
def pin(ref: str, entry_id: int):
    incident = services.get_incident(db.session, ref)
    pinned = request.form.get("pinned", "")
    try:
        if pinned not in ("1", "0"):
            raise Invalid("Pin (1) or unpin (0).", {"pinned": ["Use 1 or 0."]})
        services.set_pinned(db.session, incident, entry_id, pinned == "1", by=actor())
        db.session.commit()
    except DomainError as e:
        return _refused(incident, e, "pin")
    return _back(incident, "timeline")


# --- the stakeholder view: public, read-only, by an unguessable token -----------------------------------------

status_bp = Blueprint("status", __name__)


@status_bp.after_request
def _private(response):
    # The token is the only key: never cached, indexed or sent on as a referrer (404s included).
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@status_bp.get("/status/<token>")
def view(token: str):
    try:
        incident = services.incident_for_status_token(db.session, token)
    except NotFound:
        abort(404, description="There is no status page at this address; ask the incident team for a new link.")
    now = utcnow()
    updates = incident.updates
    people = [(r.label, incident.role_holder(r).name) for r in IncidentRole
              if incident.status_show_names and incident.role_holder(r)]
    return render_template("status/show.html", incident=incident, updates=updates,
                           latest=updates[0] if updates else None, now=now, timer=update_timer(incident, now),
                           people=people)
