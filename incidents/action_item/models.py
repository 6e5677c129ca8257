"""Action items: the follow-up work a post-mortem commits to."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from incidents.auth.models import User
from incidents.database import Base, UTCDateTime, str_enum, utcnow
from incidents.postmortem.models import Postmortem


class ItemType(StrEnum):
    PREVENT = "prevent"
    MITIGATE = "mitigate"
    DETECT = "detect"
    PROCESS = "process"
    REPAIR = "repair"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ItemStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    WONT_DO = "wont_do"

    @property
    def is_closed(self) -> bool:
        return self in (ItemStatus.DONE, ItemStatus.WONT_DO)

    @property
    def label(self) -> str:
        return {"open": "open", "in_progress": "in progress", "done": "done", "wont_do": "won't do"}[self.value]


class ActionItem(Base):
    """One follow-up of a post-mortem. `export` (its Shortcut card) comes from incidents.tracker.models."""

    __tablename__ = "action_item"
    __table_args__ = (
        sa.Index("ix_action_item_status_due", "status", "due_date"),
        sa.Index("ix_action_item_owner_status", "owner_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    postmortem_id: Mapped[int] = mapped_column(sa.ForeignKey("postmortem.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    due_date: Mapped[date | None] = mapped_column(sa.Date)
    # Optional while drafting; the publish gates insist on owner, due date and type.
    type: Mapped[ItemType | None] = mapped_column(str_enum(ItemType))
    priority: Mapped[Priority] = mapped_column(str_enum(Priority), default=Priority.MEDIUM)
    estimate: Mapped[int | None] = mapped_column(doc="Story points.")
    status: Mapped[ItemStatus] = mapped_column(str_enum(ItemStatus), default=ItemStatus.OPEN)
    wont_do_reason: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # When the debt left the ledger: set on the move to done or won't do, cleared when the item is reopened.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Declared here, not on Postmortem: action items depend on post-mortems, so the backref gives the post-mortem
    # its `action_items` without postmortem.models importing this module.
    postmortem: Mapped[Postmortem] = relationship(
        backref=backref("action_items", cascade="all, delete-orphan", order_by="ActionItem.id"),
    )
    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
