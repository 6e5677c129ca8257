"""blameless word list: seed the coach's default phrases here instead of on the coach's first use, so checking a
text only reads (a read that wrote took SQLite's write lock from every webhook delivery).

Only an empty table is seeded: a list an earlier first use seeded, or admins edited, is kept as it is. The
phrases come from incidents.postmortem.defaults, their one source (tests re-seed from it after emptying tables).

Revision ID: 1795987206
Revises: 1795705211
Create Date: 2026-11-29 21:20:06.000000

"""
from collections.abc import Sequence

from alembic import op

from incidents.postmortem.defaults import seed_blameless_phrases

# revision identifiers, used by Alembic.
revision: str = '1795987206'
down_revision: str | Sequence[str] | None = '1795705211'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Seed the default word list into an empty table."""
    seed_blameless_phrases(op.get_bind())


def downgrade() -> None:
    """Nothing: the phrases stay (0005's downgrade drops the table), as they would after a first use."""
