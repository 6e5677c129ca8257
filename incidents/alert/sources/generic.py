"""Any JSON webhook, read with the integration's mapping: JMESPath expressions an admin writes for the fields
we need (options["mapping"]), checked when the integration is saved (`check_mapping`).

A body is one alert, or several when the mapping's `alerts` expression yields an array: every other expression
then applies to each item. The fingerprint is the alert's identity; a body where it yields nothing cannot be
applied, so it is a ParseError (400, kept as rejected, replayable once the mapping is fixed). A status among the
mapping's `resolved` values closes the alert; anything else fires it again (one more occurrence). Dedup is by
body hash, as for every source without delivery ids: a sender's retry of the same body changes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from incidents.alert.sources.base import (
    Kind,
    OptionsError,
    ParsedEvent,
    ParseError,
    SourceSpec,
    fingerprint,
    http_link,
    redact_keys,
    tag,
    text,
)
from incidents.singleline import one_line

SOURCE = "generic"
LABEL = "Generic webhook"
SETUP = ("Paste this URL as the sender's webhook (POST, a JSON body); put the token in an X-Incidents-Token or "
         "Authorization: Bearer header if the sender can, else keep ?token=... in the URL. The integration's "
         "mapping (JMESPath expressions) says where the fingerprint, title, severity and status are in the body: "
         "try it on a sample with Preview before saving.")

EXPRESSIONS = ("alerts", "fingerprint", "title", "description", "severity", "status", "link", "environment", "tags")
REQUIRED = ("fingerprint", "title")
KEYS = (*EXPRESSIONS, "resolved")
DEFAULT_RESOLVED = ("resolved", "ok", "recovered", "closed")
MAX_EXPRESSION = 1000
MAX_RESOLVED = 50
MAX_ALERTS = 1000
MAX_TAGS = 50

# As Alertmanager's: incidents open for critical alerts (SEV1) and error/high/major ones (SEV2).
DEFAULT_RULES: list[dict] = [
    {"events": ["firing"], "severities": ["critical"], "incident_severity": "SEV1"},
    {"events": ["firing"], "severities": ["error", "high", "major"], "incident_severity": "SEV2"},
]


@functools.lru_cache(maxsize=512)
def _compiled(expression: str):
    """The compiled expression (cached: every delivery evaluates the same few)."""
    return jmespath.compile(expression)


def _value_text(value: Any) -> str:
    """A scalar result as text: true/false for booleans, digits for numbers; "" for null, lists and objects."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) else ""


def check_mapping(mapping: Any) -> dict:
    """The mapping, normalised (expressions stripped, empty ones dropped, `resolved` as lower-case strings);
    OptionsError with a message per field ("mapping.title") when a key is unknown, a required expression is
    missing or an expression does not compile."""
    if mapping is None or mapping == {}:
        raise OptionsError("The generic source needs a mapping (--mapping FILE): at least mapping.fingerprint and "
                           "mapping.title, JMESPath expressions.",
                           {f"mapping.{key}": ["Required."] for key in REQUIRED})
    if not isinstance(mapping, dict):
        raise OptionsError("The mapping must be a JSON object of JMESPath expressions.",
                           {"mapping": ["Expected an object."]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(str(key) for key in mapping if key not in KEYS)
    for key in unknown:
        errors[f"mapping.{key}"] = [f"Unknown key: use {', '.join(KEYS)}."]
    out: dict[str, Any] = {}
    for key in EXPRESSIONS:
        value = mapping.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if key in REQUIRED:
                errors[f"mapping.{key}"] = ["Required."]
            continue
        if not isinstance(value, str):
            errors[f"mapping.{key}"] = ["A JMESPath expression (text)."]
            continue
        expression = value.strip()
        if len(expression) > MAX_EXPRESSION:
            errors[f"mapping.{key}"] = [f"At most {MAX_EXPRESSION} characters."]
            continue
        try:
            _compiled(expression)
        except JMESPathError as e:
            errors[f"mapping.{key}"] = [f"Not a JMESPath expression: {one_line(str(e))[:300]}"]
            continue
        except Exception:  # noqa: BLE001 - a parser's own bug on odd input is still the input's problem
            errors[f"mapping.{key}"] = ["Not a JMESPath expression."]
            continue
        out[key] = expression
    resolved = mapping.get("resolved")
    if resolved is not None:
        if not isinstance(resolved, list) or len(resolved) > MAX_RESOLVED or not all(
                isinstance(v, str | int | float) and 0 < len(_value_text(v).strip()) <= 100 for v in resolved):
            errors["mapping.resolved"] = [f"A list of up to {MAX_RESOLVED} status values (text or numbers)."]
        elif "status" not in mapping or not mapping.get("status"):
            errors["mapping.resolved"] = ["Resolved values need a status expression."]
        else:
            out["resolved"] = sorted({_value_text(v).strip().lower() for v in resolved})
    if errors:
        detail = "; ".join(f"{key}: {' '.join(messages)}" for key, messages in errors.items())
        raise OptionsError(f"Invalid mapping: {detail}", errors)
    return out


def _search(key: str, expression: str, data: Any) -> Any:
    try:
        return _compiled(expression).search(data)
    except Exception as e:  # noqa: BLE001 - JMESPath type errors (and its own bugs) are this body's problem
        raise ParseError(f"The {key} expression {expression!r} failed on this body: {one_line(str(e))[:200]}") \
            from None


def _fingerprint(value: Any, expression: str) -> str:
    """Text of a scalar, or canonical JSON of a list/object ([monitor.id, monitor.name] is a fine key)."""
    if isinstance(value, list | dict):
        if not any(item is not None for item in (value.values() if isinstance(value, dict) else value)):
            value = None
        else:
            value = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    key = text(_value_text(value), 100_000).strip()
    if not key:
        raise ParseError(f"The fingerprint expression {expression!r} yields nothing for this body.")
    return fingerprint(key)


def _tags(value: Any) -> tuple[str, ...]:
    """A list of words or "key:value" strings, or an object of key: value, as cleaned tags (at most MAX_TAGS)."""
    if isinstance(value, dict):
        raw = [tag(k, _value_text(v)) for k, v in value.items() if _value_text(v)]
    elif isinstance(value, list):
        raw = [tag(_value_text(v)) for v in value if _value_text(v)]
    elif _value_text(value):
        raw = [tag(_value_text(value))]
    else:
        raw = []
    out: list[str] = []
    for cleaned in raw:
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return tuple(out[:MAX_TAGS])


def _event(item: Any, mapping: Mapping[str, Any]) -> ParsedEvent:
    def get(key: str) -> Any:
        expression = mapping.get(key)
        return _search(key, expression, item) if expression else None

    key = _fingerprint(get("fingerprint"), mapping["fingerprint"])
    status = one_line(text(_value_text(get("status")), 64))
    resolved = set(mapping.get("resolved") or DEFAULT_RESOLVED)
    closing = bool(status) and status.lower() in resolved
    kind = Kind.CLOSE if closing else Kind.TRIGGER
    title = one_line(text(_value_text(get("title")), 500)) or f"{LABEL} alert {key[:80]}"
    severity = text(_value_text(get("severity")), 16).strip().lower() or None
    environment = one_line(text(_value_text(get("environment")), 100)) or None
    return ParsedEvent(
        SOURCE, "resolved" if closing else "firing", kind,
        fingerprint=key,
        title=title,
        description=text(_value_text(get("description")), 15_000),
        severity=severity,
        environment=environment,
        link=http_link(_value_text(get("link"))),
        bump=not closing,
        reason=f"{LABEL}: alert resolved (status {status!r})" if closing else "",
        tags=_tags(get("tags")),
    )


def parse(payload: dict, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """One event per alert of the body, as the integration's mapping reads it."""
    mapping = (options or {}).get("mapping")
    if not isinstance(mapping, Mapping) or not mapping.get("fingerprint"):
        raise ParseError("This generic integration has no mapping: set one (fingerprint and title at least).")
    if not mapping.get("alerts"):
        return [_event(payload, mapping)]
    items = _search("alerts", mapping["alerts"], payload)
    if not isinstance(items, list):
        raise ParseError(f"The alerts expression {mapping['alerts']!r} yields no array for this body.")
    if not items:
        return [ParsedEvent(SOURCE, "empty", Kind.IGNORE,
                            reason=f"{LABEL}: the alerts expression yields an empty array: nothing to do.")]
    if len(items) > MAX_ALERTS:
        raise ParseError(f"The alerts expression yields {len(items)} alerts; at most {MAX_ALERTS} per body.")
    return [_event(item, mapping) for item in items]


def redact(payload: dict) -> bool:
    """A field named like a secret (password, token, api_key ...) is blanked before the body is stored."""
    return redact_keys(payload)


SPEC = SourceSpec(name=SOURCE, label=LABEL, setup=SETUP, parse=parse, redact=redact, default_rules=DEFAULT_RULES,
                  option_checks={"mapping": check_mapping})
