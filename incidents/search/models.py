"""The search index: one document per incident (title; summary and notes) and per post-mortem (title; sections,
factors and action items), rebuilt from its sources in the transaction that changed them.

The text lives here once; the full-text structure over it differs by database and is made by migration 0015:
SQLite has the FTS5 table `search_fts` (external content: it reads `title`/`body` from this table, kept in step by
triggers), PostgreSQL the generated column `tsv` (title weight A, body B) with a GIN index. Neither is part of
this model (see incidents.database.include_in_migrations)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from incidents.database import Base, UTCDateTime, str_enum


class DocKind(StrEnum):
    INCIDENT = "incident"
    POSTMORTEM = "postmortem"


def doc_id(kind: DocKind | str, target_id: int) -> int:
    """A document's id says what it indexes: twice the incident's id, or twice the post-mortem's plus one. So the
    full-text index alone (its rowid) answers "which incident" and "which kind", with no lookup of the rows."""
    return 2 * target_id + (DocKind(kind) == DocKind.POSTMORTEM)


class SearchDocument(Base):
    __tablename__ = "search_document"
    __table_args__ = (
        sa.Index("ix_search_document_kind_created", "kind", "created_at", "id"),
        sa.Index("ix_search_document_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # doc_id(kind, target_id)
    kind: Mapped[DocKind] = mapped_column(str_enum(DocKind))
    target_id: Mapped[int]  # the incident's or the post-mortem's id
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the target's: recency order without a join
    title: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
