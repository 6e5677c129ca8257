"""Post-mortems, their versioned sections, templates, contributing factors and the blameless word list."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from incidents.auth.models import User
from incidents.database import Base, UTCDateTime, str_enum, utcnow
from incidents.incident.models import Incident


class PostmortemStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class SectionKind(StrEnum):
    MARKDOWN = "markdown"
    TIMELINE = "timeline"
    IMPACT = "impact"
    FACTORS = "factors"
    ACTION_ITEMS = "action_items"
    PARTICIPANTS = "participants"

    @property
    def label(self) -> str:
        return {"markdown": "Markdown text", "timeline": "Timeline", "impact": "Impact figures",
                "factors": "Contributing factors", "action_items": "Action items",
                "participants": "Participants"}[self.value]


class PostmortemTemplate(Base):
    """An ordered list of section definitions; editing bumps `version`, started post-mortems keep a copy."""

    __tablename__ = "postmortem_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # [{"key", "title", "guidance", "kind", "required"}, ...] in order.
    sections: Mapped[list] = mapped_column(sa.JSON, default=list)
    version: Mapped[int] = mapped_column(default=1)
    builtin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Postmortem(Base):
    """One incident's review. `action_items` comes from incidents.action_item.models (a backref there), so this
    module never names the packages above it."""

    __tablename__ = "postmortem"
    __table_args__ = (sa.Index("ix_postmortem_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # One post-mortem per incident, enforced by the database so two simultaneous starts cannot both win.
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), unique=True)
    template_id: Mapped[int | None] = mapped_column(sa.ForeignKey("postmortem_template.id", ondelete="SET NULL"))
    template_slug: Mapped[str] = mapped_column(sa.String(64))
    template_name: Mapped[str] = mapped_column(sa.String(120))
    template_version: Mapped[int]
    status: Mapped[PostmortemStatus] = mapped_column(str_enum(PostmortemStatus), default=PostmortemStatus.DRAFT)
    title: Mapped[str] = mapped_column(sa.String(200))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Title, incident ref and every section and factor text, lower-cased: portable full-text search by LIKE.
    search_text: Mapped[str] = mapped_column(sa.Text, default="")

    incident: Mapped[Incident] = relationship()
    template: Mapped[PostmortemTemplate | None] = relationship()
    created_by: Mapped[User | None] = relationship()
    sections: Mapped[list[PostmortemSection]] = relationship(
        back_populates="postmortem", cascade="all, delete-orphan", order_by="PostmortemSection.position",
    )
    factors: Mapped[list[ContributingFactor]] = relationship(
        cascade="all, delete-orphan", order_by="ContributingFactor.id",
    )
    participants: Mapped[list[Participant]] = relationship(cascade="all, delete-orphan", order_by="Participant.id")
    comments: Mapped[list[ReviewComment]] = relationship(cascade="all, delete-orphan", order_by="ReviewComment.id")
    events: Mapped[list[PostmortemEvent]] = relationship(cascade="all, delete-orphan", order_by="PostmortemEvent.id")

    @property
    def is_published(self) -> bool:
        return self.status == PostmortemStatus.PUBLISHED

    def section(self, key: str) -> PostmortemSection | None:
        return next((s for s in self.sections if s.key == key), None)


class PostmortemSection(Base):
    """One section's current text; `version` moves by one on every save (optimistic concurrency)."""

    __tablename__ = "postmortem_section"
    __table_args__ = (sa.UniqueConstraint("postmortem_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(64))
    position: Mapped[int]
    title: Mapped[str] = mapped_column(sa.String(200))
    guidance: Mapped[str] = mapped_column(sa.Text, default="")
    kind: Mapped[SectionKind] = mapped_column(str_enum(SectionKind))
    required: Mapped[bool] = mapped_column(default=False)
    body: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    postmortem: Mapped[Postmortem] = relationship(back_populates="sections")
    updated_by: Mapped[User | None] = relationship()
    revisions: Mapped[list[SectionRevision]] = relationship(
        cascade="all, delete-orphan", order_by="SectionRevision.version", back_populates="section",
    )


class SectionRevision(Base):
    """Every saved version of a section, kept forever: the history and its diffs."""

    __tablename__ = "postmortem_section_revision"
    __table_args__ = (sa.UniqueConstraint("section_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    section_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem_section.id", ondelete="CASCADE"))
    version: Mapped[int]
    body: Mapped[str] = mapped_column(sa.Text, default="")
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    section: Mapped[PostmortemSection] = relationship(back_populates="revisions")
    author: Mapped[User | None] = relationship()


class ReviewComment(Base):
    __tablename__ = "postmortem_comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"), index=True)
    section_key: Mapped[str] = mapped_column(sa.String(64))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User | None] = relationship()


class PostmortemEvent(Base):
    """The post-mortem's own history: started, submitted, published, reopened."""

    __tablename__ = "postmortem_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(30))
    text: Mapped[str] = mapped_column(sa.String(500))
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User | None] = relationship()


class FactorCategory(Base):
    """The contributing-factor taxonomy admins edit (change, dependency, capacity, ...)."""

    __tablename__ = "factor_category"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    position: Mapped[int] = mapped_column(default=0)
    active: Mapped[bool] = mapped_column(default=True)


class ContributingFactor(Base):
    __tablename__ = "contributing_factor"

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"), index=True)
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("factor_category.id"))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    category: Mapped[FactorCategory] = relationship(lazy="joined")


class Participant(Base):
    __tablename__ = "postmortem_participant"
    __table_args__ = (sa.UniqueConstraint("postmortem_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id"))
    role: Mapped[str] = mapped_column(sa.String(120), default="")

    user: Mapped[User] = relationship(lazy="joined")


class BlamelessPhrase(Base):
    """One entry of the coach's word list: a phrase to flag and a learning-oriented rewrite to suggest."""

    __tablename__ = "blameless_phrase"

    id: Mapped[int] = mapped_column(primary_key=True)
    phrase: Mapped[str] = mapped_column(sa.String(100), unique=True)
    category: Mapped[str] = mapped_column(sa.String(20), default="blame")
    suggestion: Mapped[str] = mapped_column(sa.String(500))
    active: Mapped[bool] = mapped_column(default=True)
