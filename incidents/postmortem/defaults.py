"""Built-in templates, the default contributing-factor taxonomy and the default blameless word list.

Written in our own words after the public models (Google SRE workbook, PagerDuty, Atlassian, Etsy).
Templates and the taxonomy are seeded on first use, per table and only into an empty table, so admins' edits
always win. The word list is seeded by migration 0008 (also only into an empty table): the coach answers reads,
and a read must not write."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.postmortem.models import FactorCategory, PostmortemTemplate


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


BUILTIN_TEMPLATES: list[dict] = [
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


def ensure_defaults(session: Session) -> None:
    """Seed each empty table with its defaults; a race with another first use is harmless."""
    seeds = [
        (PostmortemTemplate, lambda: [
            PostmortemTemplate(slug=t["slug"], name=t["name"], description=t["description"],
                               sections=[dict(s) for s in t["sections"]], builtin=True)
            for t in BUILTIN_TEMPLATES]),
        (FactorCategory, lambda: [
            FactorCategory(slug=slug, name=name, description=desc, position=i)
            for i, (slug, name, desc) in enumerate(FACTOR_CATEGORIES)]),
    ]
    for model, rows in seeds:
        if session.scalar(sa.select(sa.exists().where(model.id.isnot(None)))):
            continue
        try:
            with session.begin_nested():  # a concurrent first use may have seeded it: keep theirs
                session.add_all(rows())
        except sa.exc.IntegrityError:
            pass


def seed_blameless_phrases(connection: sa.Connection) -> int:
    """Put the default word list into an empty `blameless_phrase` table (migration 0008, and tests after emptying
    it); a list someone has edited is left alone. Core SQL on the columns 0008 knows, so later model changes
    cannot break the migration. Returns the rows added."""
    table = sa.table("blameless_phrase", sa.column("phrase"), sa.column("category"), sa.column("suggestion"),
                     sa.column("active"))
    if connection.scalar(sa.select(sa.func.count()).select_from(table)):
        return 0
    rows = [{"phrase": p, "category": c, "suggestion": s, "active": True} for p, c, s in BLAMELESS_PHRASES]
    connection.execute(table.insert(), rows)
    return len(rows)
