"""insights roll-up: per day, run of days and month, the partial figures of the incidents that started in it (all,
per team, per service); an index per duration for the percentiles' exact seconds.

Starts empty: until the job worker's first refresh (`incidents insights refresh`, or the periodic job) the figures
are computed from the incidents, as before.

Revision ID: 0020_insights_rollup
Revises: 0019_insights_columns
Create Date: 2026-11-30 12:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0020_insights_rollup'
down_revision: str | Sequence[str] | None = '0019_insights_columns'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None

SECONDS = ('seconds_to_detect', 'seconds_to_acknowledge', 'seconds_to_mitigate', 'seconds_to_resolve')


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'insights_rollup',
        sa.Column('span', sa.String(length=5), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('facet', sa.String(length=24), nullable=False),
        sa.Column('version', sa.Integer(), server_default='0', nullable=False),
        sa.Column('state_version', sa.Integer(), nullable=True),
        sa.Column('volume', sa.Text(), nullable=True),
        sa.Column('response', sa.Text(), nullable=True),
        sa.Column('factors', sa.Text(), nullable=True),
        sa.Column('follow', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('span', 'day', 'facet', name=op.f('pk_insights_rollup')),
    )
    for column in SECONDS:  # partial: a new incident's unreached milestones add no entry
        op.create_index(f'ix_incident_{column}', 'incident',
                        [column, 'started_at', 'severity', 'team_id', 'service_id'], unique=False,
                        sqlite_where=sa.text(f'{column} IS NOT NULL'),
                        postgresql_where=sa.text(f'{column} IS NOT NULL'))


def downgrade() -> None:
    """Downgrade schema."""
    for column in SECONDS:
        op.drop_index(f'ix_incident_{column}', table_name='incident')
    op.drop_table('insights_rollup')
