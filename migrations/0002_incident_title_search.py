"""PostgreSQL: trigram index so incident title search (ILIKE '%words%') stays fast at 100k+ rows

Revision ID: 0002_title_search
Revises: 1795702171
Create Date: 2026-11-26 14:35:00

The index is PostgreSQL-only (pg_trgm, a trusted extension since PostgreSQL 13); SQLite scans titles,
which stays within budget there. It is declared in incidents.database.POSTGRESQL_ONLY_INDEXES so the
model/migration comparison ignores it.
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002_title_search"
down_revision: Union[str, Sequence[str], None] = "1795702171"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX IF NOT EXISTS ix_incident_title_trgm ON incident USING gin (title gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_incident_title_trgm")
