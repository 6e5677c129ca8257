"""alert sources: what the sources of issue 13 need of an integration and an alert.

An integration gets the secret its sender signs with (nullable: OpsGenie and Rollbar do not sign), the sender's site
URL (links for bodies that name no site) and a JSON object of per-source options. An alert gets the firing episode
it is in (`occurrence`, Alertmanager's startsAt: a repeat of the same episode is not another occurrence) and the
tags its sender gave it. Existing rows: no secret, no site, no options, no episode, no tags.

Revision ID: 0011_alert_sources
Revises: 0010_postmortem_defaults
Create Date: 2026-11-30 01:30:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0011_alert_sources'
down_revision: str | Sequence[str] | None = '0010_postmortem_defaults'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.add_column('integration', sa.Column('secret', sa.String(length=255), nullable=True))
    op.add_column('integration', sa.Column('site_url', sa.String(length=500), nullable=True))
    op.add_column('integration', sa.Column('options', sa.JSON(), server_default='{}', nullable=False))
    op.add_column('alert', sa.Column('occurrence', sa.String(length=100), nullable=True))
    op.add_column('alert', sa.Column('tags', sa.JSON(), server_default='[]', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    # Not batch mode: rebuilding `alert` or `integration` on SQLite would cascade deletes through foreign keys.
    op.drop_column('alert', 'tags')
    op.drop_column('alert', 'occurrence')
    op.drop_column('integration', 'options')
    op.drop_column('integration', 'site_url')
    op.drop_column('integration', 'secret')
