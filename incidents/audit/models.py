"""One audit row per security or admin event or field change, chained by hash (see audit/services.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from incidents.database import Base, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.Index("ix_audit_entry_object", "object_type", "object_id"),
        sa.Index("ix_audit_entry_actor", "actor_kind", "actor_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_kind: Mapped[str] = mapped_column(sa.String(20))  # user, token, integration, system, anonymous
    actor_id: Mapped[int | None]
    actor_label: Mapped[str] = mapped_column(sa.String(300), default="")
    kind: Mapped[str] = mapped_column(sa.String(60), index=True)  # the event's name
    object_type: Mapped[str] = mapped_column(sa.String(40))
    object_id: Mapped[int | None]
    object_label: Mapped[str] = mapped_column(sa.String(300), default="")
    changes: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # {field: [before, after]}
    address: Mapped[str | None] = mapped_column(sa.String(64))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))
