"""make_x(**overrides) helpers: real rows through the real services, committed."""

from __future__ import annotations

import contextlib
import itertools

import sqlalchemy as sa

from incidents.auth import services as auth
from incidents.auth.models import User
from incidents.catalog import services as catalog
from incidents.extensions import db
from incidents.incident import services as incidents

PASSWORD = "correct horse battery"
_PASSWORD_HASH: list[str] = []  # Argon2 is slow on purpose: hash the shared test password once
_seq = itertools.count(1)


def make_user(**overrides) -> User:
    n = next(_seq)
    fields = {"email": f"user{n}@example.com", "name": f"User {n}", "role": "responder"} | overrides
    password = fields.pop("password", PASSWORD)
    if password == PASSWORD:
        if not _PASSWORD_HASH:
            _PASSWORD_HASH.append(auth.hash_password(PASSWORD))
        user = User(email=fields["email"].lower(), name=fields["name"], role=fields["role"],
                    password_hash=_PASSWORD_HASH[0], active=fields.get("active", True))
        db.session.add(user)
    else:
        user = auth.create_user(db.session, password=password, **fields)
    db.session.commit()
    return user


def make_token(user: User) -> str:
    _, plain = auth.create_token(db.session, user, "test")
    db.session.commit()
    return plain


def make_team(**overrides):
    n = next(_seq)
    team = catalog.create_team(db.session, **({"name": f"Team {n}"} | overrides))
    db.session.commit()
    return team


def make_service(**overrides):
    n = next(_seq)
    if "team_id" not in overrides:
        overrides["team_id"] = make_team().id
    service = catalog.create_service(db.session, **({"name": f"Service {n}"} | overrides))
    db.session.commit()
    return service


def make_incident(**overrides):
    n = next(_seq)
    incident = incidents.create_incident(db.session, **({"title": f"Incident {n}", "severity": "SEV2"} | overrides))
    db.session.commit()
    return incident


class ApiClient:
    """Test client wrapper that sends the bearer token and JSON."""

    def __init__(self, client, token: str):
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url, json=None, **kw):
        return self.client.post(url, json=json, headers=self.headers, **kw)

    def patch(self, url, json=None, **kw):
        return self.client.patch(url, json=json, headers=self.headers, **kw)

    def delete(self, url, **kw):
        return self.client.delete(url, headers=self.headers, **kw)


@contextlib.contextmanager
def statement_kinds():
    """The first word (SELECT, INSERT, ...) of every statement the app's engine runs inside the block."""
    kinds: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        kinds.append(statement.split(None, 1)[0].upper())

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield kinds
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
