"""postmortem defaults: the built-in templates and the default contributing-factor taxonomy, seeded here instead
of on first use, so reading templates or categories never writes.

Rows are inserted only where their slug is missing: a database that seeded them on first use keeps its rows as
they are (admins' edits, retired entries), and a fresh one gets them all. The rows are written out below and import
no app code, so later changes to the app cannot change what this revision wrote; tests seed an emptied database
through `seed` and hold the app to these rows (tests/postmortem/test_defaults.py).

Written in our own words after the public models (Google SRE workbook, PagerDuty, Atlassian, Etsy).

Revision ID: 0010_postmortem_defaults
Revises: 0009_session_version
Create Date: 2026-11-30 00:30:00.000000

"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010_postmortem_defaults'
down_revision: str | Sequence[str] | None = '0009_session_version'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def _s(key: str, title: str, kind: str, required: bool, guidance: str) -> dict:
    return {"key": key, "title": title, "kind": kind, "required": required, "guidance": guidance}


SUMMARY = _s("summary", "Summary", "markdown", True,
             "Two or three sentences a busy reader can stop after: what broke, for whom, for how long, and how "
             "it was fixed.\n\n- Would someone outside the team understand it?\n- Does it avoid naming people?")
IMPACT = _s("impact", "Impact", "impact", True,
            "The durations beside this box come from the incident's milestones. Add the figures only the team "
            "knows.\n\n- How many customers or requests were affected?\n- Was data lost or delayed?\n"
            "- Did we breach an SLA or SLO, and by how much?")
TIMELINE = _s("timeline", "Timeline", "timeline", True,
              "It starts from the incident's own timeline. Trim the noise, add what happened outside the tool "
              "(chat decisions, deploys, hand-overs), and keep one line that says **detected** and one that says "
              "**mitigated**.\n\n- When did impact really start, as opposed to when we noticed?\n"
              "- Where did time go between detection and mitigation?")
FACTORS = _s("factors", "Contributing factors", "factors", True,
             "Complex systems fail for several reasons at once; list each condition that made this incident "
             "possible or worse. There is no single root cause.\n\n- What made the failure possible?\n"
             "- What made it bigger or slower to fix?\n- Which safeguards did not catch it, and why did they "
             "make sense before?")
ACTIONS = _s("action_items", "Action items", "action_items", True,
             "Each item has an owner, a due date and a type. Prefer a few items that will get done over a long "
             "wish list.\n\n- Which item would have prevented this, which would have caught it sooner, which "
             "would have shortened it?")
PARTICIPANTS = _s("participants", "Participants", "participants", False,
                  "Who responded and who took part in this review, with their role. This records who holds the "
                  "context, not who is to blame.")


TEMPLATES: list[dict] = [
    {
        "slug": "full-blameless",
        "name": "Full blameless review",
        "description": "The complete review for significant incidents (SEV1/SEV2): narrative, analysis, lessons.",
        "sections": [
            SUMMARY, IMPACT, TIMELINE,
            _s("detection", "Detection", "markdown", True,
               "How did we find out: an alert, a customer, a colleague by chance?\n\n- How long did it take and "
               "what would have told us sooner?\n- Did the alert point at the right place?"),
            _s("response", "Response and recovery", "markdown", True,
               "How we got from the first page to a working service.\n\n- What did responders know at each "
               "decision point, and what did they not know?\n- Which tools, runbooks or permissions helped or "
               "got in the way?"),
            FACTORS,
            _s("went_well", "What went well", "markdown", False,
               "Name what worked so we keep doing it: quick escalation, a useful dashboard, a clean rollback."),
            _s("went_poorly", "What went poorly", "markdown", False,
               "Describe the friction in the system, not the people: confusing signals, missing access, slow "
               "tools, unclear ownership."),
            _s("lucky", "Where we got lucky", "markdown", False,
               "What kept this from being worse that we cannot count on next time? Luck is a hidden risk."),
            _s("lessons", "Lessons", "markdown", True,
               "What do we understand now about our systems that we did not before? Write lessons that would "
               "help another team."),
            ACTIONS, PARTICIPANTS,
        ],
    },
    {
        "slug": "pagerduty-style",
        "name": "PagerDuty-style",
        "description": "Overview, what happened, resolution, responders and messaging, in the order PagerDuty's "
                       "public template uses.",
        "sections": [
            _s("overview", "Overview", "markdown", True,
               "A short paragraph: what happened, the impact, the severity, and how long it lasted."),
            _s("what_happened", "What happened", "markdown", True,
               "The story of the incident in plain language, from first signal to all clear."),
            _s("resolution", "Resolution", "markdown", True,
               "How the service was restored, and whether the fix is temporary or permanent."),
            IMPACT,
            _s("responders", "Responders", "participants", False,
               "Everyone who helped: the incident commander, subject-matter experts, communications."),
            TIMELINE, FACTORS,
            _s("analysis", "What went well and what didn't", "markdown", False,
               "Two short lists. Focus on the system and the process, and on what we will change."),
            ACTIONS,
            _s("messaging", "Messaging", "markdown", False,
               "The internal and external updates we sent (status page, customer e-mail), or why none were "
               "needed."),
        ],
    },
    {
        "slug": "lightweight",
        "name": "Lightweight",
        "description": "A short review for small incidents (SEV3/SEV4): enough to learn, quick to write.",
        "sections": [
            SUMMARY,
            {**TIMELINE, "guidance": "Keep the key moments, including the **detected** and **mitigated** lines."},
            {**IMPACT, "required": False},
            FACTORS, ACTIONS,
        ],
    },
]

FACTOR_CATEGORIES: list[tuple[str, str, str]] = [
    ("change", "Change or deploy", "A code, infrastructure or data change set things in motion."),
    ("dependency", "Dependency", "An upstream service, vendor or library behaved unexpectedly."),
    ("capacity", "Capacity", "Load, quotas or resource limits were reached."),
    ("configuration", "Configuration", "A setting, feature flag or secret was wrong or drifted."),
    ("monitoring-gap", "Monitoring gap", "We lacked the signal that would have told us sooner."),
    ("process", "Process", "A procedure, hand-over or runbook did not fit the situation."),
    ("unknown", "Unknown", "We could not establish this factor yet; say what would tell us."),
]


_TEMPLATE = sa.table("postmortem_template", sa.column("slug"), sa.column("name"), sa.column("description"),
                     sa.column("sections", sa.JSON), sa.column("version"), sa.column("builtin"), sa.column("active"),
                     sa.column("created_at", sa.DateTime(timezone=True)),
                     sa.column("updated_at", sa.DateTime(timezone=True)))
_CATEGORY = sa.table("factor_category", sa.column("slug"), sa.column("name"), sa.column("description"),
                     sa.column("position"), sa.column("active"))


def template_rows() -> list[dict]:
    """The built-in templates as rows of `postmortem_template` (without timestamps)."""
    return [{"slug": t["slug"], "name": t["name"], "description": t["description"],
             "sections": [dict(s) for s in t["sections"]], "version": 1, "builtin": True, "active": True}
            for t in TEMPLATES]


def category_rows() -> list[dict]:
    """The default taxonomy as rows of `factor_category`, in display order."""
    return [{"slug": slug, "name": name, "description": description, "position": i, "active": True}
            for i, (slug, name, description) in enumerate(FACTOR_CATEGORIES)]


def seed(connection: sa.Connection) -> int:
    """Insert every default template and category whose slug is missing; returns the rows added."""
    now = datetime.now(UTC)
    added = 0
    for table, rows in ((_TEMPLATE, [{**r, "created_at": now, "updated_at": now} for r in template_rows()]),
                        (_CATEGORY, category_rows())):
        present = set(connection.scalars(sa.select(table.c.slug)))
        missing = [r for r in rows if r["slug"] not in present]
        if missing:
            connection.execute(table.insert(), missing)
        added += len(missing)
    return added


def upgrade() -> None:
    """Add the missing defaults."""
    seed(op.get_bind())


def downgrade() -> None:
    """Nothing: the rows stay, as they did after a first use before this revision (0005's downgrade drops the
    tables)."""
