"""slack: inbound dedup keys, the incident's channel and pinned summary, the outbox of Web API calls.

Slack retries events (same event_id) and users double-click: `slack_inbound.key` is unique so a repeat is
recognised. `slack_channel` links an incident to its channel (one each way) and the summary message's ts.
`slack_outbox` keys every outbound action so a retried or killed job resumes instead of doing it twice.
Existing rows: none touched.

Revision ID: 0014_slack
Revises: 0013_incident_war_room
Create Date: 2026-11-30 04:20:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0014_slack'
down_revision: str | Sequence[str] | None = '0013_incident_war_room'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        'slack_inbound',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=30), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_inbound')),
        sa.UniqueConstraint('key', name=op.f('uq_slack_inbound_key')),
    )
    op.create_table(
        'slack_channel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('incident_id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('summary_ts', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_slack_channel_incident_id_incident'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_channel')),
        sa.UniqueConstraint('channel_id', name=op.f('uq_slack_channel_channel_id')),
        sa.UniqueConstraint('incident_id', name=op.f('uq_slack_channel_incident_id')),
    )
    op.create_table(
        'slack_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=200), nullable=False),
        sa.Column('incident_id', sa.Integer(), nullable=True),
        sa.Column('method', sa.String(length=60), nullable=False),
        sa.Column('state', sa.Enum('pending', 'sending', 'done', 'failed', name='outboxstate', native_enum=False,
                                   length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_slack_outbox_incident_id_incident'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_outbox')),
        sa.UniqueConstraint('key', name=op.f('uq_slack_outbox_key')),
    )
    op.create_index('ix_slack_outbox_state', 'slack_outbox', ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_slack_outbox_state', table_name='slack_outbox')
    op.drop_table('slack_outbox')
    op.drop_table('slack_channel')
    op.drop_table('slack_inbound')
