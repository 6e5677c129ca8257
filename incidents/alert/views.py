"""The alert sources' webhook endpoint (on the shared `/webhooks` blueprint) and the alert pages."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from incidents import jsonbody
from incidents.alert import ingestion, services
from incidents.alert.models import AlertStatus, Outcome, Source
from incidents.alert.sources import SOURCES
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.errors import DomainError, Invalid
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.incident import services as incident_services
from incidents.incident.models import Severity
from incidents.responses import no_store
from incidents.urls import public_base_url
from incidents.webhooks import hooks


@hooks.post("/<source>")
def receive(source: str):
    """A delivery from an alert source: stored and processed in incidents/alert/ingestion.py, answered after commit."""
    if source not in SOURCES:
        abort(404)
    return ingestion.receive(source, request)


# --- pages --------------------------------------------------------------------------------------------

bp = Blueprint("alert", __name__)


@bp.app_context_processor
def _incident_alerts_helper():
    """`incident_alerts(incident)` for the incident page (templates/alert/_incident_panel.html and "Opened by"):
    the hook by which alerts appear there while the incident package knows nothing of alerts."""
    return {"incident_alerts": lambda incident: services.incident_alerts(db.session, incident.id)}


@bp.get("/alerts")
@require(Role.VIEWER)
def alerts():
    args = {k: v for k, v in request.args.items() if k in ("status", "source", "integration", "q") and v}
    args.setdefault("status", "open")
    f = services.AlertFilter(status=None if args["status"] == "all" else args["status"], source=args.get("source"),
                             integration=int_arg("integration"), q=args.get("q"))
    page = services.list_alerts(db.session, f, int_arg("page") or 1, current_app.config["PER_PAGE"])
    return render_template("alert/list.html", page=page, args=args, statuses=list(AlertStatus),
                           sources=list(Source), integrations=services.list_integrations(db.session))


@bp.get("/alerts/<int:alert_id>")
@require(Role.VIEWER)
def alert(alert_id: int, errors: dict | None = None, status: int = 200):
    row = services.get_alert(db.session, alert_id)
    deliveries = services.list_deliveries(db.session, alert=row.id, per_page=50).items
    return render_template("alert/detail.html", alert=row, deliveries=deliveries, severities=list(Severity),
                           errors=errors or {}), status


@bp.post("/alerts/<int:alert_id>/open-incident")
@require(Role.RESPONDER)
def open_incident(alert_id: int):
    row = services.get_alert(db.session, alert_id)
    try:
        incident = services.open_incident_from_alert(db.session, row, request.form.get("severity", ""), by=actor())
    except DomainError as e:
        db.session.rollback()
        return alert(alert_id, form_errors(e), e.status)
    db.session.commit()
    flash(f"Opened {incident.ref} from this alert.", "success")
    return redirect(url_for("alert.alert", alert_id=alert_id))


@bp.post("/alerts/<int:alert_id>/attach")
@require(Role.RESPONDER)
def attach(alert_id: int):
    row = services.get_alert(db.session, alert_id)
    try:
        incident = incident_services.get_incident(db.session, request.form.get("incident", ""))
        services.attach_alert(db.session, row, incident, by=actor())
    except DomainError as e:
        db.session.rollback()
        return alert(alert_id, form_errors(e), e.status)
    db.session.commit()
    flash(f"Attached to {incident.ref}.", "success")
    return redirect(url_for("alert.alert", alert_id=alert_id))


@bp.get("/deliveries")
@require(Role.RESPONDER)
def deliveries():
    """The delivery log (bodies hold the senders' data, so responders and up)."""
    integration, outcome = int_arg("integration"), request.args.get("outcome") or None
    page = services.list_deliveries(db.session, integration=integration, outcome=outcome,
                                    page=int_arg("page") or 1, per_page=current_app.config["PER_PAGE"])
    args = {k: v for k, v in (("integration", integration), ("outcome", outcome)) if v}
    return render_template("alert/deliveries.html", page=page, args=args, outcomes=list(Outcome),
                           integrations=services.list_integrations(db.session))


@bp.get("/deliveries/<int:delivery_id>")
@require(Role.RESPONDER)
def delivery(delivery_id: int):
    row = services.get_delivery(db.session, delivery_id)
    try:
        pretty = json.dumps(json.loads(row.body), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pretty = row.body
    return render_template("alert/delivery.html", delivery=row, pretty=pretty,
                           replayable=row.outcome in services.REPLAYABLE)


@bp.post("/deliveries/<int:delivery_id>/replay")
@require(Role.RESPONDER)
def replay(delivery_id: int):
    row = services.get_delivery(db.session, delivery_id)
    result = services.replay_delivery(db.session, row)
    db.session.commit()
    category = "success" if result.outcome in (Outcome.PROCESSED, Outcome.IGNORED) else "error"
    flash(f"Replayed: {result.outcome}. {result.message}".strip(), category)
    return redirect(url_for("alert.delivery", delivery_id=delivery_id))


# --- integrations admin -------------------------------------------------------------------------------

def _integrations_page(errors: dict | None = None, form=None, created=None, status: int = 200):
    return render_template("alert/integrations.html", integrations=services.list_integrations(db.session),
                           services=catalog.list_services(db.session), sources=list(Source),
                           errors=errors or {}, form=form or {}, created=created,
                           webhook_base=public_base_url()), status


def _shown_once(row, token: str) -> dict:
    """Rendered in the response itself, never flashed: the session cookie is signed, not encrypted."""
    return {"integration": row, "token": token,
            "url": services.webhook_url(public_base_url(), row.source.value, token)}


@bp.get("/admin/integrations")
@require(Role.ADMIN)
def integrations():
    return _integrations_page()


@bp.post("/admin/integrations")
@require(Role.ADMIN)
def create_integration():
    form = request.form.copy()
    form.pop("secret", None)  # a failed form is shown again: never with the secret in it
    secret = request.form.get("secret")
    try:
        rules = _rules_from_form(form.get("rules", ""))
        row, token = services.create_integration(
            db.session, source=form.get("source", ""), name=form.get("name", ""), token=form.get("token") or None,
            service=form.get("service") or None, rules=rules, secret=secret or None,
            site_url=form.get("site_url") or None, options=_options_from_form(form))
    except DomainError as e:
        db.session.rollback()
        return _integrations_page(form_errors(e), form, status=e.status)
    db.session.commit()
    return no_store(_integrations_page(created=_shown_once(row, token), status=201))


def _options_from_form(form) -> dict:
    """The source options the forms show (the secret and site URL are columns of their own)."""
    return {"severity_label": form.get("severity_label", ""), "resolve_incident": bool(form.get("resolve_incident")),
            "update_incident_severity": bool(form.get("update_incident_severity"))}


def _rules_from_form(text: str):
    """Empty means the source's defaults; otherwise a JSON list of rules."""
    if not text.strip():
        return None
    try:
        return jsonbody.loads(text)
    except ValueError:
        raise Invalid("Rules must be valid JSON (a list of rules), or empty for the defaults.",
                      {"rules": ["Not valid JSON."]}) from None


def _integration_page(row, errors: dict | None = None, created=None, status: int = 200):
    recent = services.list_deliveries(db.session, integration=row.id, per_page=20).items
    rules = json.dumps(row.rules if row.rules is not None else services.default_rules(row.source.value), indent=2)
    return render_template("alert/integration.html", integration=row, services=catalog.list_services(db.session),
                           rules=rules, custom_rules=row.rules is not None, errors=errors or {},
                           created=created, deliveries=recent), status


@bp.get("/admin/integrations/<int:integration_id>")
@require(Role.ADMIN)
def integration(integration_id: int):
    return _integration_page(services.get_integration(db.session, integration_id))


@bp.post("/admin/integrations/<int:integration_id>")
@require(Role.ADMIN)
def update_integration(integration_id: int):
    row = services.get_integration(db.session, integration_id)
    form = request.form
    try:
        rules = None if form.get("default_rules") else _rules_from_form(form.get("rules", ""))
        services.update_integration(db.session, row, name=form.get("name", ""), service=form.get("service") or None,
                                    active=bool(form.get("active")), rules=rules, secret=form.get("secret") or None,
                                    clear_secret=bool(form.get("clear_secret")),
                                    site_url=form.get("site_url") or None, options=_options_from_form(form))
    except DomainError as e:
        db.session.rollback()
        return _integration_page(services.get_integration(db.session, integration_id), form_errors(e),
                                 status=e.status)
    db.session.commit()
    flash("Integration saved.", "success")
    return redirect(url_for("alert.integration", integration_id=integration_id))


@bp.post("/admin/integrations/<int:integration_id>/rotate")
@require(Role.ADMIN)
def rotate_token(integration_id: int):
    row = services.get_integration(db.session, integration_id)
    token = services.rotate_token(db.session, row)
    db.session.commit()
    return no_store(_integration_page(row, created=_shown_once(row, token)))
