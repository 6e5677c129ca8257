"""user session version: a counter in every session and remember cookie; bumping it signs the user out everywhere.

Existing users start at 0. Sessions signed before this revision carry no version and are refused once (sign in again).

Revision ID: 0009_session_version
Revises: 1795987206
Create Date: 2026-11-29 21:30:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009_session_version'
down_revision: str | Sequence[str] | None = '1795987206'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('user', sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    # Not batch mode: rebuilding `user` on SQLite would cascade deletes through its foreign keys.
    op.drop_column('user', 'session_version')
