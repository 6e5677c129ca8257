"""Keep the search index current: in-transaction handlers of other domains' events, so a document commits or rolls
back with the change to the text it indexes (an edit is searchable as soon as it is committed)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from incidents import events
from incidents.action_item.models import ActionItem
from incidents.incident.services import set_text_filter
from incidents.search import services

_INCIDENT_TEXT = frozenset({"title", "summary"})
_ITEM_TEXT = frozenset({"title", "description"})


def index_incident(session: Session, event: events.Event) -> None:
    if event.name != "incident.updated" or _INCIDENT_TEXT & set(event["changes"]):
        services.index_incidents(session, [event["incident_id"]])


def index_postmortem(session: Session, event: events.Event) -> None:
    services.index_postmortems(session, [event["postmortem_id"]])


def index_action_item(session: Session, event: events.Event) -> None:
    if event.name == "action_item.updated" and not _ITEM_TEXT & set(event["changes"]):
        return
    pm_id = event.data.get("postmortem_id") or session.scalar(
        sa.select(ActionItem.postmortem_id).where(ActionItem.id == event["action_item_id"]))
    services.index_postmortems(session, [pm_id])


SUBSCRIPTIONS = {
    "incident.declared": index_incident,
    "incident.updated": index_incident,
    "incident.note_added": index_incident,
    "postmortem.started": index_postmortem,
    "postmortem.updated": index_postmortem,
    "postmortem.factor_added": index_postmortem,
    "postmortem.factor_removed": index_postmortem,
    "action_item.created": index_action_item,
    "action_item.updated": index_action_item,
    "action_item.deleted": index_action_item,
}


def init_app(app: Flask) -> None:
    for name, handler in SUBSCRIPTIONS.items():
        events.subscribe(app, name, events.IN_TRANSACTION, handler)
    set_text_filter(app, services.incident_condition)
