"""Prometheus Alertmanager `webhook_config`: version "4" groups, one event per alert (contracts/more/alertmanager.md).

Identity: an alert is its `fingerprint` (Alertmanager's hash of the label set), not (groupKey, fingerprint): the
groupKey changes whenever routes or group_by change, and a resolve must close the alert whatever group carries
it. Fingerprints are per integration, so two Alertmanagers only share alerts when they share an integration.
Episodes: a firing alert's `startsAt` is its `occurrence`, so the same alert re-sent every repeat_interval (or
by both HA peers) is one occurrence, and a new startsAt after a resolve is the next one.
Grafana's unified alerting sends the same envelope (version "1"); grafana.py builds on `alert_event` here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from incidents.alert.sources.base import (
    Kind,
    ParsedEvent,
    ParseError,
    SourceSpec,
    fingerprint,
    http_link,
    redact_keys,
    rfc3339,
    scalar_text,
    tag,
    text,
)
from incidents.singleline import one_line

SOURCE = "alertmanager"
LABEL = "Alertmanager"
SETUP = ("In alertmanager.yml, add a receiver with `webhook_configs: [{url: <this URL without ?token=...>, "
         "http_config: {authorization: {credentials: <token>}}}]` (Alertmanager then sends Authorization: Bearer "
         "<token>) and route alerts to it; keep send_resolved on. Severity is read from the `severity` label "
         "unless the integration names another.")

STATUSES: dict[str, Kind] = {"firing": Kind.TRIGGER, "resolved": Kind.CLOSE}

# Incidents open for critical alerts (SEV1, as Alertmanager's Opsgenie config usually maps critical to P1) and
# for error/high/major ones (SEV2); warning, info and alerts without a severity label stay alerts.
DEFAULT_RULES: list[dict] = [
    {"events": ["firing"], "severities": ["critical"], "incident_severity": "SEV1"},
    {"events": ["firing"], "severities": ["error", "high", "major"], "incident_severity": "SEV2"},
]

MAX_TAGS = 50
_DESCRIPTION = 15_000
_ENVIRONMENT_LABELS = ("environment", "env")
# Annotations shown on their own (title, description, runbook) or internal (Grafana's "__value_string__" ...).
_SHOWN_ANNOTATIONS = frozenset({"summary", "description", "runbook_url", "message"})


def string_map(value: Any, limit: int = 2000) -> dict[str, str]:
    """Labels or annotations: the string values of an object, cleaned (anything else is dropped)."""
    if not isinstance(value, dict):
        return {}
    out = {}
    for key, item in value.items():
        name = text(key, 200)
        if name and isinstance(item, str):
            out[name] = text(item, limit)
    return out


def label_fingerprint(labels: Any) -> str:
    """Alertmanager's own fingerprint of a label set (FNV-1a 64 over sorted name/value pairs, each followed by
    the 0xff separator), for senders that omit `fingerprint`: the same alert gets the same identity either way."""
    pairs = sorted((k, v) for k, v in labels.items() if isinstance(k, str) and isinstance(v, str))
    h = 0xCBF29CE484222325
    for name, value in pairs:
        for part in (name, value):
            for byte in part.encode("utf-8", "replace") + b"\xff":
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def label_tags(labels: Mapping[str, str]) -> tuple[str, ...]:
    """Every label as a "name:value" tag, sorted by name, internal "__" labels left out, at most MAX_TAGS."""
    tags: list[str] = []
    for name in sorted(labels):
        cleaned = None if name.startswith("__") else tag(name, labels[name])
        if cleaned and cleaned not in tags:
            tags.append(cleaned)
            if len(tags) == MAX_TAGS:
                break
    return tuple(tags)


def severity_label(options: Mapping[str, Any] | None) -> str:
    """The label that carries severity: the integration's `severity_label` option, else "severity"."""
    name = (options or {}).get("severity_label")
    return text(name, 200) or "severity"


def url_lines(pairs: Iterable[tuple[str, Any]]) -> list[str]:
    """"Name: url" for each http(s) url present (anything else would be a stored XSS once rendered)."""
    return [f"{name}: {url}" for name, value in pairs if (url := http_link(value))]


def alert_event(source: str, label: str, alert: Any, n: int, options: Mapping[str, Any] | None, *,
                links: Iterable[Any] = (), lines: list[str] | tuple[str, ...] = ()) -> ParsedEvent:
    """One alert of a group: TRIGGER (bump, occurrence=startsAt) when firing, CLOSE when resolved.

    `links` are candidate links, best first (only http(s) kept); `lines` are extra description lines (urls,
    values) shown after the description, the runbook and the remaining annotations."""
    if not isinstance(alert, dict):
        raise ParseError(f"{label}: alerts[{n}] must be an object.")
    status = text(alert.get("status"), 64)
    kind = STATUSES.get(status.lower())
    if kind is None:
        return ParsedEvent(source, status or "unknown", Kind.IGNORE,
                           reason=f"{label}: alert status {status!r} is neither firing nor resolved: ignored.")
    raw_labels = alert.get("labels") if isinstance(alert.get("labels"), dict) else {}
    given = text(alert.get("fingerprint"), 100_000)
    if not given and not raw_labels:
        raise ParseError(f"{label}: alerts[{n}] has neither 'fingerprint' nor 'labels'.")
    key = fingerprint(given or label_fingerprint(raw_labels))

    labels = string_map(raw_labels)
    annotations = string_map(alert.get("annotations"), 5000)
    title = (one_line(annotations.get("summary", "")[:500]) or one_line(labels.get("alertname", "")[:500])
             or f"{label} alert {key[:80]}")
    sev = labels.get(severity_label(options), "")[:16].lower() or None
    environment = next((labels[name][:100] for name in _ENVIRONMENT_LABELS if labels.get(name)), None)

    details = url_lines([("Runbook", annotations.get("runbook_url"))])
    details += [f"{name}: {value}" for name, value in sorted(annotations.items())
                if name not in _SHOWN_ANNOTATIONS and not name.startswith("__") and value]
    details += lines
    main = annotations.get("description") or annotations.get("message", "")
    description = "\n\n".join(filter(None, [main, "\n".join(details)]))

    starts = rfc3339(alert.get("startsAt"))
    firing = kind == Kind.TRIGGER
    return ParsedEvent(
        source, status.lower(), kind,
        fingerprint=key,
        title=title,
        description=description[:_DESCRIPTION],
        severity=sev,
        environment=environment,
        link=next((link for value in links if (link := http_link(value))), None),
        occurred_at=starts if firing else rfc3339(alert.get("endsAt")),
        bump=firing,
        # The episode: the same startsAt is the same firing, re-sent; none for a resolve (it ends the episode).
        occurrence=text(alert.get("startsAt"), 64) if firing and starts else None,
        tags=label_tags(labels),
    )


def group_events(source: str, label: str, payload: dict,
                 build: Callable[[Any, int], ParsedEvent]) -> list[ParsedEvent]:
    """One event per alert of the group (`build(alert, n)` makes each), at least one.

    `truncatedAlerts` (alerts left out by max_alerts) is recorded on the first event: in its description, or
    in its reason when that event is ignored; an empty group is one IGNORE saying so."""
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise ParseError(f"{label}: 'alerts' must be a list.")
    truncated = payload.get("truncatedAlerts")
    truncated = truncated if isinstance(truncated, int) and not isinstance(truncated, bool) and truncated > 0 else 0
    note = (f"{label} left {truncated} more alert{'s' if truncated > 1 else ''} of this group out of the "
            f"notification (max_alerts).") if truncated else ""
    status = text(payload.get("status"), 64) or "empty"
    if not alerts:
        return [ParsedEvent(source, status, Kind.IGNORE,
                            reason=" ".join(filter(None, [f"{label}: a group without alerts: nothing to do.", note])))]
    events = [build(alert, n) for n, alert in enumerate(alerts)]
    if note:
        first = events[0]
        if first.kind == Kind.IGNORE:
            events[0] = replace(first, reason=f"{first.reason} {note}")
        else:
            events[0] = replace(first, description="\n\n".join(filter(None, [first.description, note]))[:_DESCRIPTION])
    return events


def parse(payload: dict, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """One event per alert of a version "4" group; `options["severity_label"]` names the severity label."""
    version = scalar_text(payload.get("version"), 20)
    if not version:
        raise ParseError("Missing 'version': this is not an Alertmanager webhook body (custom `payload` templates "
                         "are not supported).")
    if version != "4":
        hint = " It looks like Grafana's: use a grafana integration." if version == "1" else ""
        raise ParseError(f"Alertmanager webhook version {version!r} is not supported (expected \"4\").{hint}")
    external = payload.get("externalURL")
    extra = url_lines([("Alertmanager", external)])

    def build(alert: Any, n: int) -> ParsedEvent:
        generator = alert.get("generatorURL") if isinstance(alert, dict) else None
        return alert_event(SOURCE, LABEL, alert, n, options, links=(generator, external),
                           lines=url_lines([("Source", generator)]) + extra)

    return group_events(SOURCE, LABEL, payload, build)


def redact(payload: dict) -> bool:
    """Alertmanager sends no credentials in the body; a label or annotation named like a secret is blanked."""
    return redact_keys(payload)


SPEC = SourceSpec(name="alertmanager", label=LABEL, setup=SETUP, parse=parse, redact=redact,
                  default_rules=DEFAULT_RULES, resends=True)
