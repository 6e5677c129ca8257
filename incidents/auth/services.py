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
from sqlalchemy.orm import Session, joinedload

from incidents import events
from incidents.auth.models import ApiToken, LoginAttempt, Role, TokenScope, User
from incidents.database import serialize, utcnow
from incidents.errors import Conflict, DomainError, Invalid, NotFound
from incidents.singleline import check_single_line, reject_nul

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing equaliser")
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "inc_"  # noqa: S105 - a public prefix, not a secret
TOKEN_STAMP_INTERVAL = timedelta(minutes=1)  # how stale an API token's last_used_at may get
MAX_TOKEN_DAYS = 3650


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
    return create_user(session, email=email, name=name, role=Role.ADMIN, password=password, via="setup")


def create_user(session: Session, *, email: str, name: str, role: Role | str, password: str,
                via: str = "admin") -> User:
    """Create an account; e-mails are unique and case-insensitive. `via` says how (admin, cli, setup, ...)."""
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
    events.emit(session, "auth.user_created", user_id=user.id, role=role.value, via=via)
    return user


def update_user(session: Session, user: User, *, name: str | None = None, role: Role | str | None = None,
                active: bool | None = None, password: str | None = None, via: str = "admin") -> User:
    """Edit an account; emits `auth.user_updated` with what changed (a password only as "(changed)")."""
    before = {"name": user.name, "role": user.role.value, "active": user.active}
    if name is not None:
        if not name.strip():
            raise Invalid("A name is required.", {"name": ["Required."]})
        check_single_line(name=name.strip())
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
    after = {"name": user.name, "role": Role(user.role).value, "active": user.active}
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if password:
        changes["password"] = ["(set)", "(changed)"]
    if changes:
        events.emit(session, "auth.user_updated", user_id=user.id, changes=changes, via=via)
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


@dataclass(frozen=True)
class SignIn:
    """An attempt recorded as failed until the password proves otherwise, and what checking it needs."""

    attempt_id: int
    user_id: int | None
    password_hash: str
    email: str = ""
    address: str = ""


def begin_sign_in(session: Session, email: str, address: str, limits: LoginLimits) -> SignIn:
    """Refuse with 429 while this account or address is throttled (check_login_throttle); else record the attempt
    as a failure (so attempts checked in parallel count against the limits too) and read the account's hash.
    A short write: the caller commits it before check_password runs."""
    reject_nul(email=email)  # PostgreSQL cannot even compare it: a 422, not a 500 from the first query
    email = email.strip().lower()[:254]
    address = address[:64]
    now = utcnow()
    check_login_throttle(session, email, address, limits, now)
    user = get_user_by_email(session, email)
    attempt = LoginAttempt(email=email, address=address, succeeded=False, at=now)
    session.add(attempt)
    session.flush()
    usable = user is not None and user.active
    return SignIn(attempt.id, user.id if usable else None, user.password_hash if usable else _DUMMY_HASH,
                  email=email, address=address)


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
    user = session.get(User, sign_in.user_id) if sign_in.user_id is not None else None
    if new_hash is None or user is None or not user.active or user.password_hash != sign_in.password_hash:
        reason = "unknown_user" if sign_in.user_id is None else (
            "bad_password" if new_hash is None else "inactive")
        events.emit(session, "auth.sign_in_failed", email=sign_in.email, address=sign_in.address, reason=reason)
        return None
    session.get(LoginAttempt, sign_in.attempt_id).succeeded = True
    user.password_hash = new_hash
    session.flush()
    events.emit(session, "auth.signed_in", user_id=user.id, method="password", address=sign_in.address)
    return user


def authenticate(session: Session, email: str, password: str, address: str, limits: LoginLimits) -> User | None:
    """The three steps of a sign-in in one transaction, for commands and tests; the sign-in page commits between
    them so that no transaction is open while Argon2 runs."""
    sign_in = begin_sign_in(session, email, address, limits)
    return finish_sign_in(session, sign_in, check_password(sign_in, password))


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str = "", *, scope: TokenScope | str | None = None,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """Make a new API token; the plain token is returned once and only its hash is stored. Without `scope` it
    carries its owner's role; a scope above that role is refused (it could never be used)."""
    if scope in (None, ""):
        scope = TokenScope.of_role(user.role)
    try:
        scope = TokenScope(scope)
    except ValueError:
        raise Invalid(f"Unknown scope {scope!r}.", {"scope": [f"One of: {', '.join(TokenScope)}."]}) from None
    if scope.ceiling.rank > user.role.rank:
        raise Invalid(f"A {user.role.value} cannot have a token of scope {scope.value}.",
                      {"scope": [f"At most {TokenScope.of_role(user.role).value} for a {user.role.value}."]})
    expires_at = None
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise Invalid(f"Expiry must be 1 to {MAX_TOKEN_DAYS} days.",
                          {"expires": [f"1 to {MAX_TOKEN_DAYS} days, or empty for none."]})
        expires_at = utcnow() + timedelta(days=expires_in_days)
    check_single_line(name=name.strip())
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name.strip()[:120], token_hash=_hash_token(plain), prefix=plain[:10],
                     scope=scope, expires_at=expires_at)
    session.add(token)
    session.flush()
    events.emit(session, "auth.token_created", token_id=token.id, user_id=user.id, scope=scope.value,
                expires_at=expires_at.isoformat() if expires_at else None)
    return token, plain


def list_tokens(session: Session) -> list[ApiToken]:
    """Everyone's tokens, for admins: unrevoked first, newest first."""
    return list(session.scalars(sa.select(ApiToken).options(joinedload(ApiToken.user))
                                .order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())))


class TokenRefused(DomainError):
    status = 401
    code = "unauthorized"


def find_token(session: Session, plain: str) -> ApiToken | None:
    """The unrevoked token of an active user, or None (lookup by hash: no timing signal on the secret).
    An expired token raises TokenRefused, so the client learns why."""
    token = session.scalar(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash_token(plain), ApiToken.revoked_at.is_(None))
    )
    if token is None or not token.user.active:
        return None
    if token.expired(utcnow()):
        raise TokenRefused("This API token has expired; create a new one.")
    return token


def stamp_due(token: ApiToken) -> bool:
    """Whether a use of `token` should be recorded: at most once per TOKEN_STAMP_INTERVAL, so API reads rarely write."""
    return token.last_used_at is None or utcnow() - token.last_used_at >= TOKEN_STAMP_INTERVAL


def stamp_token(session: Session, token_id: int, address: str | None = None) -> bool:
    """Record a use of the token (when, and from which client address) unless one was recorded within
    TOKEN_STAMP_INTERVAL: one conditional UPDATE, so requests racing each other stamp once. Meant for a short
    transaction of its own, never a request's."""
    now = utcnow()
    stamped = session.execute(
        sa.update(ApiToken)
        .where(ApiToken.id == token_id, sa.or_(ApiToken.last_used_at.is_(None),
                                               ApiToken.last_used_at <= now - TOKEN_STAMP_INTERVAL))
        .values(last_used_at=now, last_used_address=(address or None) and address[:64])
        .execution_options(synchronize_session=False)
    )
    return stamped.rowcount == 1


def revoke_token(session: Session, token_id: int, *, by: User) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != by.id and not by.can(Role.ADMIN)):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        events.emit(session, "auth.token_revoked", token_id=token.id, user_id=token.user_id)
    session.flush()
    return token
