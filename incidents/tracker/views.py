"""Shortcut over HTTP: the signed webhook, the export buttons and the admin settings page."""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa
from flask import Blueprint, current_app, flash, g, jsonify, redirect, render_template, request, url_for

from incidents import jsonbody, metrics
from incidents.action_item import services as items
from incidents.actor import Actor
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError, error_body
from incidents.extensions import db
from incidents.postmortem import services as pm_services
from incidents.responses import safe_next
from incidents.tracker import services
from incidents.tracker.jobs import queue_export, queue_postmortem_export
from incidents.tracker.models import DeliveryOutcome, ShortcutDelivery
from incidents.tracker.shortcut import ShortcutError, circuit_state, client_from_config
from incidents.tracker.webhook import parse_event, signature_from_headers, verify_signature
from incidents.urls import public_base_url
from incidents.webhooks import describe_error, hooks, safe_headers, stored_body

log = logging.getLogger(__name__)

bp = Blueprint("tracker", __name__)


# --- inbound: Shortcut's outgoing webhook (on the shared, CSRF-exempt `webhooks` blueprint) -----------------


@hooks.post("/shortcut")
def shortcut_webhook():
    """Verify the signature, store the event, apply it, answer after the commit.

    401 unsigned or wrongly signed (not stored); 400 not a Shortcut event (kept as rejected); 200 processed,
    ignored (no story of ours) or duplicate (a replayed event id changes nothing); 202 stored but our
    processing failed (the reconcile job repairs the item's state)."""
    started = time.perf_counter()
    response = current_app.make_response(_shortcut_webhook())
    # Every answer but 401 and 503 names its outcome; Shortcut sends a few events a minute, reading it back is free.
    outcome = {401: "unauthorized", 503: "unavailable"}.get(response.status_code) or (
        (response.get_json(silent=True) or {}).get("outcome", "unknown"))
    metrics.delivery_processed("shortcut", outcome, time.perf_counter() - started)
    return response


def _shortcut_webhook():
    session = db.session
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before anything is read
    secret = current_app.config.get("SHORTCUT_WEBHOOK_SECRET") or ""
    if not verify_signature(secret, raw, signature_from_headers(request.headers)):
        return error_body(401, "unauthorized", "Payload-Signature must be the hex HMAC-SHA256 of the body, "
                                               "keyed with the configured webhook secret.")
    received_at = utcnow()
    headers = safe_headers(request.headers, request.remote_addr)
    try:
        payload = jsonbody.loads(raw)
        event = parse_event(payload)
    except ValueError as e:  # MalformedEvent and JSONDecodeError are ValueErrors
        message = "The body is not valid JSON." if isinstance(e, json.JSONDecodeError) else str(e)
        session.rollback()
        delivery = services.store_delivery(session, event_id=None, outcome=DeliveryOutcome.REJECTED,
                                           body=stored_body(raw), headers=headers, received_at=received_at,
                                           error=message)
        session.commit()
        return jsonify({"error": {"code": "rejected", "message": message, "fields": {}},
                        "delivery": delivery.id, "outcome": DeliveryOutcome.REJECTED.value}), 400

    body = stored_body(raw, payload)
    g.actor = Actor("integration", None, "Shortcut webhook")  # the audit rows of the statuses it syncs back
    try:
        delivery, applied = services.ingest_event(session, event, body=body, headers=headers,
                                                  received_at=received_at)
        session.commit()
        return jsonify({"delivery": delivery.id, "outcome": delivery.outcome.value,
                        "action_items": applied.changed, "ignored_stories": applied.ignored}), 200
    except services.Duplicate:
        session.rollback()
        return jsonify({"delivery": None, "outcome": "duplicate",
                        "message": "Already received: this event changed nothing."}), 200
    except Exception as error:  # noqa: BLE001 - our bug: keep the event as failed, answer 2xx (see docstring)
        session.rollback()
        log.error("Shortcut webhook event %s failed", event.id, exc_info=error)
        try:
            delivery = services.store_delivery(
                session, event_id=event.id, outcome=DeliveryOutcome.FAILED, body=body, headers=headers,
                received_at=received_at, changed_at=event.changed_at,
                story_ids=[c.story_id for c in event.stories], error=describe_error(error))
            session.commit()
        except services.Duplicate:
            session.rollback()
            return jsonify({"delivery": None, "outcome": "duplicate"}), 200
        except Exception:  # noqa: BLE001 - the database itself is failing: let Shortcut retry
            session.rollback()
            log.exception("could not store the failed Shortcut delivery")
            return error_body(503, "unavailable", "Could not store the event; please retry.")
        return jsonify({"delivery": delivery.id, "outcome": DeliveryOutcome.FAILED.value}), 202


# --- export buttons ------------------------------------------------------------------------------------------


@bp.app_context_processor
def _shortcut_flag():
    """`shortcut_configured` for templates/tracker/_card.html: no export buttons without a token."""
    return {"shortcut_configured": services.configured(current_app.config)}


def _back(pm_id: int):
    fallback = url_for("postmortem.view", postmortem_id=pm_id) + "#action-items"
    return redirect(safe_next(request.form.get("next"), fallback))


@bp.post("/action-items/<int:item_id>/export")
@require(Role.RESPONDER)
def export_item(item_id: int):
    item = items.get_action_item(db.session, item_id)
    pm_id = item.postmortem_id
    try:
        queue_export(db.session, item, current_app.config, by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
        return _back(pm_id)
    item = items.get_action_item(db.session, item_id)
    flash(f"\u201c{item.title}\u201d: Shortcut card {item.export.sync_state}.", "success")
    return _back(pm_id)


@bp.post("/postmortems/<int:postmortem_id>/export")
@require(Role.RESPONDER)
def export_postmortem(postmortem_id: int):
    pm = pm_services.get_postmortem(db.session, postmortem_id)
    try:
        count = len(queue_postmortem_export(db.session, pm, current_app.config, by=actor()))
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
        return _back(postmortem_id)
    flash(f"{count} action item(s) sent to Shortcut.", "success")
    return _back(postmortem_id)


# --- admin settings ------------------------------------------------------------------------------------------


def _workflows() -> tuple[list[dict], str]:
    """The workspace's workflows and their states, or an error to show instead."""
    if not services.configured(current_app.config):
        return [], ""
    try:
        client = client_from_config(current_app.config)
        try:
            return client.list_workflows(), ""
        finally:
            client.close()
    except ShortcutError as e:
        return [], e.message


@bp.get("/admin/shortcut")
@require(Role.ADMIN)
def settings():
    cfg = current_app.config
    workflows, error = _workflows()
    state_names = {state["id"]: f"{w['name']} / {state['name']} ({state['type']})"
                   for w in workflows for state in w.get("states", ())}
    default_state = cfg.get("SHORTCUT_WORKFLOW_STATE_ID")
    return render_template(
        "tracker/settings.html", configured=services.configured(cfg), api_url=cfg.get("SHORTCUT_API_URL"),
        has_secret=bool(cfg.get("SHORTCUT_WEBHOOK_SECRET")),
        webhook_url=public_base_url() + "/webhooks/shortcut",
        circuit=circuit_state(cfg), workflows=workflows, workflows_error=error, state_names=state_names,
        env_state=int(default_state) if default_state not in (None, "") else None,
        teams=catalog.list_teams(db.session), rows=services.all_settings(db.session),
        unsent=services.unsent_exports(db.session),
        deliveries=db.session.scalars(sa.select(ShortcutDelivery)
                                      .order_by(ShortcutDelivery.id.desc()).limit(20)).all(),
    )


@bp.post("/admin/shortcut/test")
@require(Role.ADMIN)
def test_connection():
    try:
        client = client_from_config(current_app.config)
        try:
            me = client.get_current_member()
        finally:
            client.close()
    except ShortcutError as e:
        flash(f"Shortcut connection failed: {e.message}", "error")
    else:
        workspace = (me.get("workspace2") or {}).get("name", "?")
        flash(f"Connected to Shortcut workspace \u201c{workspace}\u201d as {me.get('name', '?')}.", "success")
    return redirect(url_for("tracker.settings"))


@bp.post("/admin/shortcut/settings")
@require(Role.ADMIN)
def save_settings():
    team_raw = request.form.get("team_id", "")
    state_raw = request.form.get("workflow_state_id", "")
    team_id = int(team_raw) if team_raw.isdigit() else None
    state_id = int(state_raw) if state_raw.isdigit() else None
    workflows, _ = _workflows() if state_id else ([], "")
    name = next((f"{w['name']} / {st['name']}" for w in workflows for st in w.get("states", ())
                 if st["id"] == state_id), "")
    try:
        services.save_settings(db.session, team_id, workflow_state_id=state_id, workflow_state_name=name,
                               auto_export=request.form.get("auto_export") == "on", by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
    else:
        flash("Shortcut settings saved.", "success")
    return redirect(url_for("tracker.settings"))


@bp.post("/admin/shortcut/exports/<int:export_id>/give-up")
@require(Role.ADMIN)
def give_up(export_id: int):
    try:
        services.give_up(db.session, services.get_export(db.session, export_id), by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
    else:
        flash("Export abandoned: it will not be retried.", "success")
    return redirect(url_for("tracker.settings"))
