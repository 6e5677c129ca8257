"""Single sign-on with OpenID Connect (Authlib's Flask client): the settings, checked at start-up, and the two
pages of the redirect dance, /login/oidc and /login/oidc/callback.

Authlib keeps the state, the nonce and the PKCE verifier (S256) in the session and checks the ID token's signature
(the provider's JWKS), issuer, audience, expiry and nonce. Whatever fails (a replayed state, a forged or expired
token, a provider that does not answer) becomes the sign-in page with a short message, a 4xx (502 when the provider
is unreachable) and an `auth.sign_in_failed` event; what the provider sent is never logged."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, session, url_for
from joserfc.errors import JoseError

from incidents.auth import services
from incidents.auth.models import Role
from incidents.database import writing
from incidents.extensions import db

log = logging.getLogger(__name__)

bp = Blueprint("sso", __name__)

_EXTENSION = "incidents.sso"
_NEXT = "sso_next"  # the page to go to after the provider sends the user back


@dataclass(frozen=True)
class SSOSettings:
    issuer: str
    client_id: str
    client_secret: str
    role_claim: str
    role_map: Mapping[str, Role]
    default_role: Role | None  # None: refuse whoever no group maps
    only: bool  # SSO_ONLY: password sign-in off, but for the break-glass admins
    break_glass: frozenset[str]

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    def password_allowed(self, email: str) -> bool:
        """Whether the password form may be used for `email` (the caller still checks the user is an admin)."""
        return not self.only or email.strip().lower() in self.break_glass


def parse_settings(config: Mapping) -> SSOSettings:
    """The OIDC_* and SSO settings, or ValueError naming the bad one (create_app fails with it at start-up)."""
    issuer = str(config.get("OIDC_ISSUER") or "").strip().rstrip("/")
    raw_map = config.get("OIDC_ROLE_MAP") or {}
    if isinstance(raw_map, str):
        try:
            raw_map = json.loads(raw_map)
        except ValueError as e:
            raise ValueError(f"INCIDENTS_OIDC_ROLE_MAP is not valid JSON ({e.msg}); expected an object like "
                             '{"incident-admins": "admin", "sre": "responder"}.') from None
    if not isinstance(raw_map, dict):
        raise ValueError("INCIDENTS_OIDC_ROLE_MAP must be a JSON object of group -> role.")
    role_map: dict[str, Role] = {}
    for group, role in raw_map.items():
        if role not in {r.value for r in Role}:
            raise ValueError(f"INCIDENTS_OIDC_ROLE_MAP maps {group!r} to unknown role {role!r}; "
                             f"roles are {', '.join(Role)}.")
        role_map[str(group)] = Role(role)
    default = str(config.get("OIDC_DEFAULT_ROLE") or "viewer").strip().lower()
    if default not in {*Role, "none"}:
        raise ValueError(f"INCIDENTS_OIDC_DEFAULT_ROLE must be one of {', '.join(Role)} or none, not {default!r}.")
    glass = config.get("BREAK_GLASS_ADMINS") or []
    if isinstance(glass, str):
        glass = glass.split(",")
    if not isinstance(glass, list | tuple):
        raise ValueError("INCIDENTS_BREAK_GLASS_ADMINS must be comma-separated e-mail addresses.")
    only = config.get("SSO_ONLY")
    only = only if isinstance(only, bool) else str(only or "").strip().lower() in {"1", "true", "yes", "on"}
    settings = SSOSettings(
        issuer=issuer, client_id=str(config.get("OIDC_CLIENT_ID") or ""),
        client_secret=str(config.get("OIDC_CLIENT_SECRET") or ""), role_claim=str(config.get("OIDC_ROLE_CLAIM")
                                                                                  or "groups"),
        role_map=role_map, default_role=None if default == "none" else Role(default), only=only,
        break_glass=frozenset(str(e).strip().lower() for e in glass if str(e).strip()),
    )
    if issuer and not settings.client_id:
        raise ValueError("INCIDENTS_OIDC_ISSUER is set but INCIDENTS_OIDC_CLIENT_ID is not.")
    if only and not issuer:
        raise ValueError("INCIDENTS_SSO_ONLY=true needs INCIDENTS_OIDC_ISSUER: nobody but the break-glass admins "
                         "could sign in.")
    return settings


def init_app(app: Flask) -> None:
    """Check the settings (a bad role map stops the start) and register the provider's client when one is set."""
    settings = parse_settings(app.config)
    app.extensions[_EXTENSION] = settings
    if settings.enabled:
        oauth = OAuth(app)
        oauth.register(
            "oidc", client_id=settings.client_id, client_secret=settings.client_secret,
            server_metadata_url=f"{settings.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256",
                           "default_timeout": float(app.config["OIDC_TIMEOUT"])},
        )


def settings() -> SSOSettings:
    return current_app.extensions[_EXTENSION]


def _client():
    return current_app.extensions["authlib.integrations.flask_client"].oidc


def _refused(message: str, status: int, reason: str, email: str = ""):
    db.session.rollback()  # a GET: end its read transaction, so the write below takes SQLite's lock up front
    with writing():
        services.record_sign_in_failure(db.session, email=email, address=request.remote_addr or "unknown",
                                        reason=reason)
        db.session.commit()
    return render_template("auth/login.html", errors={"_": [message]}, email="", sso=settings()), status


@bp.get("/login/oidc")
def login():
    if not settings().enabled:
        abort(404)
    from incidents.auth.views import _next_page

    session[_NEXT] = _next_page()
    try:
        return _client().authorize_redirect(url_for("sso.callback", _external=True))
    except (requests.RequestException, OAuthError, ValueError, KeyError) as e:
        log.warning("OpenID provider unreachable for sign-in: %s", type(e).__name__)
        return render_template("auth/login.html", errors={"_": ["The sign-in provider is not answering; try again "
                                                                "in a moment."]}, email="", sso=settings()), 502


@bp.get("/login/oidc/callback")
def callback():
    cfg = settings()
    if not cfg.enabled:
        abort(404)
    if request.args.get("error"):  # the person cancelled, or the provider refused
        return _refused("The sign-in provider did not sign you in.", 401, "oidc_invalid")
    try:
        client = _client()
        # Authlib checks the audience only through `azp` unless told to: name the issuer and our client id.
        token = client.authorize_access_token(claims_options={
            "iss": {"essential": True, "values": [client.load_server_metadata().get("issuer")]},
            "aud": {"essential": True, "values": [cfg.client_id]},
        })
    except requests.RequestException as e:
        log.warning("OpenID provider unreachable at the callback: %s", type(e).__name__)
        return _refused("The sign-in provider is not answering; try again in a moment.", 502, "oidc_invalid")
    except (OAuthError, JoseError, ValueError, KeyError, TypeError) as e:
        # A replayed or forged state, a bad signature, wrong audience or issuer, an expired token, a wrong nonce.
        log.warning("OpenID sign-in refused: %s", type(e).__name__)
        return _refused("Single sign-on failed: the answer from the sign-in provider was not valid. Try again.",
                        400, "oidc_invalid")
    claims = token.get("userinfo")
    if not claims or not claims.get("sub"):
        return _refused("Single sign-on failed: the provider sent no ID token.", 400, "oidc_invalid")
    db.session.rollback()  # as in _refused: the provider was asked with no transaction open, now write at once
    with writing():
        user, reason = services.sign_in_with_oidc(
            db.session, issuer=claims["iss"], subject=str(claims["sub"]), email=claims.get("email"),
            email_verified=claims.get("email_verified") is True, name=claims.get("name"),
            role=services.role_from_claim(claims.get(cfg.role_claim), cfg.role_map, cfg.default_role),
            address=request.remote_addr or "unknown", role_claimed=cfg.role_claim in claims,
        )
        db.session.commit()
    if user is None:
        message = {"inactive": "This account is deactivated; ask an admin.",
                   "oidc_unmapped": "Your account at the sign-in provider has no access to this site; ask an admin.",
                   }.get(reason, "Single sign-on failed: the provider did not send a verified e-mail address.")
        return render_template("auth/login.html", errors={"_": [message]}, email="", sso=cfg), 403
    from incidents.auth.views import _start_session

    next_page = session.get(_NEXT) or url_for("incident.index")
    _start_session(user)
    flash(f"Signed in as {user.email}.", "success")
    return redirect(next_page)
