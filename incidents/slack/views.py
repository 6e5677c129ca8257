"""Slack over HTTP: the three signed endpoints (acknowledged at once, work queued), the manifest, the admin page.

Each request is verified before anything else and stored under its dedup key; the only outbound call made inside
a request is `views.open` (a trigger_id lives about 3 seconds), everything else runs in `process_inbound`."""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services as catalog
from incidents.errors import error_body
from incidents.extensions import csrf, db
from incidents.incident.models import Incident
from incidents.jobs import enqueue_after_commit
from incidents.slack import jobs, services, signing
from incidents.slack.client import SlackError, client_from_config
from incidents.urls import public_base_url

log = logging.getLogger(__name__)

bp = Blueprint("slack", __name__)
csrf.exempt(bp)  # Slack signs its requests; there is no session cookie to protect


def _verified() -> tuple | None:
    """None when the request is Slack's; else the 401 to answer (nothing else is done)."""
    reason = signing.verify(current_app.config.get("SLACK_SIGNING_SECRET") or "", request.get_data(cache=True),
                            request.headers, now=time.time())
    if reason:
        log.warning("slack request refused: %s", reason)
        return error_body(401, "unauthorized", f"Not a request from Slack: {reason}.")
    return None


def _form_payload() -> dict | None:
    try:
        payload = json.loads(request.form.get("payload") or "")
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _store_and_queue(key: str, kind: str, payload: dict) -> bool:
    """Store the request and queue its job after the commit; False for a repeat (nothing queued)."""
    row = services.record_inbound(db.session, key, kind, payload)
    if row is None:
        db.session.rollback()
        return False
    db.session.flush()
    enqueue_after_commit(jobs.process_inbound, row.id)
    db.session.commit()
    return True


def _open_view(trigger_id: str, view: dict) -> str | None:
    """views.open now (the trigger expires in ~3 s); None when it opened, else Slack's error name."""
    client = client_from_config(current_app.config)
    client.timeout = min(client.timeout, 2.5)
    client.max_wait = 0  # no time to wait out a 429 inside the 3 seconds
    try:
        client.call("views.open", trigger_id=trigger_id, view=view)
    except SlackError as e:
        log.warning("views.open failed: %s", e.error)
        return e.error
    finally:
        client.close()
    return None


def _say(text: str) -> Response:
    return jsonify({"response_type": "ephemeral", "text": text})


@bp.post("/slack/commands")
def commands():
    if (refused := _verified()) is not None:
        return refused
    form = request.form.to_dict()
    trigger_id = form.get("trigger_id") or ""
    if not trigger_id or not form.get("user_id"):
        return error_body(400, "validation_error", "Not a slash command.", {"trigger_id": ["Required."]})
    sub, _, rest = (form.get("text") or "").strip().partition(" ")
    sub = sub.lower()
    channel = form.get("channel_id") or ""
    incident = services.incident_for_channel(db.session, channel) if channel else None
    if sub in ("", "declare") or (sub in ("update", "resolve") and incident is not None):
        if services.record_inbound(db.session, f"command:{trigger_id}", "command", form, done=True) is None:
            return _say("Already opened.")
        db.session.commit()
        if sub in ("", "declare"):
            services_list = [(str(s.id), s.name) for s in catalog.list_services(db.session)]
            view = services.declare_modal(rest.strip(), services_list, channel)
        else:
            view = (services.update_modal if sub == "update" else services.resolve_modal)(incident, channel)
        error = _open_view(trigger_id, view)
        return Response(status=200) if error is None else _say(f"Could not open the form ({error}); try again.")
    if incident is None:
        return _say(jobs.HELP if sub == "help" else "That works in an incident's channel. " + jobs.HELP)
    if not _store_and_queue(f"command:{trigger_id}", "command", form):
        return Response(status=200)
    return _say(f"Working on `/incident {sub}`…")


@bp.post("/slack/interactions")
def interactions():
    if (refused := _verified()) is not None:
        return refused
    payload = _form_payload()
    if payload is None or not payload.get("type"):
        return error_body(400, "validation_error", "Expected a form field `payload` with a JSON interaction.",
                          {"payload": ["Invalid JSON."]})
    kind = payload["type"]
    if kind == "view_submission":
        view = payload.get("view") or {}
        errors = services.view_errors(view.get("callback_id") or "", services.view_values(view))
        if errors:
            return jsonify({"response_action": "errors", "errors": errors})
        _store_and_queue(services.interaction_key(payload), kind, payload)
        return Response(status=200)  # closes the modal
    if kind != "block_actions":
        return Response(status=200)  # view_closed, shortcuts: nothing to do
    action = (payload.get("actions") or [{}])[0]
    if action.get("action_id") in services.MODAL_ACTIONS and str(action.get("value", "")).isdigit():
        incident = db.session.get(Incident, int(action["value"]))
        key = services.interaction_key(payload)
        if incident is not None and services.record_inbound(db.session, key, kind, payload, done=True) is not None:
            db.session.commit()
            channel = (payload.get("channel") or {}).get("id") or ""
            modal = services.resolve_modal if action["action_id"] == "resolve" else services.update_modal
            _open_view(payload.get("trigger_id") or "", modal(incident, channel))
        return Response(status=200)
    _store_and_queue(services.interaction_key(payload), kind, payload)
    return Response(status=200)


@bp.post("/slack/events")
def events():
    if (refused := _verified()) is not None:
        return refused
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error_body(400, "validation_error", "Expected a JSON event envelope.", {"body": ["Invalid JSON."]})
    if body.get("type") == "url_verification":
        return jsonify({"challenge": str(body.get("challenge") or "")})
    if body.get("type") != "event_callback" or not body.get("event_id"):
        return Response(status=200)  # app_rate_limited and the like: nothing to store
    _store_and_queue(f"event:{body['event_id']}", "event", body)  # a retry (same event_id) is a no-op
    return Response(status=200)


# --- setup ------------------------------------------------------------------------------------------------


def manifest(base: str) -> dict:
    """The app manifest an admin pastes into "Create an app from a manifest"."""
    return {
        "display_information": {"name": "Incidents", "description": "Declare and run incidents from Slack."},
        "features": {
            "bot_user": {"display_name": "Incidents", "always_online": True},
            "slash_commands": [{"command": "/incident", "url": f"{base}/slack/commands",
                                "description": "Declare an incident, or act on this channel's incident",
                                "usage_hint": "[declare <title> | status | sev SEV1 | note <text> | "
                                              "commander @user | update | resolve]",
                                "should_escape": True}],
        },
        "oauth_config": {"scopes": {"bot": [
            "commands", "channels:manage", "channels:read", "channels:history", "chat:write", "pins:write",
            "reactions:read", "users:read", "users:read.email"]}},
        "settings": {
            "event_subscriptions": {"request_url": f"{base}/slack/events",
                                    "bot_events": ["reaction_added", "reaction_removed"]},
            "interactivity": {"is_enabled": True, "request_url": f"{base}/slack/interactions"},
            "org_deploy_enabled": False, "socket_mode_enabled": False, "token_rotation_enabled": False,
        },
    }


@bp.get("/slack/manifest")
@require(Role.ADMIN)
def app_manifest():
    return jsonify(manifest(public_base_url()))


@bp.get("/admin/slack")
@require(Role.ADMIN)
def admin():
    cfg = current_app.config
    settings = [(name, bool(cfg.get(name))) for name in
                ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_ANNOUNCE_CHANNEL")]
    return render_template("slack/admin.html", settings=settings, api_url=cfg.get("SLACK_API_URL"),
                           manifest_url=public_base_url() + "/slack/manifest",
                           last=services.last_inbound(db.session), counts=services.outbox_counts(db.session),
                           unsent=services.failed_outbox(db.session))
