"""Integrations: one per sender, authenticated by a token of which only the hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import events
from incidents.alert.models import Integration, Source
from incidents.alert.services.rules import default_rules, validate_rules
from incidents.alert.sources import SOURCES, OptionsError
from incidents.bounds import get_by_key
from incidents.catalog import services as catalog
from incidents.errors import Conflict, Invalid, NotFound
from incidents.singleline import check_single_line

TOKEN_PREFIX = "whk_"  # noqa: S105 - a public prefix, not a secret
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class IntegrationInfo:
    """What the webhook hot path needs of an integration, cached per process by token hash."""

    id: int
    source: str
    name: str
    service_id: int | None
    team_id: int | None
    rules: list | None
    active: bool
    secret: str | None = field(default=None, repr=False)  # never in a log line or a traceback's repr
    # What the source's parser is given: the integration's options and its site_url (read-only, it is shared).
    options: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    @property
    def effective_rules(self) -> list[dict]:
        return self.rules if self.rules is not None else default_rules(self.source)


_cache: dict[str, tuple[float, IntegrationInfo]] = {}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def forget_cached_integrations() -> None:
    _cache.clear()


def integration_for_token(session: Session, source: str, token: str | None, ttl: float = 10.0
                          ) -> IntegrationInfo | None:
    """The active integration of `source` whose token this is, or None; hits the database at most once
    per token per `ttl` seconds (a disabled or rotated token stops working within ttl on every worker)."""
    if not token or len(token) > 512:
        return None
    digest = hash_token(token)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        info = hit[1]
    else:
        row = session.scalar(sa.select(Integration).where(Integration.token_hash == digest))
        # The lookup is by hash (no timing signal about the token); the compare is constant-time anyway.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        info = integration_info(row)
        _cache[digest] = (now + ttl, info)
    return info if info.source == source and info.active else None


def integration_info(row: Integration) -> IntegrationInfo:
    options = dict(row.options or {})
    if row.site_url:
        options["site_url"] = row.site_url
    return IntegrationInfo(row.id, row.source.value, row.name, row.service_id, row.team_id, row.rules, row.active,
                           row.secret or None, MappingProxyType(options))


def webhook_url(base_url: str, source: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/webhooks/{source}?token={token}"


def _check_token(token: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH or len(token) > 200 or not token.isprintable() or " " in token:
        raise Invalid(f"A token needs {MIN_TOKEN_LENGTH} to 200 printable characters without spaces.",
                      {"token": ["Too short or invalid."]})
    return token


MAX_SECRET_LENGTH = 255
_OPTION_KEYS = {"severity_label": 100}  # the options an admin may set, and their longest value
# Yes/no options, stored as JSON true (absent when off): whether an alert's events may move its incident.
_FLAG_OPTIONS = frozenset({"resolve_incident", "update_incident_severity"})


def _check_secret(secret: str | None) -> str | None:
    secret = (secret or "").strip()
    if not secret:
        return None
    if len(secret) > MAX_SECRET_LENGTH or not secret.isprintable():
        raise Invalid(f"A secret is 1 to {MAX_SECRET_LENGTH} printable characters.", {"secret": ["Invalid secret."]})
    return secret


def _check_site_url(url: str | None) -> str | None:
    url = (url or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 500 or not url.isprintable() \
            or " " in url:
        raise Invalid("The site URL must be an http(s) address.", {"site_url": ["Not an http(s) URL."]})
    return url.rstrip("/")


def _check_options(source: Source, options: dict[str, Any] | None) -> dict[str, Any]:
    """Only known options, as single-line text; empty values are dropped (the source's default applies). The
    options a source checks itself (generic's mapping) go through its check, present or not."""
    own = SOURCES[source.value].option_checks
    out: dict[str, Any] = {}
    for key, check in own.items():
        try:
            value = check((options or {}).get(key))
        except OptionsError as e:
            raise Invalid(str(e), e.fields) from None
        if value is not None:
            out[key] = value
    for key, value in (options or {}).items():
        if key in _FLAG_OPTIONS:
            if _flag(key, value):
                out[key] = True
            continue
        if key in own:
            continue
        if key not in _OPTION_KEYS:
            raise Invalid(f"Unknown option {key!r}.", {key: ["Unknown option."]})
        value = str(value or "").strip()
        if not value:
            continue
        if len(value) > _OPTION_KEYS[key]:
            raise Invalid(f"{key} is at most {_OPTION_KEYS[key]} characters.", {key: ["Too long."]})
        check_single_line(**{key: value})
        out[key] = value
    return out


def _flag(key: str, value: Any) -> bool:
    """A yes/no option from JSON (true/false), a form checkbox ("on", or absent) or the CLI."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "no", "off", "on", "1", "true", "yes"):
        return value.strip().lower() in ("on", "1", "true", "yes")
    raise Invalid(f"{key} is true or false.", {key: ["Expected true or false."]})


def _require_secret(source: Source, secret: str | None) -> None:
    if SOURCES[source.value].signed and not secret:
        raise Invalid(f"{source.label} signs its requests: give the integration the signing secret from "
                      f"{source.label} (--secret), or it cannot check a single delivery.",
                      {"secret": ["Required for this source."]})


def list_integrations(session: Session) -> list[Integration]:
    return list(session.scalars(sa.select(Integration).order_by(Integration.source, Integration.name)))


def get_integration(session: Session, key: int | str) -> Integration:
    row = get_by_key(session, Integration, key, Integration.name)
    if row is None:
        raise NotFound(f"No integration {key!r}.")
    return row


def create_integration(session: Session, *, source: str, name: str, token: str | None = None,
                       service: str | int | None = None, team: str | int | None = None,
                       rules: list | None = None, secret: str | None = None, site_url: str | None = None,
                       options: dict[str, Any] | None = None) -> tuple[Integration, str]:
    """Create an integration; returns it and its plain token (shown once, only its hash is stored). A source
    that signs its requests needs the `secret` it signs with."""
    try:
        source = Source(source)
    except ValueError:
        raise Invalid(f"Unknown source {source!r}.", {"source": [f"One of: {', '.join(Source)}."]}) from None
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise Invalid("A name of 1 to 120 characters is required.", {"name": ["Required."]})
    check_single_line(name=name)
    secret, site_url, options = _check_secret(secret), _check_site_url(site_url), _check_options(source, options)
    _require_secret(source, secret)
    if session.scalar(sa.select(Integration.id).where(Integration.source == source, Integration.name == name)):
        raise Conflict(f"A {source.label} integration named {name!r} exists.", {"name": ["Already in use."]})
    plain = _check_token(token) if token else TOKEN_PREFIX + secrets.token_urlsafe(32)
    if session.scalar(sa.select(Integration.id).where(Integration.token_hash == hash_token(plain))):
        raise Conflict("That token is already used by another integration.", {"token": ["Already in use."]})
    svc = catalog.get_service(session, service) if service else None
    tm = catalog.get_team(session, team) if team else (svc.team if svc else None)
    row = Integration(source=source, name=name, token_hash=hash_token(plain), token_hint=plain[-4:],
                      service=svc, team=tm, rules=validate_rules(rules, session), active=True, secret=secret,
                      site_url=site_url, options=options)
    session.add(row)
    session.flush()
    events.emit(session, "alert.integration_created", integration_id=row.id, source=source.value, name=name)
    return row, plain


def _settings(row: Integration) -> dict[str, Any]:
    """What an admin can change on an integration, JSON-ready; the secret only as whether there is one."""
    return {"name": row.name, "service_id": row.service_id, "team_id": row.team_id, "rules": row.rules,
            "active": row.active, "secret": "(set)" if row.secret else None, "site_url": row.site_url,
            "options": row.options}


def update_integration(session: Session, row: Integration, **changes) -> Integration:
    """Edit an integration (its routing rules included); emits `alert.integration_updated` with what changed."""
    before = _settings(row)
    secret_before = row.secret
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name or len(name) > 120:
            raise Invalid("A name of 1 to 120 characters is required.", {"name": ["Required."]})
        check_single_line(name=name)
        row.name = name
    if "service" in changes:
        row.service = catalog.get_service(session, changes["service"]) if changes["service"] else None
    if "team" in changes:
        row.team = catalog.get_team(session, changes["team"]) if changes["team"] else None
    if "rules" in changes:
        row.rules = validate_rules(changes["rules"], session)
    if "active" in changes:
        row.active = bool(changes["active"])
    if "secret" in changes:  # None or "" keeps the secret (it is never shown, so a form cannot echo it back)
        row.secret = _check_secret(changes["secret"]) or row.secret
    if changes.get("clear_secret"):
        row.secret = None
    _require_secret(row.source, row.secret)
    if "site_url" in changes:
        row.site_url = _check_site_url(changes["site_url"])
    if "options" in changes:
        row.options = _check_options(row.source, changes["options"])
    session.flush()
    forget_cached_integrations()
    after = _settings(row)
    edited = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if row.secret != secret_before and row.secret and secret_before:
        edited["secret"] = ["(set)", "(changed)"]
    if edited:
        events.emit(session, "alert.integration_updated", integration_id=row.id, changes=edited)
    return row


def rotate_token(session: Session, row: Integration) -> str:
    """A new token for the integration: the old one stops working (its last four characters show which is which)."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    hint = row.token_hint
    row.token_hash, row.token_hint = hash_token(plain), plain[-4:]
    session.flush()
    forget_cached_integrations()
    events.emit(session, "alert.integration_token_rotated", integration_id=row.id,
                changes={"token_hint": [hint, row.token_hint]})
    return plain
