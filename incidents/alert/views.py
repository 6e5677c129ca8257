"""Webhook endpoints (store raw, then process, answer after commit) and the alert pages."""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from incidents import jsonbody, metrics
from incidents.alert import batching, services
from incidents.alert.models import AlertStatus, Outcome, Source
from incidents.alert.sources import SOURCES, ParseError, parse
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError, Invalid, error_body
from incidents.extensions import csrf, db
from incidents.forms import form_errors
from incidents.incident import services as incident_services
from incidents.incident.models import Severity
from incidents.responses import no_store
from incidents.urls import public_base_url

log = logging.getLogger(__name__)

hooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(hooks)  # senders authenticate with the integration token, never a session cookie

TOKEN_HEADER = "X-Incidents-Token"  # noqa: S105 - a header name
_TRANSIENT_ATTEMPTS = 3


@hooks.post("/<source>")
def receive(source: str):
    """Authenticate, store the delivery and process it in one transaction; answer only after commit.

    Outcomes: processed/ignored 200, duplicate (sender retry) 200 and nothing changes, rejected 400 (kept),
    failed 202: our own bug; the delivery is kept with the error for replay. A 2xx there is deliberate:
    the body is safely stored, and Rollbar would otherwise retry the same bug ten times over 16 days."""
    if source not in SOURCES:
        abort(404)
    started = time.perf_counter()
    outcome, response, deduplicated = _receive(source)
    metrics.delivery_processed(source, outcome, time.perf_counter() - started, deduplicated)  # committed by now
    return response


def _receive(source: str):
    """`receive` itself; returns (outcome, response, whether an occurrence was deduplicated) for the metrics."""
    session = db.session
    token = request.headers.get(TOKEN_HEADER) or request.args.get("token")
    info = services.integration_for_token(session, source, token, current_app.config["INTEGRATION_CACHE_TTL"])
    if info is None:
        return "unauthorized", error_body(
            401, "unauthorized", f"A valid {source} integration token is required in the {TOKEN_HEADER} header "
            "or the token query parameter."), False
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before anything is read
    received_at = utcnow()
    headers = services.safe_headers(request.headers, request.remote_addr)

    payload = None
    try:
        payload = jsonbody.loads(raw)
        parsed = parse(source, payload)
    except ValueError as e:  # ParseError, TooDeep and JSONDecodeError are ValueErrors
        message = str(e) if isinstance(e, ParseError | jsonbody.TooDeep) else "The body is not valid JSON."
        session.rollback()
        delivery_id = services.store_delivery(
            session, info.id, source, outcome=Outcome.REJECTED, body=services.delivery_body(source, raw, payload),
            headers=headers, received_at=received_at, error=message)
        session.commit()
        answer = {"error": {"code": "rejected", "message": message, "fields": {}}, "delivery": delivery_id,
                  "outcome": Outcome.REJECTED.value}
        return Outcome.REJECTED.value, (jsonify(answer), 400), False

    body = services.delivery_body(source, raw, payload)
    key = services.dedup_key(parsed, raw)
    writer = batching.batcher(current_app)
    if writer is not None:  # group commit (batching.py); a delivery handed back runs alone below
        if session.in_transaction():
            session.rollback()  # the integration lookup's read: this thread must hold no write turn now
        work = writer.submit(batching.Work(info, parsed, body, headers, received_at, key))
        if work.result is not None:
            return _answer(work.result)
    error: BaseException | None = None
    for _attempt in range(_TRANSIENT_ATTEMPTS):
        try:
            result = services.ingest(session, info, parsed, body=body, headers=headers, received_at=received_at,
                                     key=key)
            session.commit()
            return _answer(result)
        except services.Duplicate:
            session.rollback()
            return _DUPLICATE, (jsonify(_DUPLICATE_BODY), 200), False
        except sa.exc.OperationalError as e:  # lock timeout, deadlock, serialisation: worth another try
            session.rollback()
            error = e
        except Exception as e:  # noqa: BLE001 - our bug: keep the delivery as failed, see docstring
            session.rollback()
            error = e
            break
    log.error("webhook %s delivery failed for integration %s", source, info.id, exc_info=error)
    try:
        delivery_id = services.store_delivery(
            session, info.id, source, outcome=Outcome.FAILED, body=body, headers=headers, received_at=received_at,
            event=parsed.event, error=services.describe_error(error), key=key)
        session.commit()
    except services.Duplicate:
        session.rollback()
        return _DUPLICATE, (jsonify(_DUPLICATE_BODY), 200), False
    except Exception:  # noqa: BLE001 - the database itself is failing: let the sender retry later
        session.rollback()
        log.exception("could not store failed delivery")
        return "unavailable", error_body(503, "unavailable", "Could not store the delivery; please retry."), False
    body = {"delivery": delivery_id, "outcome": Outcome.FAILED.value,
            "message": "Stored, but processing failed; it will be replayed."}
    return Outcome.FAILED.value, (jsonify(body), 202), False


_DUPLICATE = "duplicate"
_DUPLICATE_BODY = {"delivery": None, "outcome": _DUPLICATE, "message": "Already received: this retry changed nothing."}


def _answer(result: services.Result):
    return str(result.outcome), (jsonify(result.as_json()), 200), result.deduplicated


# --- pages --------------------------------------------------------------------------------------------

bp = Blueprint("alert", __name__)


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
    form = request.form
    try:
        rules = _rules_from_form(form.get("rules", ""))
        row, token = services.create_integration(
            db.session, source=form.get("source", ""), name=form.get("name", ""), token=form.get("token") or None,
            service=form.get("service") or None, rules=rules)
    except DomainError as e:
        db.session.rollback()
        return _integrations_page(form_errors(e), form, status=e.status)
    db.session.commit()
    return no_store(_integrations_page(created=_shown_once(row, token), status=201))


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
    rules = json.dumps(row.rules if row.rules is not None else services.DEFAULT_RULES[row.source.value], indent=2)
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
                                    active=bool(form.get("active")), rules=rules)
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
