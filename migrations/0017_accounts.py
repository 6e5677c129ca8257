"""accounts: the OpenID identity of a user, and e-mailed invitations.

`user.oidc_issuer` and `user.oidc_subject` link an account to its identity at an OpenID provider (unique together,
as an index: adding a constraint would rebuild `user` on SQLite and cascade deletes through its foreign keys).
`invitation` holds each invitation an admin sent; its signed link works once, until it expires.
Existing rows: users keep their passwords and get no identity until they first sign in by SSO.

Revision ID: 0017_accounts
Revises: 0016_search
Create Date: 2026-11-30 06:10:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0017_accounts'
down_revision: str | Sequence[str] | None = '0016_search'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user', sa.Column('oidc_issuer', sa.String(length=255), nullable=True))
    op.add_column('user', sa.Column('oidc_subject', sa.String(length=255), nullable=True))
    op.create_index('ix_user_oidc_identity', 'user', ['oidc_issuer', 'oidc_subject'], unique=True)
    op.create_table(
        'invitation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('role', sa.Enum('viewer', 'responder', 'admin', name='role', native_enum=False, length=20),
                  nullable=False),
        sa.Column('invited_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['invited_by_id'], ['user.id'], name=op.f('fk_invitation_invited_by_id_user'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_invitation_user_id_user'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_invitation')),
    )
    op.create_index('ix_invitation_email', 'invitation', ['email'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_invitation_email', table_name='invitation')
    op.drop_table('invitation')
    op.drop_index('ix_user_oidc_identity', table_name='user')
    # Not batch mode: rebuilding `user` on SQLite would cascade deletes through its foreign keys.
    op.drop_column('user', 'oidc_subject')
    op.drop_column('user', 'oidc_issuer')
