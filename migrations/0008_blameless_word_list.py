"""blameless word list: seed the coach's default phrases here instead of on the coach's first use, so checking a
text only reads (a read that wrote took SQLite's write lock from every webhook delivery).

Only an empty table is seeded: a list an earlier first use seeded, or admins edited, is kept as it is. The phrases
are written out below and import no app code, so later changes to the app cannot change what this revision wrote;
tests re-seed an emptied table through `seed`.

Revision ID: 1795987206
Revises: 1795705211
Create Date: 2026-11-29 21:20:06.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '1795987206'
down_revision: str | Sequence[str] | None = '1795705211'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None

# (phrase, category, suggestion)
BLAMELESS_PHRASES: list[tuple[str, str, str]] = [
    ("should have", "hindsight",
     "Hindsight makes the right move look obvious. Describe what people knew then and what made their choice "
     "reasonable: \"At the time, the dashboard showed ..., so ...\"."),
    ("should've", "hindsight", "Describe what was known at the time rather than what we know now."),
    ("could have", "hindsight", "Ask what would make the better option easier next time, rather than "
                                "what could have been done."),
    ("failed to", "blame", "Say what the system allowed or did not support: \"The deploy check did not flag "
                           "...\" instead of \"X failed to ...\"."),
    ("human error", "blame", "Human error is where an investigation starts, not where it ends. Which "
                             "conditions made the error likely or its effect large?"),
    ("careless", "blame", "Describe the conditions (time pressure, unclear signals) instead of judging care."),
    ("forgot", "blame", "Ask what would make the step hard to miss: a checklist, an automated check, a "
                        "default."),
    ("obviously", "hindsight", "What is obvious now was not then. Describe the signals as they looked at "
                               "the time."),
    ("clearly", "hindsight", "Describe the evidence instead; it was not clear to everyone at the time."),
    ("why didn't", "hindsight", "Ask \"what made X hard to see or do at the time?\" instead of \"why didn't "
                                "...?\"."),
    ("why did not", "hindsight", "Ask \"what made X hard to see or do at the time?\" instead."),
    ("negligence", "blame", "Describe the gap in tooling or process that let this happen."),
    ("mistake by", "blame", "Describe the action and its context, not who made it."),
    ("fault of", "blame", "Incidents have several contributing factors; describe them instead of a fault."),
    ("blame", "blame", "Focus on how the system made the outcome possible, not on who is to blame."),
    ("just needed to", "hindsight", "\"Just\" hides the real difficulty; describe what the task involved."),
]


def seed(connection: sa.Connection) -> int:
    """Put the default word list into an empty `blameless_phrase` table; a list someone has edited is left alone.
    Core SQL on the columns this revision knows. Returns the rows added."""
    table = sa.table("blameless_phrase", sa.column("phrase"), sa.column("category"), sa.column("suggestion"),
                     sa.column("active"))
    if connection.scalar(sa.select(sa.func.count()).select_from(table)):
        return 0
    rows = [{"phrase": p, "category": c, "suggestion": s, "active": True} for p, c, s in BLAMELESS_PHRASES]
    connection.execute(table.insert(), rows)
    return len(rows)


def upgrade() -> None:
    """Seed the default word list into an empty table."""
    seed(op.get_bind())


def downgrade() -> None:
    """Nothing: the phrases stay (0005's downgrade drops the table), as they would after a first use."""
