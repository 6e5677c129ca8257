"""Accounts: creating users, checking passwords with throttling, single sign-on, password resets and invitations,
API tokens."""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session, joinedload

from incidents import events
from incidents.auth.models import ApiToken, Invitation, LoginAttempt, Role, TokenScope, User
from incidents.database import serialize, utcnow
from incidents.errors import Conflict, DomainError, Invalid, NotFound
from incidents.singleline import check_single_line, reject_nul

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("timing equaliser")
MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "inc_"  # noqa: S105 - a public prefix, not a secret
TOKEN_STAMP_INTERVAL = timedelta(minutes=1)  # how stale an API token's last_used_at may get
# The password hash of an account made by single sign-on: no password matches it (Argon2 refuses to parse it).
NO_PASSWORD = "!sso"  # noqa: S105 - a marker no password can match, not a secret
RESET_MAX_AGE = timedelta(hours=1)
INVITATION_MAX_AGE = timedelta(days=7)
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


def create_user(session: Session, *, email: str, name: str, role: Role | str, password: str | None,
                via: str = "admin") -> User:
    """Create an account; e-mails are unique and case-insensitive. `via` says how (admin, cli, setup, ...).
    No password (None) only for single sign-on: the account then cannot sign in with one until it is reset."""
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
    if password is not None:
        _check_password_rules(password)
    if get_user_by_email(session, email):
        raise Conflict(f"A user with e-mail {email} already exists.", {"email": ["Already in use."]})
    user = User(email=email, name=name.strip(), role=role,
                password_hash=hash_password(password) if password is not None else NO_PASSWORD)
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
    if active is False:
        _revoke_user_tokens(session, user)
    session.flush()
    after = {"name": user.name, "role": Role(user.role).value, "active": user.active}
    changes = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if password:
        changes["password"] = ["(set)", "(changed)"]
    if changes:
        events.emit(session, "auth.user_updated", user_id=user.id, changes=changes, via=via)
    return user


def _revoke_user_tokens(session: Session, user: User) -> None:
    """Deactivation revokes the user's API tokens: like sessions, reactivating brings none of them back."""
    for token in user.tokens:
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            events.emit(session, "auth.token_revoked", token_id=token.id, user_id=user.id)


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


# --- single sign-on ---------------------------------------------------------------------------------


def record_sign_in_failure(session: Session, *, email: str, address: str, reason: str) -> None:
    """A sign-in refused before any account was looked at (a bad ID token, a replayed state, SSO-only mode)."""
    email = (email or "").replace("\x00", "").strip().lower()[:254]  # PostgreSQL stores no NUL in text
    events.emit(session, "auth.sign_in_failed", email=email, address=address[:64], reason=reason)


def role_from_claim(value: object, role_map: Mapping[str, Role], default: Role | None) -> Role | None:
    """The highest role the provider's groups (a list, or one string) map to; `default` when none maps (None:
    refuse)."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
    mapped = [role_map[name] for name in names if isinstance(name, str) and name in role_map]
    return max(mapped, key=lambda role: role.rank) if mapped else default


def sign_in_with_oidc(session: Session, *, issuer: str, subject: str, email: str | None, email_verified: bool,
                      name: str | None, role: Role | None, address: str,
                      role_claimed: bool = True) -> tuple[User | None, str | None]:
    """The user an OpenID provider vouched for, made on the first sign-in and given the role the provider's groups
    map to at every sign-in; or (None, reason) when refused. Found by (issuer, subject); a first sign-in links to
    the account with the same e-mail only when the provider says it verified that address, else makes one.
    Without the role claim at all (`role_claimed` false: Google has no groups) an existing account keeps its role."""
    user = session.scalar(sa.select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject))
    email = (email or "").strip().lower()
    if user is None and email and email_verified:
        user = get_user_by_email(session, email)
        if user is not None and user.oidc_subject is not None:  # another identity's account: never take it over
            return _oidc_refused(session, email, address, "oidc_unmapped")
    if user is not None and not user.active:
        return _oidc_refused(session, email or user.email, address, "inactive")
    if user is not None and not role_claimed:
        role = user.role
    if role is None:
        return _oidc_refused(session, email or (user.email if user else subject), address, "oidc_unmapped")
    if user is None:
        if not email:
            return _oidc_refused(session, subject, address, "oidc_invalid")
        if get_user_by_email(session, email) is not None:  # an unverified address never claims an account
            return _oidc_refused(session, email, address, "oidc_unmapped")
        user = create_user(session, email=email, name=(name or "").strip()[:120] or email.partition("@")[0],
                           role=role, password=None, via="sso")
    elif user.role != role:
        try:
            with session.begin_nested():
                update_user(session, user, role=role, via="sso")
        except Conflict:
            session.refresh(user)  # the last active admin stays one, whatever the provider's groups say
    if user.oidc_subject is None:
        user.oidc_issuer, user.oidc_subject = issuer, subject
    session.flush()
    events.emit(session, "auth.signed_in", user_id=user.id, method="oidc", address=address[:64])
    return user, None


def _oidc_refused(session: Session, email: str, address: str, reason: str) -> tuple[None, str]:
    record_sign_in_failure(session, email=email, address=address, reason=reason)
    return None, reason


# --- password reset and invitations: signed links that work once ------------------------------------


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"incidents.auth.{purpose}")


def _password_fingerprint(user: User) -> str:
    """Changes with the password and the session version: a used reset link (or one sent before a deactivation or
    a sign-out everywhere) is dead."""
    return hashlib.sha256(f"{user.password_hash}:{user.session_version}".encode()).hexdigest()[:32]


def password_reset_token(user: User, secret: str) -> str:
    return _serializer(secret, "reset").dumps({"u": user.id, "f": _password_fingerprint(user)})


def request_password_reset(session: Session, email: str, address: str, limits: LoginLimits) -> User | None:
    """The active account to send a reset link to, or None; the caller answers the same either way (no account
    enumeration). Throttled like sign-ins (429), each request counting as a failure of "reset:<e-mail>"."""
    reject_nul(email=email)
    email = email.strip().lower()[:254]
    key, address, now = f"reset:{email}"[:254], address[:64], utcnow()
    check_login_throttle(session, key, address, limits, now)
    session.add(LoginAttempt(email=key, address=address, succeeded=False, at=now))
    session.flush()
    user = get_user_by_email(session, email)
    return user if user is not None and user.active else None


def user_for_reset(session: Session, token: str, secret: str) -> User | None:
    """The account a reset link is for, while it is under an hour old and unused; else None."""
    try:
        data = _serializer(secret, "reset").loads(token, max_age=int(RESET_MAX_AGE.total_seconds()))
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        return None
    user = session.get(User, data["u"])
    if user is None or not user.active or data.get("f") != _password_fingerprint(user):
        return None
    return user


def reset_password(session: Session, token: str, password: str, secret: str) -> User:
    """Set a new password through a reset link; the link dies with it, and every session of the user ends."""
    user = user_for_reset(session, token, secret)
    if user is None:
        raise Invalid("This reset link is invalid, used or expired; ask for a new one.")
    return update_user(session, user, password=password, via="reset")


def invite(session: Session, *, email: str, role: Role | str, by: User, now: datetime | None = None) -> Invitation:
    """Invite `email` to make an account with `role`; a newer invitation to the same address replaces older ones."""
    email = email.strip().lower()
    reject_nul(email=email)
    if "@" not in email or len(email) > 254:
        raise Invalid("A valid e-mail address is required.", {"email": ["Not a valid e-mail address."]})
    check_single_line(email=email)
    try:
        role = Role(role)
    except ValueError:
        raise Invalid(f"Unknown role {role!r}.", {"role": [f"One of: {', '.join(Role)}."]}) from None
    if get_user_by_email(session, email):
        raise Conflict(f"A user with e-mail {email} already exists.", {"email": ["Already in use."]})
    now = now or utcnow()
    session.execute(sa.update(Invitation).where(Invitation.email == email, Invitation.closed_at.is_(None))
                    .values(closed_at=now))
    invitation = Invitation(email=email, role=role, invited_by_id=by.id, created_at=now,
                            expires_at=now + INVITATION_MAX_AGE)
    session.add(invitation)
    session.flush()
    return invitation


def invitation_token(invitation: Invitation, secret: str) -> str:
    return _serializer(secret, "invitation").dumps({"i": invitation.id})


def open_invitations(session: Session) -> Iterable[Invitation]:
    return session.scalars(sa.select(Invitation).where(Invitation.closed_at.is_(None), Invitation.expires_at > utcnow())
                           .order_by(Invitation.created_at.desc())).all()


def find_invitation(session: Session, token: str, secret: str) -> Invitation | None:
    """The open invitation a link is for (signed, unused, under 7 days old), else None."""
    try:
        data = _serializer(secret, "invitation").loads(token, max_age=int(INVITATION_MAX_AGE.total_seconds()))
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("i"), int):
        return None
    invitation = session.get(Invitation, data["i"])
    if invitation is None or invitation.closed_at is not None or invitation.expires_at <= utcnow():
        return None
    return invitation


def accept_invitation(session: Session, token: str, secret: str, *, name: str, password: str) -> User:
    """Make the invited account (name and password chosen by the invitee); the link works once."""
    invitation = find_invitation(session, token, secret)
    if invitation is not None:  # two tabs accepting at once: the second finds it closed
        serialize(session, f"auth:invitation:{invitation.id}")
        session.refresh(invitation)
    if invitation is None or invitation.closed_at is not None:
        raise Invalid("This invitation is invalid, used or expired; ask an admin for a new one.")
    user = create_user(session, email=invitation.email, name=name, role=invitation.role, password=password,
                       via="invitation")
    invitation.closed_at, invitation.user_id = utcnow(), user.id
    session.flush()
    return user


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
