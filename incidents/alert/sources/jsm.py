"""Jira Service Management Operations' outgoing "Webhook" integration: the Opsgenie alert-action body, unsigned.

The body is Opsgenie's byte for byte (contracts/more/jsm-ops.md), so parsing is opsgenie's; only the names change
and the link: the body names no site, so the alert's page is built from the integration's `site_url` option."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import incidents.alert.sources.opsgenie as opsgenie  # the module, not the package: SOURCES may import this one
from incidents.alert.sources.base import Kind, ParsedEvent, SourceSpec, dig, http_link, text

SOURCE = "jsm"
LABEL = "Jira Service Management"
SETUP = ("In Jira Service Management, Operations > Integrations > Webhook: paste this URL as the Webhook URL and "
         "add a custom header X-Incidents-Token (or Authorization: Bearer) with the token to drop ?token=....")

# Same opening rules as Opsgenie: the body and its priorities are the same.
DEFAULT_RULES: list[dict] = opsgenie.DEFAULT_RULES

_SAFE_ID = re.compile(r"^[\w.-]{1,100}$")


def site_link(options: Mapping[str, Any], alert_id: str | None) -> str | None:
    """The alert's page on the JSM site (`options["site_url"]`, e.g. https://acme.atlassian.net); None without
    a site or a plain alert id."""
    site = http_link(options.get("site_url") if isinstance(options, Mapping) else None)
    if not site or not alert_id or not _SAFE_ID.match(alert_id):
        return None
    return f"{site.rstrip('/')}/jira/ops/alerts/{alert_id}"


def _rename(value: str, prefix: str) -> str:
    """Opsgenie's own wording at the start of a title or reason, under JSM's name; the sender's text is kept."""
    return "JSM" + value[len("OpsGenie"):] if value.startswith(prefix) else value


def _as_jsm(event: ParsedEvent, payload: dict, options: Mapping[str, Any]) -> ParsedEvent:
    """Opsgenie's reading under JSM's name; opsgenie's external_id is the alertId the link needs."""
    link = None if event.kind == Kind.IGNORE else site_link(options, event.external_id)
    title = event.title
    if not " ".join(text(dig(payload, "alert", "message"), 500).split()):  # opsgenie's fallback, not the sender's
        title = _rename(title, "OpsGenie alert ")
    reason = _rename(event.reason, "OpsGenie: ").replace("Unknown OpsGenie action", "Unknown JSM action", 1)
    return dataclasses.replace(event, source=SOURCE, link=link, title=title, reason=reason)


def parse(payload: dict, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[ParsedEvent]:
    """One event per delivery, read as Opsgenie's; ParseError (from opsgenie) for a body without its shape."""
    return [_as_jsm(event, payload, options) for event in opsgenie.parse(payload, headers, options)]


def redact(payload: dict) -> bool:
    """Escalate echoes the integration's custom headers, where our token travels: as Opsgenie."""
    return opsgenie.redact(payload)


SPEC = SourceSpec(name="jsm", label=LABEL, setup=SETUP, parse=parse, redact=redact, default_rules=DEFAULT_RULES)
