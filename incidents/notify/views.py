"""The signed-in user's e-mail subscriptions page."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.catalog.services import list_teams
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.incident import services as incidents
from incidents.incident.models import Severity
from incidents.notify import services

bp = Blueprint("notify", __name__)


@bp.app_context_processor
def _incident_subscription_helper():
    """`incident_subscription(incident)` for the incident page's Subscribe button (None when signed out)."""
    def subscription(incident):
        user = actor()
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        following = services.followers(db.session, incident)
        return {"subscribed": services.is_subscribed(db.session, incident, user),
                "by_role": user.id in {incident.created_by_id, incident.commander_id, incident.comms_lead_id,
                                       incident.scribe_id},
                "count": len(following)}
    return {"incident_subscription": subscription}


@bp.post("/incidents/<ref>/subscribe")
@require(Role.VIEWER)
def follow_incident(ref: str):
    """Anyone who can read an incident may follow its status changes and updates by e-mail."""
    incident = incidents.get_incident(db.session, ref)
    if request.form.get("subscribe", "1") == "0":
        services.unsubscribe_from_incident(db.session, incident, actor())
        message = f"You no longer get e-mail about {incident.ref}."
    else:
        services.subscribe_to_incident(db.session, incident, actor())
        message = f"You will get e-mail about {incident.ref}'s status changes and updates."
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("incident.show", ref=incident.ref))


def _page(form: dict, errors: dict, status: int = 200):
    return render_template(
        "notify/subscriptions.html", subscriptions=services.list_subscriptions(db.session, actor()),
        teams=list_teams(db.session), form=form, errors=errors,
        severities=[s.value for s in Severity],
    ), status


@bp.get("/account/notifications")
@require(Role.VIEWER)
def subscriptions():
    return _page({"team_id": "", "severities": services.configured_severities(current_app.config)}, {})


@bp.post("/account/notifications")
@require(Role.VIEWER)
def subscribe():
    raw_team = request.form.get("team_id", "")
    form = {"team_id": raw_team, "severities": request.form.getlist("severities")}
    try:
        sub = services.subscribe(db.session, actor(), team_id=int(raw_team) if raw_team.isdigit() else None,
                                 severities=form["severities"])
        scope = sub.team.name if sub.team else "all incidents"
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _page(form, form_errors(e), 422)
    flash(f"You will get e-mail about {scope} ({sub.severities.replace(',', ', ')}).", "success")
    return redirect(url_for("notify.subscriptions"))


@bp.post("/account/notifications/<int:subscription_id>/delete")
@require(Role.VIEWER)
def unsubscribe(subscription_id: int):
    services.unsubscribe(db.session, actor(), subscription_id)
    db.session.commit()
    flash("Unsubscribed.", "success")
    return redirect(url_for("notify.subscriptions"))
