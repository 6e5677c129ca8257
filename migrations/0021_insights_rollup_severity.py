"""insights roll-up by severity and by pairs: each severity, and each pair of team, service and severity, becomes
a facet of the roll-up, so a scope filtered by severity, or by two of the three, reads stored parts instead of
counting a year of incidents. The stored rows are emptied: without these facets they would say "no incidents
here" (a facet with no row counts as empty where the all-incidents row is current). The job worker's next refresh
(or `incidents insights refresh`) stores them again; until then the figures are counted from the incidents.

Revision ID: 0021_insights_rollup_severity
Revises: 0020_insights_rollup
Create Date: 2026-11-30 15:00:00.000000

"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0021_insights_rollup_severity'
down_revision: str | Sequence[str] | None = '0020_insights_rollup'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("DELETE FROM insights_rollup")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM insights_rollup")  # the older code would read the severity rows as unknown facets
