"""Domain events become audit rows, in the transaction of the change they record (registered by `init_app`).

Each audited event names its object and the changes it carries ({field: [before, after]}; for an event that
only says what was set, [None, value]). Labels come from rows the session already holds, never a query of their
own, so the webhook path pays one INSERT per audited event (plus the chain's last-hash read once per transaction).
Not audited: `alert.received` (a plain delivery), `action_item.overdue` (a daily scan, not a change), notes and
status updates (timeline content), and `incident.severity_changed` (its `incident.updated` carries the severity).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from incidents import actor, events
from incidents.action_item.models import ActionItem
from incidents.alert.models import Integration
from incidents.audit import services
from incidents.auth.models import ApiToken, User
from incidents.incident.models import Incident
from incidents.postmortem.models import BlamelessPhrase, FactorCategory, Postmortem, PostmortemTemplate


def _held(session: Session, model, object_id) -> Any:
    """The row if this session already holds it (no query), else None."""
    if object_id is None:
        return None
    return session.identity_map.get(session.identity_key(model, object_id))


def _user_label(user: User | None) -> str:
    return f"{user.name} <{user.email}>" if user is not None else ""


def _label(session: Session, object_type: str, object_id) -> str:
    model, describe = _OBJECTS[object_type]
    row = _held(session, model, object_id)
    return describe(row) if row is not None else ""


_OBJECTS: dict[str, tuple[type, Callable[[Any], str]]] = {
    "incident": (Incident, lambda r: f"#{r.id} {r.title}"),
    "postmortem": (Postmortem, lambda r: f"post-mortem of incident {r.incident_id}"),
    "action_item": (ActionItem, lambda r: r.title),
    "user": (User, _user_label),
    "api_token": (ApiToken, lambda r: f"{r.prefix}… ({r.name or 'unnamed'})"),
    "integration": (Integration, lambda r: f"{r.source} {r.name}"),
    "template": (PostmortemTemplate, lambda r: r.name),
    "category": (FactorCategory, lambda r: r.name),
    "phrase": (BlamelessPhrase, lambda r: r.phrase),
}


def _set(**values) -> dict:
    return {k: [None, v] for k, v in values.items()}


# event -> (object type, the event field holding its id, the changes from the event's data)
AUDITED: dict[str, tuple[str, str | None, Callable[[dict], dict | None]]] = {
    "incident.declared": ("incident", "incident_id", lambda d: _set(severity=d["severity"])),
    "incident.status_changed": ("incident", "incident_id", lambda d: {"status": [d["before"], d["after"]]}),
    "incident.role_assigned": ("incident", "incident_id",
                               lambda d: {d["role"]: [d.get("before_user_id"), d["user_id"]]}),
    "incident.updated": ("incident", "incident_id", lambda d: d["changes"]),
    "postmortem.started": ("postmortem", "postmortem_id", lambda d: _set(incident_id=d["incident_id"])),
    "postmortem.published": ("postmortem", "postmortem_id", lambda d: {"status": ["in_review", "published"]}),
    "postmortem.reopened": ("postmortem", "postmortem_id",
                            lambda d: {"status": ["published", "draft"]} | ({"reason": [None, d["reason"]]}
                                                                             if d["reason"] else {})),
    "postmortem.factor_added": ("postmortem", "postmortem_id", lambda d: _set(factor_id=d["factor_id"])),
    "postmortem.factor_removed": ("postmortem", "postmortem_id", lambda d: {"factor_id": [d["factor_id"], None]}),
    "postmortem.updated": ("postmortem", "postmortem_id", lambda d: d["changes"]),
    "postmortem.template_changed": ("template", "template_id", lambda d: d["changes"]),
    "postmortem.category_changed": ("category", "category_id", lambda d: d["changes"]),
    "postmortem.phrase_changed": ("phrase", "phrase_id", lambda d: d["changes"]),
    "action_item.created": ("action_item", "action_item_id", lambda d: d["changes"]),
    "action_item.updated": ("action_item", "action_item_id", lambda d: d["changes"]),
    "action_item.deleted": ("action_item", "action_item_id", lambda d: d["changes"]),
    "alert.integration_created": ("integration", "integration_id", lambda d: _set(source=d["source"], name=d["name"])),
    "alert.integration_updated": ("integration", "integration_id", lambda d: d["changes"]),
    "alert.integration_token_rotated": ("integration", "integration_id", lambda d: d["changes"]),
    "tracker.settings_changed": ("shortcut_settings", "team_id", lambda d: d["changes"]),
    "report.recipients_changed": ("report_recipients", "team_id", lambda d: d["changes"]),
    "auth.signed_in": ("user", "user_id", lambda d: _set(method=d["method"])),
    "auth.sign_in_failed": ("user", None, lambda d: _set(reason=d["reason"])),
    "auth.user_created": ("user", "user_id", lambda d: _set(role=d["role"])),
    "auth.user_updated": ("user", "user_id", lambda d: d["changes"]),
    "auth.token_created": ("api_token", "token_id",
                           lambda d: _set(user_id=d["user_id"], scope=d.get("scope"), expires_at=d.get("expires_at"))),
    "auth.token_revoked": ("api_token", "token_id", lambda d: {"revoked": [False, True]}),
}


def _who(session: Session, event: events.Event) -> actor.Actor:
    """The running context's actor; a sign-in acts as the person signing in (not yet in the session), and what
    a command or a sign-in flow does on its own says how (`via`: cli, sso, invitation, ...)."""
    if event.name == "auth.signed_in":
        return actor.Actor("user", event["user_id"], _label(session, "user", event["user_id"]))
    if event.name == "auth.sign_in_failed":
        return actor.Actor("anonymous", None, event["email"])
    who = actor.current()
    via = event.data.get("via")
    if via and who.kind in ("system", "anonymous"):
        return actor.Actor(who.kind, who.id, via)
    return who


def record(session: Session, event: events.Event) -> None:
    """The in-transaction subscriber: one audit row for `event`."""
    object_type, id_field, changes = AUDITED[event.name]
    object_id = event.data.get(id_field) if id_field else None
    if object_type in _OBJECTS:
        label = _label(session, object_type, object_id)
    else:
        label = "default" if object_id is None else f"team {object_id}"
    if event.name == "auth.sign_in_failed":
        label = event["email"]
    services.append(session, kind=event.name, object_type=object_type, object_id=object_id, object_label=label,
                    changes=changes(event.data), who=_who(session, event))


def init_app(app: Flask) -> None:
    services.listen_once()
    for name in AUDITED:
        events.subscribe(app, name, events.IN_TRANSACTION, record)
