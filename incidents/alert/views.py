"""Webhook endpoints (store raw, then process, answer after commit) and the alert pages."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, jsonify, request

from incidents.alert import services
from incidents.alert.models import Outcome
from incidents.alert.sources import SOURCES, ParseError, parse
from incidents.database import utcnow
from incidents.errors import error_body
from incidents.extensions import csrf, db

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
    session = db.session
    token = request.headers.get(TOKEN_HEADER) or request.args.get("token")
    info = services.integration_for_token(session, source, token, current_app.config.get("INTEGRATION_CACHE_TTL", 10.0))
    if info is None:
        return error_body(401, "unauthorized",
                          f"A valid {source} integration token is required in the {TOKEN_HEADER} header "
                          "or the token query parameter.")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before anything is read
    received_at = utcnow()
    headers = services.safe_headers(request.headers, request.remote_addr)

    try:
        payload = json.loads(raw)
        parsed = parse(source, payload)
    except (ValueError, RecursionError) as e:  # ParseError and JSONDecodeError are ValueErrors
        message = str(e) if isinstance(e, ParseError) else "The body is not valid JSON."
        session.rollback()
        delivery_id = services.store_delivery(
            session, info.id, source, outcome=Outcome.REJECTED, body=services.stored_body(raw),
            headers=headers, received_at=received_at, error=message)
        session.commit()
        return jsonify({"error": {"code": "rejected", "message": message, "fields": {}},
                        "delivery": delivery_id, "outcome": Outcome.REJECTED.value}), 400

    redacted = SOURCES[source].redact(payload)
    body = services.stored_body(raw, payload, redacted)
    key = services.dedup_key(parsed, raw)
    error: BaseException | None = None
    for _attempt in range(_TRANSIENT_ATTEMPTS):
        try:
            result = services.ingest(session, info, parsed, body=body, headers=headers, received_at=received_at,
                                     key=key)
            session.commit()
            return jsonify(result.as_json()), 200
        except services.Duplicate:
            session.rollback()
            return jsonify({"delivery": None, "outcome": "duplicate",
                            "message": "Already received: this retry changed nothing."}), 200
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
        return jsonify({"delivery": None, "outcome": "duplicate",
                        "message": "Already received: this retry changed nothing."}), 200
    except Exception:  # noqa: BLE001 - the database itself is failing: let the sender retry later
        session.rollback()
        log.exception("could not store failed delivery")
        return error_body(503, "unavailable", "Could not store the delivery; please retry.")
    return jsonify({"delivery": delivery_id, "outcome": Outcome.FAILED.value,
                    "message": "Stored, but processing failed; it will be replayed."}), 202
