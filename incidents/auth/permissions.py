"""Who may do what: one decorator for web pages and the JSON API alike.

An API request acts with the lower of its token's scope (read: viewer, write: responder, admin: admin) and its
owner's role; `require` and `can` are the one place that rule is applied."""

from __future__ import annotations

from functools import wraps

from flask import abort, g, redirect, request, url_for
from flask_login import current_user

from incidents.auth.models import Role, TokenScope, User


def actor() -> User | None:
    """The authenticated user of this request: the API token's owner, or the logged-in web user."""
    if "api" in request.blueprints:  # the API (and every domain under it) trusts tokens only, never the cookie
        return g.get("api_user")
    return current_user if current_user.is_authenticated else None


def can(role: Role) -> bool:
    """Whether this request may act as `role`: the user's role reaches it, and so does the API token's scope."""
    user = actor()
    if user is None or not user.can(role):
        return False
    token = g.get("api_token") if "api" in request.blueprints else None
    return token is None or token.allows(role)


def require(role: Role = Role.VIEWER):
    """Refuse with 401 (API) or a login redirect (web) when anonymous, 403 when the role or token scope is too low."""
    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            user = actor()
            if user is None:
                if "api" in request.blueprints:
                    abort(401, description="A valid API token is required: Authorization: Bearer <token>.")
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if not user.can(role):
                abort(403, description=f"This needs the {role.value} role; you are {user.role.value}.")
            if not can(role):
                token = g.api_token
                abort(403, description=f"This token's scope is {token.scope.value}; this needs a token of scope "
                                       f"{TokenScope.of_role(role).value} (the {role.value} role).")
            return view(*args, **kwargs)
        return wrapper
    return decorator
