"""The alert sources' webhook endpoint (on the shared `/webhooks` blueprint) and the alert pages."""

from __future__ import annotations

import json
import re

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from incidents import jsonbody
from incidents.alert import ingestion, services
from incidents.alert.models import AlertStatus, Outcome, Source
from incidents.alert.sources import SOURCES, OptionsError, ParseError, generic
from incidents.alert.sources import parse as parse_payload
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

def _integrations_page(errors: dict | None = None, form=None, created=None, status: int = 200, preview=None):
    form = form or {}
    return render_template("alert/integrations.html", integrations=services.list_integrations(db.session),
                           services=catalog.list_services(db.session), sources=list(Source),
                           errors=errors or {}, form=form, created=created,
                           webhook_base=public_base_url(), mapping_fields=_mapping_fields(form),
                           sample=form.get("sample", ""), preview=preview,
                           preview_action=url_for("alert.preview_new_integration")), status


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
            site_url=form.get("site_url") or None, options=_options_from_form(form, form.get("source", "")))
    except DomainError as e:
        db.session.rollback()
        return _integrations_page(form_errors(e), form, status=e.status)
    db.session.commit()
    return no_store(_integrations_page(created=_shown_once(row, token), status=201))


def _options_from_form(form, source: str) -> dict:
    """The source options the forms show (the secret and site URL are columns of their own); the mapping
    fields only for a source that reads a mapping (generic), whose form always shows them."""
    options = {"severity_label": form.get("severity_label", ""), "resolve_incident": bool(form.get("resolve_incident")),
               "update_incident_severity": bool(form.get("update_incident_severity"))}
    if _reads_mapping(source):
        options["mapping"] = _mapping_from_form(form)
    return options


# --- the generic source's mapping: fields of the integration forms (templates/alert/_mapping.html) -------

def _reads_mapping(source: str) -> bool:
    return source in SOURCES and "mapping" in SOURCES[source].option_checks


def _mapping_from_form(form) -> dict:
    """The typed mapping: one input per expression ("mapping.title"), resolved values comma-separated."""
    mapping = {key: form.get(f"mapping.{key}", "") for key in generic.EXPRESSIONS}
    resolved = [value.strip() for value in form.get("mapping.resolved", "").split(",") if value.strip()]
    if resolved:
        mapping["resolved"] = resolved
    return mapping


def _mapping_fields(form=None, mapping: dict | None = None) -> dict[str, str]:
    """What the mapping inputs show: what was typed (a form), else the saved mapping."""
    if form is not None and any(key.startswith("mapping.") for key in form):
        return {key: form.get(f"mapping.{key}", "") for key in generic.KEYS}
    mapping = mapping or {}
    fields = {key: str(mapping.get(key) or "") for key in generic.EXPRESSIONS}
    fields["resolved"] = ", ".join(mapping.get("resolved") or [])
    return fields


def _preview(form) -> tuple[dict | None, dict]:
    """The events the typed mapping makes of the pasted sample (saving nothing): (preview, field errors).
    A mapping that does not check or a sample that is not JSON are field errors; a sample the mapping cannot
    read is the preview's answer, shown as its error."""
    try:
        mapping = generic.check_mapping(_mapping_from_form(form))
    except OptionsError as e:
        return None, {**e.fields, "_": [str(e)]}
    sample = form.get("sample", "")
    if not sample.strip():
        return None, {"sample": ["Paste a sample body (JSON) to preview."]}
    try:
        payload = jsonbody.loads(sample)
    except ValueError as e:
        message = str(e) if isinstance(e, jsonbody.TooDeep) else f"Not valid JSON: {e}"
        return None, {"sample": [message]}
    try:
        events = parse_payload(generic.SOURCE, payload, {}, {"mapping": mapping})
    except ParseError as e:
        return {"error": str(e), "events": []}, {}
    return {"error": None, "events": events}, {}


@bp.post("/admin/integrations/preview")
@require(Role.ADMIN)
def preview_new_integration():
    """Preview the mapping typed into the add form against a pasted sample; nothing is saved."""
    form = request.form.copy()
    form.pop("secret", None)
    preview, errors = _preview(form)
    return _integrations_page(errors, form, status=422 if errors else 200, preview=preview)


@bp.post("/admin/integrations/<int:integration_id>/preview")
@require(Role.ADMIN)
def preview_integration(integration_id: int):
    """Preview the mapping typed into an integration's form against a pasted sample; nothing is saved."""
    row = services.get_integration(db.session, integration_id)
    preview, errors = _preview(request.form)
    return _integration_page(row, errors, status=422 if errors else 200, form=request.form, preview=preview)


def _rules_from_form(text: str):
    """Empty means the source's defaults; otherwise a JSON list of rules."""
    if not text.strip():
        return None
    try:
        return jsonbody.loads(text)
    except ValueError:
        raise Invalid("Rules must be valid JSON (a list of rules), or empty for the defaults.",
                      {"rules": ["Not valid JSON."]}) from None


def _integration_page(row, errors: dict | None = None, created=None, status: int = 200, *, form=None,
                      rules: list | None | bool = False, preview=None, rules_preview=None):
    """The integration's page; `rules` (None: the defaults) shows rules from a submitted form instead of the saved
    ones, `rules_preview` the "test against the last 50 alerts" table, `preview` the generic mapping's events."""
    recent = services.list_deliveries(db.session, integration=row.id, per_page=20).items
    if rules is False:
        rules = row.rules
    shown = rules if rules is not None else services.default_rules(row.source.value)
    return render_template("alert/integration.html", integration=row, services=catalog.list_services(db.session),
                           teams=catalog.list_teams(db.session), rules_list=[_rule_row(r) for r in shown],
                           custom_rules=rules is not None, actions=services.ACTIONS, severities=list(Severity),
                           errors=errors or {}, created=created, deliveries=recent, rules_preview=rules_preview,
                           mapping_fields=_mapping_fields(form, (row.options or {}).get("mapping"))
                           if _reads_mapping(row.source.value) else None,
                           sample=(form or {}).get("sample", ""), preview=preview,
                           preview_action=url_for("alert.preview_integration", integration_id=row.id)), status


_RULE_LISTS = ("events", "severities", "environments", "tags")
_RULE_TEXTS = ("title_contains", "title_regex", "field", "equals", "service", "team")


def _rule_row(rule: dict) -> dict:
    """A rule as the editor's row shows it: lists as comma-separated text, the action a rule implies made explicit."""
    row = {key: ", ".join(rule.get(key) or []) for key in _RULE_LISTS}
    row |= {key: rule.get(key) or "" for key in _RULE_TEXTS}
    row["incident_severity"] = rule.get("incident_severity") or ""
    row["action"] = rule.get("action") or ("open" if rule.get("incident_severity") else "alert_only")
    return row


def _rules_from_rows(form) -> list[dict]:
    """The editor's rows (`rules.N.key` fields, in N's order) as rules; rows marked for removal and rows with
    nothing in them are dropped. Lists are comma-separated; only the keys given are kept."""
    numbers = sorted({int(m.group(1)) for name in form if (m := re.fullmatch(r"rules\.(\d{1,3})\.\w+", name))})
    rules = []
    for n in numbers:
        get = lambda key, n=n: (form.get(f"rules.{n}.{key}") or "").strip()  # noqa: E731
        if get("delete"):
            continue
        rule: dict = {}
        for key in _RULE_LISTS:
            items = [v.strip() for v in get(key).split(",") if v.strip()]
            if items:
                rule[key] = items
        for key in _RULE_TEXTS:
            if get(key):
                rule[key] = get(key)
        if "field" in rule or "equals" in rule:  # equals "" is a value to compare with
            rule.setdefault("field", "")
            rule["equals"] = form.get(f"rules.{n}.equals") or ""
        if get("incident_severity"):
            rule["incident_severity"] = get("incident_severity")
        if not rule and not get("action"):
            continue  # the empty row the editor offers for a new rule
        rule["action"] = get("action") or ("open" if rule.get("incident_severity") else "alert_only")
        rules.append(rule)
    return rules


def _form_rules(form):
    """None (the defaults) when "use the default rules" is ticked, else the editor's rows."""
    return None if form.get("default_rules") else _rules_from_rows(form)


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
        rules = _form_rules(form)
        services.update_integration(db.session, row, name=form.get("name", ""), service=form.get("service") or None,
                                    active=bool(form.get("active")), rules=rules, secret=form.get("secret") or None,
                                    clear_secret=bool(form.get("clear_secret")),
                                    site_url=form.get("site_url") or None,
                                    options=_options_from_form(form, row.source.value))
    except DomainError as e:
        db.session.rollback()
        return _integration_page(services.get_integration(db.session, integration_id), form_errors(e),
                                 status=e.status, form=form, rules=_form_rules(form))
    db.session.commit()
    flash("Integration saved.", "success")
    return redirect(url_for("alert.integration", integration_id=integration_id))


@bp.post("/admin/integrations/<int:integration_id>/rules/test")
@require(Role.ADMIN)
def test_rules(integration_id: int):
    """"Test against the last 50 alerts": the rules in the form (saved or not) tried on this integration's last 50
    alerts, which rule each matches and what it would do. Read-only: nothing is saved, nothing is written."""
    row = services.get_integration(db.session, integration_id)
    rules = _form_rules(request.form)
    try:
        services.validate_rules(rules, db.session)
    except DomainError as e:
        return _integration_page(row, form_errors(e), status=e.status, rules=rules)
    preview = services.preview_rules(db.session, row, rules, limit=50)  # reads only
    return _integration_page(row, rules=rules, rules_preview=preview)


@bp.post("/admin/integrations/<int:integration_id>/rotate")
@require(Role.ADMIN)
def rotate_token(integration_id: int):
    row = services.get_integration(db.session, integration_id)
    token = services.rotate_token(db.session, row)
    db.session.commit()
    return no_store(_integration_page(row, created=_shown_once(row, token)))
