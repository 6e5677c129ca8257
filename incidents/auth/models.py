"""Users, API tokens and the login-attempt log used for throttling."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from incidents.database import Base, UTCDateTime, str_enum, utcnow


class Role(StrEnum):
    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class TokenScope(StrEnum):
    """What an API token may do at most; the owner's role still applies (the lower of the two wins)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def ceiling(self) -> Role:
        return {"read": Role.VIEWER, "write": Role.RESPONDER, "admin": Role.ADMIN}[self.value]

    @classmethod
    def of_role(cls, role: Role) -> TokenScope:
        return {Role.VIEWER: cls.READ, Role.RESPONDER: cls.WRITE, Role.ADMIN: cls.ADMIN}[Role(role)]


class User(UserMixin, Base):
    __tablename__ = "user"
    # One account per identity at an OpenID provider: the issuer and its stable subject, never the e-mail.
    __table_args__ = (sa.Index("ix_user_oidc_identity", "oidc_issuer", "oidc_subject", unique=True),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    role: Mapped[Role] = mapped_column(str_enum(Role))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # In every session and remember cookie (get_id); bumping it signs the user out of every browser at once.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Set at the first single sign-on; an account made by SSO alone has an unusable password hash.
    oidc_issuer: Mapped[str | None] = mapped_column(sa.String(255))
    oidc_subject: Mapped[str | None] = mapped_column(sa.String(255))

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", order_by="ApiToken.id")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def get_id(self) -> str:
        """Flask-Login's cookie id, "<id>:<session version>": the user loader refuses an outdated version."""
        return f"{self.id}:{self.session_version}"

    def can(self, role: Role) -> bool:
        """True when this user's role is `role` or above it."""
        return self.active and self.role.rank >= role.rank

    def __repr__(self) -> str:
        return f"<User {self.email} {self.role}>"


class ApiToken(Base):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    # sha256 of the token: tokens are 256-bit random, so a fast hash is enough and lookups stay O(1).
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_address: Mapped[str | None] = mapped_column(sa.String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scope: Mapped[TokenScope] = mapped_column(str_enum(TokenScope), default=TokenScope.READ, server_default="read")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="tokens")

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def allows(self, role: Role) -> bool:
        """Whether both the token's scope and its owner's role reach `role`."""
        return self.scope.ceiling.rank >= role.rank and self.user.can(role)


class Invitation(Base):
    """An e-mailed invitation to make an account with `role`; its signed link works once, until `expires_at`."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role))
    invited_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when accepted or replaced by a newer invitation: the link is dead from then on.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id", ondelete="SET NULL"))


class LoginAttempt(Base):
    __tablename__ = "login_attempt"
    __table_args__ = (
        sa.Index("ix_login_attempt_email_at", "email", "at"),
        sa.Index("ix_login_attempt_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    address: Mapped[str] = mapped_column(sa.String(64))
    succeeded: Mapped[bool]
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
