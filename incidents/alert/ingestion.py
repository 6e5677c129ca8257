"""The hot path of one alert webhook delivery: authenticate, store it raw and process it, answer after commit.

With batching on (the default), the process's writer (batching.py) applies it with the deliveries that arrived
together. One the writer hands back, or every one with batching off, runs alone: its own transaction, retried on
transient database errors; a delivery our code cannot process is stored FAILED, for replay. Every path applies it
with the same `services.ingest`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import sqlalchemy as sa
from flask import Request, current_app, g, jsonify

from incidents import jsonbody, metrics
from incidents.actor import Actor
from incidents.alert import batching, services
from incidents.alert.models import Outcome
from incidents.alert.sources import SOURCES, ParseError, parse
from incidents.database import DEFER_SERIALISED, utcnow
from incidents.errors import error_body
from incidents.extensions import db
from incidents.webhooks import describe_error, lowercase_headers, safe_headers

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Incidents-Token"  # noqa: S105 - a header name
_TRANSIENT_ATTEMPTS = 3

_DUPLICATE = "duplicate"
_DUPLICATE_BODY = {"delivery": None, "outcome": _DUPLICATE, "message": "Already received: this retry changed nothing."}


def receive(source: str, request: Request):
    """The response to a delivery of `source` (a known one), counted in the metrics once committed.

    Outcomes: processed/ignored 200, duplicate (sender retry) 200 and nothing changes, rejected 400 (kept),
    failed 202: our own bug; the delivery is kept with the error for replay. A 2xx there is deliberate:
    the body is safely stored, and Rollbar would otherwise retry the same bug ten times over 16 days."""
    started = time.perf_counter()
    outcome, response, deduplicated = _receive(source, request)
    metrics.delivery_processed(source, outcome, time.perf_counter() - started, deduplicated)  # committed by now
    return response


def request_token(request: Request) -> str | None:
    """Our integration token: the X-Incidents-Token header, `Authorization: Bearer` (what Alertmanager's and
    Grafana's http_config send) or the token query parameter, in that order."""
    token = request.headers.get(TOKEN_HEADER)
    if token:
        return token
    scheme, _, credentials = (request.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.args.get("token")


def check_signature(info: services.IntegrationInfo, raw: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the delivery may be stored: the source does not sign, or its signature checks out with the
    integration's secret; else the reason (never the secret, nor the expected signature)."""
    spec = SOURCES[info.source]
    if spec.verify is None or (not spec.signed and not info.secret):
        return None
    if not info.secret:
        return f"This {spec.label} integration has no signing secret: set one before it can receive deliveries."
    try:
        return spec.verify(raw, headers, info.secret, time.time())
    except Exception:  # a verifier's bug must not let a delivery in, nor become a 500
        log.exception("webhook %s: the signature check of integration %s raised", info.source, info.id)
        return "The signature could not be checked."


def _receive(source: str, request: Request):
    """`receive` itself; returns (outcome, response, whether an occurrence was deduplicated) for the metrics."""
    session = db.session
    token = request_token(request)
    info = services.integration_for_token(session, source, token, current_app.config["INTEGRATION_CACHE_TTL"])
    if info is None:
        return "unauthorized", error_body(
            401, "unauthorized", f"A valid {source} integration token is required in the {TOKEN_HEADER} header, "
            "an Authorization: Bearer header or the token query parameter."), False
    # What this delivery changes (an incident declared or resolved by an alert) is audited as the integration's.
    g.actor = Actor("integration", info.id, f"{info.source} integration {info.name}")
    raw = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before anything is read
    received_at = utcnow()
    request_headers = lowercase_headers(request.environ)
    refused = check_signature(info, raw, request_headers)
    if refused is not None:  # before anything is stored: an unsigned body may be anyone's
        return "unauthorized", error_body(401, "unauthorized", refused), False
    headers = safe_headers(request.headers, request.remote_addr, SOURCES[source].keep_headers)

    payload = None
    try:
        payload = jsonbody.loads(raw)
        parsed = parse(source, payload, request_headers, info.options)
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
    key = services.dedup_key(parsed, raw, by_body=not SOURCES[source].resends)
    writer = batching.batcher(current_app)
    if writer is not None:  # group commit; a delivery handed back runs alone below
        if session.in_transaction():
            session.rollback()  # the integration lookup's read: this thread must hold no write turn now
        work = writer.submit(batching.Work(info, parsed, body, headers, received_at, key, payload))
        if work.duplicate:
            return _DUPLICATE, (jsonify(_DUPLICATE_BODY), 200), False
        if work.result is not None:
            return _answer(work.result)
    return _alone(session, source, info, parsed, body, headers, received_at, key, payload)


def _alone(session, source: str, info: services.IntegrationInfo, parsed, body: str, headers: dict, received_at,
           key: str, payload=None):
    """One delivery in its own transaction, retried on transient errors; stored FAILED if our code raises."""
    error: BaseException | None = None
    session.info[DEFER_SERIALISED] = True  # as the batch writer's (incidents/database.py)
    for _attempt in range(_TRANSIENT_ATTEMPTS):
        try:
            result = services.ingest(session, info, parsed, body=body, headers=headers, received_at=received_at,
                                     key=key, payload=payload)
            session.commit()
            return _answer(result)
        except services.Duplicate:
            session.rollback()
            return _DUPLICATE, (jsonify(_DUPLICATE_BODY), 200), False
        except sa.exc.OperationalError as e:  # lock timeout, deadlock, serialisation: worth another try
            session.rollback()
            error = e
        except Exception as e:  # noqa: BLE001 - our bug: keep the delivery as failed, see `receive`
            session.rollback()
            error = e
            break
    log.error("webhook %s delivery failed for integration %s", source, info.id, exc_info=error)
    try:
        delivery_id = services.store_delivery(
            session, info.id, source, outcome=Outcome.FAILED, body=body, headers=headers, received_at=received_at,
            event=services.first_event(parsed).event, error=describe_error(error), key=key)
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


def _answer(result: services.Result):
    return str(result.outcome), (jsonify(result.as_json()), 200), result.deduplicated
