"""audit: API tokens get a scope, an expiry and the address they were last used from; the hash-chained audit log.

`api_token.scope` (read, write, admin) caps what a token may do below its owner's role. Existing tokens: the
scope of their owner's role (viewer: read, responder: write, admin: admin), so nothing they did stops working.
No expiry for them. `audit_entry` starts empty: its chain begins with the first change after the upgrade.

Revision ID: 0018_audit
Revises: 0017_accounts
Create Date: 2026-11-30 06:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0018_audit'
down_revision: str | Sequence[str] | None = '0017_accounts'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # Added with a default, then filled: no table rebuild on SQLite (which would cascade through foreign keys).
    op.add_column('api_token', sa.Column('scope', sa.Enum('read', 'write', 'admin', name='tokenscope',
                                                          native_enum=False, length=20),
                                         server_default='read', nullable=False))
    op.add_column('api_token', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_token', sa.Column('last_used_address', sa.String(length=64), nullable=True))
    op.execute("UPDATE api_token SET scope = CASE (SELECT role FROM \"user\" WHERE \"user\".id = api_token.user_id) "
               "WHEN 'admin' THEN 'admin' WHEN 'responder' THEN 'write' ELSE 'read' END")

    op.create_table(
        'audit_entry',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor_kind', sa.String(length=20), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('actor_label', sa.String(length=300), nullable=False),
        sa.Column('kind', sa.String(length=60), nullable=False),
        sa.Column('object_type', sa.String(length=40), nullable=False),
        sa.Column('object_id', sa.Integer(), nullable=True),
        sa.Column('object_label', sa.String(length=300), nullable=False),
        sa.Column('changes', sa.JSON(), nullable=True),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry')),
    )
    op.create_index('ix_audit_entry_at', 'audit_entry', ['at'])
    op.create_index('ix_audit_entry_kind', 'audit_entry', ['kind'])
    op.create_index('ix_audit_entry_object', 'audit_entry', ['object_type', 'object_id'])
    op.create_index('ix_audit_entry_actor', 'audit_entry', ['actor_kind', 'actor_id'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('audit_entry')
    # Not batch mode: rebuilding `api_token` on SQLite is not needed for a column drop on SQLite >= 3.35.
    op.drop_column('api_token', 'last_used_address')
    op.drop_column('api_token', 'expires_at')
    op.drop_column('api_token', 'scope')
