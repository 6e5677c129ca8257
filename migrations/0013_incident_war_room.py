"""incident war room: links, status updates, the next-update timer, the stakeholder link, resolution, pins.

An incident gets its chat, call and runbook links, the time its next status update is due, the resolution note
that resolving now requires, and the token of its read-only stakeholder view (unique; none until issued). Status
updates get a table of their own; people who press Subscribe on an incident get `incident_subscriber`; a
timeline entry can be pinned. Existing rows: no links, no timer, no resolution, no stakeholder link, nothing
pinned.

Revision ID: 0013_incident_war_room
Revises: 0012_alert_rule_suppressed
Create Date: 2026-11-30 03:20:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0013_incident_war_room'
down_revision: str | Sequence[str] | None = '0012_alert_rule_suppressed'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None

_STATUSES = ('triggered', 'acknowledged', 'investigating', 'mitigated', 'resolved', 'closed')


def upgrade() -> None:
    """Upgrade schema."""
    for name in ('chat_url', 'call_url', 'runbook_url'):
        op.add_column('incident', sa.Column(name, sa.String(length=500), server_default='', nullable=False))
    op.add_column('incident', sa.Column('next_update_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('incident', sa.Column('resolution', sa.Text(), server_default='', nullable=False))
    op.add_column('incident', sa.Column('status_token', sa.String(length=64), nullable=True))
    op.add_column('incident', sa.Column('status_show_names', sa.Boolean(), server_default=sa.false(),
                                        nullable=False))
    op.create_index('ix_incident_status_token', 'incident', ['status_token'], unique=True)
    op.add_column('timeline_entry', sa.Column('pinned', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        'incident_update',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('incident_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.Enum(*_STATUSES, name='status', native_enum=False, length=20), nullable=False),
        sa.Column('impact', sa.Text(), nullable=False),
        sa.Column('actions', sa.Text(), nullable=False),
        sa.Column('next_update_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('author_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['author_id'], ['user.id'], name=op.f('fk_incident_update_author_id_user')),
        sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_incident_update_incident_id_incident'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_incident_update')),
    )
    op.create_index('ix_incident_update_incident_created', 'incident_update', ['incident_id', 'created_at'])
    op.create_table(
        'incident_subscriber',
        sa.Column('incident_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incident.id'],
                                name=op.f('fk_incident_subscriber_incident_id_incident'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_incident_subscriber_user_id_user'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('incident_id', 'user_id', name=op.f('pk_incident_subscriber')),
    )


def downgrade() -> None:
    """Downgrade schema."""
    # Not batch mode: rebuilding `incident` on SQLite would cascade deletes through foreign keys.
    op.drop_table('incident_subscriber')
    op.drop_index('ix_incident_update_incident_created', table_name='incident_update')
    op.drop_table('incident_update')
    op.drop_column('timeline_entry', 'pinned')
    op.drop_index('ix_incident_status_token', table_name='incident')
    for name in ('status_show_names', 'status_token', 'resolution', 'next_update_at', 'runbook_url', 'call_url',
                 'chat_url'):
        op.drop_column('incident', name)
