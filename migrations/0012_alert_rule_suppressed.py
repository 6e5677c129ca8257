"""alert rule suppressed: an alert a routing rule suppressed says so (and by which rule) in `suppressed`.

Suppressed alerts are stored and counted like any other; nothing else happens to them, and this column is how the
alert pages tell them from alerts no rule acted on. Existing rows: not suppressed.

Revision ID: 0012_alert_rule_suppressed
Revises: 0011_alert_sources
Create Date: 2026-11-30 01:45:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0012_alert_rule_suppressed'
down_revision: str | Sequence[str] | None = '0011_alert_sources'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('alert', sa.Column('suppressed', sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    # Not batch mode: rebuilding `alert` on SQLite would cascade deletes through foreign keys.
    op.drop_column('alert', 'suppressed')
