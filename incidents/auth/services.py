"""Accounts: creating users, checking passwords with throttling, API tokens."""

from __future__ import annotations

import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from incidents.auth.models import ApiToken, LoginAttempt, Role, User
from incidents.database import serialize, utcnow
from incidents.errors import Conflict, DomainError, Invalid, NotFound

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing equaliser")
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "inc_"  # noqa: S105 - a public prefix, not a secret


class LoginThrottled(DomainError):
    status = 429
    code = "too_many_attempts"

    def __init__(self, retry_after: int):
        wait = f"{retry_after} seconds" if retry_after < 120 else f"{math.ceil(retry_after / 60)} minutes"
        super().__init__(f"Too many failed sign-in attempts. Wait {wait} and try again.")
        self.retry_after = retry_after


class AlreadySetUp(Conflict):
    code = "already_set_up"


@dataclass(frozen=True)
class LoginLimits:
    """Failed sign-ins allowed within `window` seconds: per account from one address (then a wait of `delay`
    seconds that doubles with every further failure), per account from everywhere, per address."""

    window: int = 900
    per_account_address: int = 5
    per_account: int = 50
    per_address: int = 20
    delay: int = 30

    @classmethod
    def from_config(cls, cfg) -> LoginLimits:
        return cls(window=int(cfg["LOGIN_THROTTLE_WINDOW"]),
                   per_account_address=int(cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS"]),
                   per_account=int(cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"]),
                   per_address=int(cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
                   delay=int(cfg["LOGIN_THROTTLE_DELAY"]))


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


def create_first_admin(session: Session, *, email: str, name: str, password: str) -> User:
    """The first-run setup's admin: two setups racing make one admin, the later one gets AlreadySetUp."""
    serialize(session, "auth:first-run-setup")
    if count_users(session):
        raise AlreadySetUp("The first admin exists already; sign in.")
    return create_user(session, email=email, name=name, role=Role.ADMIN, password=password)


def create_user(session: Session, *, email: str, name: str, role: Role | str, password: str) -> User:
    """Create an account; e-mails are unique and case-insensitive."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise Invalid("A valid e-mail address is required.", {"email": ["Not a valid e-mail address."]})
    if not name.strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
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
        user.name = name.strip()
    if role is not None:
        user.role = Role(role)
    # A new password or a deactivation ends every session; reactivating later brings none of them back.
    revoke = bool(password) or (active is False and user.active)
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
    if revoke:
        revoke_sessions(session, user)
    session.flush()
    return user


def revoke_sessions(session: Session, user: User) -> None:
    """Sign `user` out of every browser: each session and remember cookie carries the old session version."""
    user.session_version = User.session_version + 1  # in SQL: two revocations at once both count
    session.flush()


def user_for_session(session: Session, cookie_id: str) -> User | None:
    """The active user a session or remember cookie names ("<id>:<version>"), unless the version is outdated."""
    user_id, _, version = cookie_id.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None  # includes cookies signed before session versions existed
    user = session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def _nth_newest_failure(session: Session, since: datetime, n: int, *where) -> datetime | None:
    """When the n-th most recent failure matching `where` since `since` happened; None if there are fewer."""
    return session.scalar(
        sa.select(LoginAttempt.at).where(*where, LoginAttempt.succeeded.is_(False), LoginAttempt.at >= since)
        .order_by(LoginAttempt.at.desc()).offset(max(n, 1) - 1).limit(1)
    )


def check_login_throttle(session: Session, email: str, address: str, limits: LoginLimits, now: datetime) -> None:
    """Refuse with LoginThrottled (429, with the seconds to wait) when this sign-in is over a limit.

    Per account and address, failures since that pair's last success count: from `per_account_address` on, each
    failure is followed by a wait that doubles. The far higher per-account limit stops a spread-out guesser
    without letting one address lock anyone out; the per-address limit stops one address trying many accounts.
    Serialised per account and per address until the attempt is recorded, so concurrent tries all count."""
    serialize(session, f"auth:login-account:{email}", f"auth:login-address:{address}")
    since = now - timedelta(seconds=limits.window)
    retry_at: list[datetime] = []
    last_success = session.scalar(sa.select(sa.func.max(LoginAttempt.at)).where(
        LoginAttempt.email == email, LoginAttempt.address == address, LoginAttempt.succeeded.is_(True)))
    pair_since = max(since, last_success) if last_success else since
    count, last = session.execute(
        sa.select(sa.func.count(LoginAttempt.id), sa.func.max(LoginAttempt.at)).where(
            LoginAttempt.email == email, LoginAttempt.address == address, LoginAttempt.succeeded.is_(False),
            LoginAttempt.at > pair_since)
    ).one()
    if count >= limits.per_account_address:
        doublings = min(count - limits.per_account_address, 20)
        retry_at.append(last + timedelta(seconds=min(limits.delay * 2 ** doublings, limits.window)))
    for limit, column, value in ((limits.per_account, LoginAttempt.email, email),
                                 (limits.per_address, LoginAttempt.address, address)):
        nth = _nth_newest_failure(session, since, limit, column == value)
        if nth is not None:
            retry_at.append(nth + timedelta(seconds=limits.window))
    wait = max(retry_at, default=now) - now
    if wait > timedelta(0):
        raise LoginThrottled(math.ceil(wait.total_seconds()))


def authenticate(session: Session, email: str, password: str, address: str, limits: LoginLimits) -> User | None:
    """Check a password, refusing with 429 while this account or address is throttled (check_login_throttle)."""
    email = email.strip().lower()[:254]
    address = address[:64]
    now = utcnow()
    check_login_throttle(session, email, address, limits, now)
    user = get_user_by_email(session, email)
    ok = False
    try:
        ok = _hasher.verify(user.password_hash if user else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    ok = ok and user.active
    session.add(LoginAttempt(email=email, address=address, succeeded=ok, at=now))
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
