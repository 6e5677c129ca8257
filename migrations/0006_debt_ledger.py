"""debt ledger: when each action item was closed (done or won't do), and the weekly report's recipients.

Items already closed before this revision get their last update as the close time: the best record there is.

Revision ID: 1795705161
Revises: 1795702674
Create Date: 2026-11-26 14:59:21.202227

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '1795705161'
down_revision: str | Sequence[str] | None = '1795702674'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('report_recipient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['team.id'], name=op.f('fk_report_recipient_team_id_team'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_recipient')),
    sa.UniqueConstraint('team_id', 'email', name=op.f('uq_report_recipient_team_id_email'))
    )
    op.create_index(op.f('ix_report_recipient_team_id'), 'report_recipient', ['team_id'], unique=False)
    op.add_column('action_item', sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE action_item SET closed_at = updated_at WHERE status IN ('done', 'wont_do')")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('action_item') as batch:
        batch.drop_column('closed_at')
    op.drop_index(op.f('ix_report_recipient_team_id'), table_name='report_recipient')
    op.drop_table('report_recipient')
