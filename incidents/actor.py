"""Who is acting now, for the audit log: a person (web session), an API token, an integration (webhooks), or the
system (jobs, commands). Shared plumbing, importing no domain.

The API token layer and the webhook layer stamp `g.actor` for their request; the web session's person is read
from Flask-Login only when asked (never a query of its own: a view that changed something has loaded it). The
webhook writer thread has no request, so it runs each delivery inside `acting(...)` with what the request saw.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

from flask import g, has_request_context, request


@dataclass(frozen=True)
class Actor:
    kind: str  # user, token, integration, system, anonymous
    id: int | None
    label: str


SYSTEM = Actor("system", None, "system")
ANONYMOUS = Actor("anonymous", None, "anonymous")

# (actor, client address) for code that runs outside the request that caused it (the webhook writer).
_acting: contextvars.ContextVar[tuple[Actor, str | None] | None] = contextvars.ContextVar("acting", default=None)


def person(user) -> Actor:
    return Actor("user", user.id, f"{user.name} <{user.email}>")


def current() -> Actor:
    """The actor of the code running now (see the module docstring)."""
    acting = _acting.get()
    if acting is not None:
        return acting[0]
    if not has_request_context():
        return SYSTEM
    stamped = g.get("actor")
    if stamped is not None:
        return stamped
    user = g.get("_login_user")
    if user is None:
        from flask_login import current_user  # loads the session's user once (cached on g by Flask-Login)

        user = current_user
    return person(user) if getattr(user, "is_authenticated", False) else ANONYMOUS


def address() -> str | None:
    """The client address, as the sign-in throttle sees it (after the trusted-proxy fix)."""
    acting = _acting.get()
    if acting is not None:
        return acting[1]
    return request.remote_addr if has_request_context() else None


def snapshot() -> tuple[Actor, str | None]:
    return current(), address()


def become(who: Actor) -> None:
    """Act as `who` for the rest of the running job (a Slack user's command): the job runner runs every job
    inside `acting(SYSTEM)`, which undoes this when the job ends."""
    _acting.set((who, None))


@contextlib.contextmanager
def acting(who: tuple[Actor, str | None]):
    """Run the block as `who` (an actor and an address), e.g. a delivery applied by the webhook writer."""
    token = _acting.set(who)
    try:
        yield
    finally:
        _acting.reset(token)
