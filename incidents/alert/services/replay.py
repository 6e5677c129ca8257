"""Replay: a stored delivery that failed, was rejected or ignored goes through parse and ingest again."""

from __future__ import annotations

from sqlalchemy.orm import Session

from incidents import jsonbody
from incidents.alert.models import Delivery, Outcome
from incidents.alert.services.integrations import integration_info
from incidents.alert.services.processing import Result, dedup_key, ingest
from incidents.alert.sources import SOURCES, ParseError
from incidents.alert.sources import parse as parse_payload
from incidents.database import utcnow
from incidents.errors import Conflict
from incidents.webhooks import describe_error

REPLAYABLE = (Outcome.FAILED, Outcome.REJECTED, Outcome.IGNORED)


def replay_delivery(session: Session, delivery: Delivery) -> Result:
    """Run a stored delivery through parse and ingest again, in a savepoint: a failure is written on the
    delivery instead of aborting the caller's transaction. Processed deliveries are never re-applied."""
    if delivery.outcome not in REPLAYABLE:
        raise Conflict(f"Delivery {delivery.id} was {delivery.outcome.value}; only "
                       f"{', '.join(o.value for o in REPLAYABLE)} deliveries can be replayed.")
    info = integration_info(delivery.integration)
    try:
        # The headers kept with the delivery (the source's keep_headers among them), as the parser saw them.
        headers = {str(name).lower(): str(value) for name, value in (delivery.headers or {}).items()}
        payload = jsonbody.loads(delivery.body)
        parsed = parse_payload(info.source, payload, headers, info.options)
    except ValueError as e:
        message = str(e) if isinstance(e, ParseError | jsonbody.TooDeep) else "The body is not valid JSON."
        delivery.outcome, delivery.error, delivery.replayed_at = Outcome.REJECTED, message, utcnow()
        session.flush()
        return Result(delivery.id, Outcome.REJECTED, message=message)
    key = delivery.dedup_key or dedup_key(parsed, delivery.body, by_body=not SOURCES[info.source].resends)
    try:
        with session.begin_nested():
            result = ingest(session, info, parsed, body=delivery.body, headers=delivery.headers,
                            received_at=delivery.received_at, key=key, replay_of=delivery.id,
                            payload=payload)
    except Exception as e:  # noqa: BLE001 - the point of replay is to survive and record our own bugs
        delivery.outcome, delivery.error, delivery.replayed_at = Outcome.FAILED, describe_error(e), utcnow()
        session.flush()
        return Result(delivery.id, Outcome.FAILED, message=delivery.error)
    session.expire(delivery)
    return result
