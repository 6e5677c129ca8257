"""Accounts: creating users, checking passwords with throttling, API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from incidents.auth.models import ApiToken, LoginAttempt, Role, User
from incidents.database import utcnow
from incidents.errors import Conflict, DomainError, Invalid, NotFound
from incidents.singleline import check_single_line

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing equaliser")
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "inc_"  # noqa: S105 - a public prefix, not a secret


class LoginThrottled(DomainError):
    status = 429
    code = "too_many_attempts"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"Password must be at least {MIN_PASSWORD_LENGTH} characters.",
            {"password": [f"At least {MIN_PASSWORD_LENGTH} characters."]},
        )


def count_users(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count(User.id))) or 0


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def create_user(session: Session, *, email: str, name: str, role: Role | str, password: str) -> User:
    """Create an account; e-mails are unique and case-insensitive."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid("A valid e-mail address is required.", {"email": ["Not a valid e-mail address."]})
    if not name.strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    check_single_line(name=name.strip())
    try:
        role = Role(role)
    except ValueError:
        raise Invalid(f"Unknown role {role!r}.", {"role": [f"One of: {', '.join(Role)}."]}) from None
    _check_password_rules(password)
    if get_user_by_email(session, email):
        raise Conflict(f"A user with e-mail {email} already exists.", {"email": ["Already in use."]})
    user = User(email=email, name=name.strip(), role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def update_user(session: Session, user: User, *, name: str | None = None, role: Role | str | None = None,
                active: bool | None = None, password: str | None = None) -> User:
    if name is not None:
        if not name.strip():
            raise Invalid("A name is required.", {"name": ["Required."]})
        check_single_line(name=name.strip())
        user.name = name.strip()
    if role is not None:
        user.role = Role(role)
    if active is not None:
        user.active = active
    if password:
        _check_password_rules(password)
        user.password_hash = hash_password(password)
    if user.role != Role.ADMIN or not user.active:
        admins = session.scalar(
            sa.select(sa.func.count(User.id)).where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
        )
        if not admins:
            raise Conflict("This is the last active admin; make another admin first.")
    session.flush()
    return user


def _recent_failures(session: Session, column, value: str, since) -> int:
    return session.scalar(
        sa.select(sa.func.count(LoginAttempt.id)).where(
            column == value, LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since
        )
    ) or 0


def authenticate(session: Session, email: str, password: str, address: str, *, window: int,
                 max_per_account: int, max_per_address: int) -> User | None:
    """Check a password, refusing with 429 after too many recent failures for the account or address."""
    email = email.strip().lower()
    now = utcnow()
    since = now - timedelta(seconds=window)
    if (_recent_failures(session, LoginAttempt.email, email, since) >= max_per_account
            or _recent_failures(session, LoginAttempt.address, address, since) >= max_per_address):
        minutes = max(1, window // 60)
        raise LoginThrottled(f"Too many failed sign-in attempts. Wait {minutes} minutes and try again.")
    user = get_user_by_email(session, email)
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and user.active
    session.add(LoginAttempt(email=email[:254], address=address[:64], succeeded=ok, at=now))
    if ok and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session.flush()
    return user if ok else None


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Make a new API token; the plain token is returned once and only its hash is stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name.strip()[:120], token_hash=_hash_token(plain), prefix=plain[:10])
    session.add(token)
    session.flush()
    return token, plain


def user_for_token(session: Session, plain: str) -> User | None:
    """The active user owning an unrevoked token, or None (lookup by hash: no timing signal on the secret)."""
    token = session.scalar(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash_token(plain), ApiToken.revoked_at.is_(None))
    )
    if token is None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=5):
        token.last_used_at = now  # throttled so API reads rarely write
    return token.user


def revoke_token(session: Session, token_id: int, *, by: User) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != by.id and not by.can(Role.ADMIN)):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token
