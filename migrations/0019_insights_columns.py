"""insights columns: on SQLite the whole-second durations become plain columns kept by triggers.

SQLite never reads a generated column (virtual or stored) from an index: every insights query over a period
fetched each incident's row and re-parsed two timestamps per metric. As plain INTEGER columns written by an
AFTER INSERT trigger and an AFTER UPDATE OF <milestones> trigger (the same expression as 0015, end - start in
whole seconds, never negative, NULL until the end milestone), `ix_incident_insights` covers those queries. The
existing values are filled once, set-based. PostgreSQL keeps its stored generated columns (its index-only scans
read them); nothing changes there.

Revision ID: 0019_insights_columns
Revises: 0018_audit
Create Date: 2026-11-30 09:30:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0019_insights_columns'
down_revision: str | Sequence[str] | None = '0018_audit'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None

SPANS = {
    'seconds_to_detect': ('started_at', 'detected_at'),
    'seconds_to_acknowledge': ('detected_at', 'acknowledged_at'),
    'seconds_to_mitigate': ('started_at', 'mitigated_at'),
    'seconds_to_resolve': ('started_at', 'resolved_at'),
}
MILESTONES = sorted({col for pair in SPANS.values() for col in pair})
INDEX_COLUMNS = ['started_at', 'severity', 'team_id', 'service_id', 'source', 'repeat_of_id', *SPANS]
TRIGGERS = ('incident_seconds_on_insert', 'incident_seconds_on_update')


def _micros(col: str) -> str:
    return (f"(CAST(strftime('%s', substr({col}, 1, 19)) AS INTEGER) * 1000000"
            f" + CAST(substr({col}, 21, 6) AS INTEGER))")


def _expression(start: str, end: str) -> str:
    return f"CASE WHEN {end} < {start} THEN 0 ELSE ({_micros(end)} - {_micros(start)}) / 1000000 END"


def _assignments(row: str = '') -> str:
    return ', '.join(f"{name} = {_expression(row + start, row + end)}" for name, (start, end) in SPANS.items())


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    op.drop_index('ix_incident_insights', table_name='incident')
    for name in SPANS:
        op.execute(f'ALTER TABLE incident DROP COLUMN {name}')
        op.execute(f'ALTER TABLE incident ADD COLUMN {name} INTEGER')
    op.execute(f'UPDATE incident SET {_assignments()}')
    op.execute(f'CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON incident BEGIN '
               f'UPDATE incident SET {_assignments("NEW.")} WHERE id = NEW.id; END')
    op.execute(f'CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE OF {", ".join(MILESTONES)} ON incident BEGIN '
               f'UPDATE incident SET {_assignments("NEW.")} WHERE id = NEW.id; END')
    op.create_index('ix_incident_insights', 'incident', INDEX_COLUMNS, unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != 'sqlite':
        return
    for trigger in TRIGGERS:
        op.execute(f'DROP TRIGGER IF EXISTS {trigger}')
    op.drop_index('ix_incident_insights', table_name='incident')
    for name, (start, end) in SPANS.items():
        op.execute(f'ALTER TABLE incident DROP COLUMN {name}')
        op.add_column('incident', sa.Column(name, sa.Integer(), sa.Computed(sa.text(_expression(start, end))),
                                            nullable=True))
    op.create_index('ix_incident_insights', 'incident', INDEX_COLUMNS, unique=False)
