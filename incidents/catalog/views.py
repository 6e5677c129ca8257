"""Teams and services: everyone signed in reads them, admins create and edit them."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services
from incidents.catalog.schemas import ServiceFormSchema, TeamFormSchema
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.forms import form_errors, load_form

bp = Blueprint("catalog", __name__)


@bp.get("/admin/teams")
@require(Role.VIEWER)
def teams():
    return render_template("catalog/teams.html", teams=services.list_teams(db.session))


def _form(kind: str, obj, form, errors: dict, status: int = 200):
    teams = services.list_teams(db.session) if kind == "service" else []
    return render_template("catalog/form.html", kind=kind, obj=obj, form=form, errors=errors,
                           teams=teams), status


@bp.route("/admin/teams/new", methods=["GET", "POST"])
@require(Role.ADMIN)
def create_team():
    if request.method == "GET":
        return _form("team", None, {}, {})
    form = request.form
    try:
        data = load_form(TeamFormSchema(), form)
        team = services.create_team(db.session, name=data["name"], slug=data["slug"], description=data["description"])
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form("team", None, form, form_errors(e), 422)
    flash(f"Team {team.name} created. Add the services it owns next.", "success")
    return redirect(url_for("catalog.teams", _anchor=f"team-{team.slug}"))


@bp.route("/admin/teams/<int:team_id>/edit", methods=["GET", "POST"])
@require(Role.ADMIN)
def edit_team(team_id: int):
    team = services.get_team(db.session, team_id)
    if request.method == "GET":
        return _form("team", team, {"name": team.name, "slug": team.slug, "description": team.description}, {})
    form = request.form
    try:
        data = load_form(TeamFormSchema(), form)
        webhook = {}  # the current URL is a secret and never shown, so a blank field keeps it
        if data["slack_webhook_url"] or data["clear_slack_webhook"]:
            webhook["slack_webhook_url"] = data["slack_webhook_url"]
        services.update_team(db.session, team, name=data["name"], slug=data["slug"] or "",
                             description=data["description"], **webhook)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form("team", team, form, form_errors(e), 422)
    flash(f"Saved team {team.name}.", "success")
    return redirect(url_for("catalog.teams", _anchor=f"team-{team.slug}"))


@bp.route("/admin/services/new", methods=["GET", "POST"])
@require(Role.ADMIN)
def create_service():
    if request.method == "GET":
        return _form("service", None, {"team_id": request.args.get("team_id", "")}, {})
    form = request.form
    try:
        data = load_form(ServiceFormSchema(), form)
        service = services.create_service(db.session, name=data["name"], slug=data["slug"], team_id=data["team_id"],
                                          description=data["description"])
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form("service", None, form, form_errors(e), 422)
    flash(f"Service {service.name} created, owned by {service.team.name}.", "success")
    return redirect(url_for("catalog.teams", _anchor=f"team-{service.team.slug}"))


@bp.route("/admin/services/<int:service_id>/edit", methods=["GET", "POST"])
@require(Role.ADMIN)
def edit_service(service_id: int):
    service = services.get_service(db.session, service_id)
    if request.method == "GET":
        return _form("service", service, {"name": service.name, "slug": service.slug,
                                          "description": service.description, "team_id": str(service.team_id)}, {})
    form = request.form
    try:
        data = load_form(ServiceFormSchema(), form)
        services.update_service(db.session, service, name=data["name"], slug=data["slug"] or "",
                                description=data["description"], team_id=data["team_id"])
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _form("service", service, form, form_errors(e), 422)
    flash(f"Saved service {service.name}.", "success")
    return redirect(url_for("catalog.teams", _anchor=f"team-{service.team.slug}"))
