"""Accounts: creating users, checking passwords with throttling, API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
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
TOKEN_STAMP_INTERVAL = timedelta(minutes=1)  # how stale an API token's last_used_at may get


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


@dataclass(frozen=True)
class SignIn:
    """An attempt recorded as failed until the password proves otherwise, and what checking it needs."""

    attempt_id: int
    user_id: int | None
    password_hash: str


def begin_sign_in(session: Session, email: str, address: str, *, window: int, max_per_account: int,
                  max_per_address: int) -> SignIn:
    """Refuse with 429 after too many recent failures for the account or address; else record the attempt as a
    failure (so attempts checked in parallel count against the limits too) and read the account's hash.
    A short write: the caller commits it before check_password runs."""
    if "\x00" in email:  # PostgreSQL cannot even compare it: a 422, not a 500 from the first query
        raise Invalid("The e-mail address must not contain NUL characters.", {"email": ["Contains a NUL character."]})
    email = email.strip().lower()
    now = utcnow()
    since = now - timedelta(seconds=window)
    if (_recent_failures(session, LoginAttempt.email, email, since) >= max_per_account
            or _recent_failures(session, LoginAttempt.address, address, since) >= max_per_address):
        minutes = max(1, window // 60)
        raise LoginThrottled(f"Too many failed sign-in attempts. Wait {minutes} minutes and try again.")
    user = get_user_by_email(session, email)
    attempt = LoginAttempt(email=email[:254], address=address[:64], succeeded=False, at=now)
    session.add(attempt)
    session.flush()
    usable = user is not None and user.active
    return SignIn(attempt.id, user.id if usable else None, user.password_hash if usable else _DUMMY_HASH)


def check_password(sign_in: SignIn, password: str) -> str | None:
    """Argon2, 0.3-0.7 s on purpose, so it touches no database: run it with no transaction open (SQLite's write
    lock held meanwhile stalled every webhook). The hash to keep (a fresh one if the parameters changed) when the
    password is right, else None."""
    try:
        ok = _hasher.verify(sign_in.password_hash, password) and sign_in.user_id is not None
    except (VerificationError, InvalidHashError):
        return None
    if not ok:
        return None
    return hash_password(password) if _hasher.check_needs_rehash(sign_in.password_hash) else sign_in.password_hash


def finish_sign_in(session: Session, sign_in: SignIn, new_hash: str | None) -> User | None:
    """The signed-in user when check_password accepted the password (the attempt then counts as a success), else
    None. A short write; an account changed meanwhile (password, deactivated) refuses the attempt."""
    if new_hash is None:
        return None
    user = session.get(User, sign_in.user_id)
    if user is None or not user.active or user.password_hash != sign_in.password_hash:
        return None
    session.get(LoginAttempt, sign_in.attempt_id).succeeded = True
    user.password_hash = new_hash
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str, address: str, *, window: int,
                 max_per_account: int, max_per_address: int) -> User | None:
    """The three steps of a sign-in in one transaction, for commands and tests; the sign-in page commits between
    them so that no transaction is open while Argon2 runs."""
    sign_in = begin_sign_in(session, email, address, window=window, max_per_account=max_per_account,
                            max_per_address=max_per_address)
    return finish_sign_in(session, sign_in, check_password(sign_in, password))


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str = "") -> tuple[ApiToken, str]:
    """Make a new API token; the plain token is returned once and only its hash is stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name.strip()[:120], token_hash=_hash_token(plain), prefix=plain[:10])
    session.add(token)
    session.flush()
    return token, plain


def find_token(session: Session, plain: str) -> ApiToken | None:
    """The unrevoked token of an active user, or None (lookup by hash: no timing signal on the secret)."""
    token = session.scalar(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash_token(plain), ApiToken.revoked_at.is_(None))
    )
    if token is None or not token.user.active:
        return None
    return token


def stamp_due(token: ApiToken) -> bool:
    """Whether a use of `token` should be recorded: at most once per TOKEN_STAMP_INTERVAL, so API reads rarely write."""
    return token.last_used_at is None or utcnow() - token.last_used_at >= TOKEN_STAMP_INTERVAL


def stamp_token(session: Session, token_id: int) -> bool:
    """Record a use of the token unless one was recorded within TOKEN_STAMP_INTERVAL: one conditional UPDATE, so
    requests racing each other stamp once. Meant for a short transaction of its own, never a request's."""
    now = utcnow()
    stamped = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.id == token_id, sa.or_(ApiToken.last_used_at.is_(None),
                                               ApiToken.last_used_at <= now - TOKEN_STAMP_INTERVAL))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return stamped.rowcount == 1


def revoke_token(session: Session, token_id: int, *, by: User) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != by.id and not by.can(Role.ADMIN)):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    session.flush()
    return token
