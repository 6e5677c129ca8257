"""Demo post-mortems with their action items for `incidents demo`: realistic reviews in every state on resolved
and closed incidents (here, above both packages, because it builds post-mortems and their items together)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.action_item import services as items
from incidents.auth.models import Role, User
from incidents.database import utcnow
from incidents.incident.models import Incident, Severity, Status
from incidents.postmortem import editing, review
from incidents.postmortem.models import Postmortem, PostmortemStatus, SectionKind

# Each story fills Markdown sections by key (missing keys fall back to "summary"-style text), and brings
# its contributing factors and action items.
_STORIES = [
    {
        "text": {
            "summary": "A configuration push changed the connection-pool size for {service} from 50 to 5. Requests "
                       "queued, and about a third of them timed out until the change was rolled back.",
            "detection": "The latency SLO burn-rate alert paged the on-call engineer eleven minutes after the push. "
                         "The dashboard showed queueing but not the pool size, so the first suspect was the database.",
            "response": "The responders compared the last deploys with the start of impact, found the config push and "
                        "rolled it back. Recovery was visible within two minutes.",
            "went_well": "- The rollback was one command and well rehearsed.\n- Status page updated within 15 minutes.",
            "went_poorly": "- The config change had no canary stage.\n- Pool saturation had no graph.",
            "lucky": "The push happened at low traffic; at peak the queue would have exhausted memory.",
            "lessons": "Configuration is code: it needs the same staged rollout and review as a deploy.",
            "impact": "- Customers affected: ~1,800\n- Requests failed: 42,000 (31% at worst)\n"
                      "- SLO: 30-day budget 40% spent",
        },
        "factors": [("change", "Config pushes skip the canary stage used for code deploys."),
                    ("monitoring-gap", "No alert or graph for connection-pool saturation.")],
        "items": [("Route config pushes through the canary pipeline", "prevent", "high", 5),
                  ("Graph and alert on pool saturation per service", "detect", "medium", 2)],
    },
    {
        "text": {
            "summary": "Our payment provider's tokenisation API answered slowly for 35 minutes. Checkout on {service} "
                       "waited on it without a timeout, so web workers filled up and unrelated pages slowed too.",
            "detection": "A customer-support spike came before any alert: our client-side error rate was fine because "
                         "requests hung instead of failing.",
            "response": "We lowered the HTTP timeout by feature flag, then turned on the queued-checkout fallback.",
            "went_well": "- The fallback existed and worked the first time.",
            "went_poorly": "- The vendor status page stayed green throughout.",
            "lucky": "Only one region used the slow endpoint.",
            "lessons": "Every outbound call needs a timeout and a budget; hanging is worse than failing.",
            "impact": "- Customers affected: ~650 checkouts delayed\n- Requests failed: 3,100",
        },
        "factors": [("dependency", "Provider latency rose from 200 ms to 20 s."),
                    ("configuration", "The client had no timeout set (library default: none)."),
                    ("monitoring-gap", "We alert on errors, not on slow outbound calls.")],
        "items": [("Set explicit timeouts on every outbound HTTP client", "prevent", "urgent", 3),
                  ("Alert on p99 latency of outbound dependencies", "detect", "high", 2),
                  ("Write a runbook for the queued-checkout fallback", "process", "medium", 1)],
    },
    {
        "text": {
            "summary": "A nightly batch job ran twice after a scheduler fail-over on {service}, sending duplicate "
                       "e-mails to about 12,000 customers.",
            "detection": "Customers replied to the duplicate e-mails; the job itself reported success both times.",
            "response": "We paused the scheduler, confirmed no further duplicates were queued, and sent an apology.",
            "lessons": "Jobs must be safe to run twice; fail-over makes 'exactly once' a promise we cannot keep.",
            "impact": "- Customers affected: 12,000 duplicate e-mails\n- Requests failed: none",
        },
        "factors": [("process", "The fail-over runbook does not mention in-flight jobs."),
                    ("capacity", "The primary scheduler ran out of memory, which triggered the fail-over.")],
        "items": [("Make the mailing job idempotent per customer and day", "repair", "high", 3),
                  ("Add in-flight job checks to the fail-over runbook", "process", "low", 1)],
    },
]

_COMMENTS = ["Could we say what the dashboard showed at the time, rather than what we know now?",
             "Nice and clear. Is there a figure for failed requests?"]


def _fill(session: Session, pm: Postmortem, story: dict, author: User, owners: list[User], *, complete: bool) -> None:
    service = pm.incident.service.name if pm.incident.service else "the service"
    for section in pm.sections:
        if section.kind in (SectionKind.MARKDOWN, SectionKind.IMPACT):
            text = story["text"].get(section.key)
            if text is None and section.kind == SectionKind.MARKDOWN and (complete or section.key == "summary"):
                text = story["text"]["summary"] if section.position == 0 else story["text"]["lessons"]
            if text and (complete or section.position < 3):
                editing.save_section(session, pm, section.key, text.format(service=service), section.version,
                                      by=author)
    for slug, description in story["factors"][: None if complete else 1]:
        editing.add_factor(session, pm, slug, description, by=author)
    today = utcnow().date()
    for i, (title, kind, priority, points) in enumerate(story["items"]):
        owner = owners[i % len(owners)]
        fields = {"title": title, "type": kind, "priority": priority, "estimate": points}
        if complete:
            fields |= {"owner_id": owner.id, "due_date": today + timedelta(days=14 * (i + 1))}
        items.create_action_item(session, pm, by=author, **fields)


def load_demo_postmortems(session: Session) -> str:
    """Post-mortems in every state on resolved/closed incidents that have none; safe to run twice."""
    people = list(session.scalars(sa.select(User).where(User.active.is_(True), User.role != Role.VIEWER)
                                  .order_by(User.id)))
    if not people:
        return "Post-mortems: skipped (no responders or admins to write them)."
    incidents = list(session.scalars(
        sa.select(Incident)
        .where(Incident.status.in_([Status.RESOLVED, Status.CLOSED]),
               ~sa.exists().where(Postmortem.incident_id == Incident.id))
        .order_by(Incident.resolved_at.desc().nulls_last(), Incident.id.desc())
    ))
    plan = [PostmortemStatus.PUBLISHED, PostmortemStatus.IN_REVIEW, PostmortemStatus.DRAFT]
    counts = dict.fromkeys(plan, 0)
    for n, incident in enumerate(incidents[:9]):
        state = plan[n % len(plan)]
        story = _STORIES[n % len(_STORIES)]
        author = incident.commander or people[n % len(people)]
        template = "lightweight" if incident.severity in (Severity.SEV3, Severity.SEV4) else (
            "full-blameless" if n % 2 == 0 else "pagerduty-style")
        pm = editing.start_postmortem(session, incident, template, by=author)
        _fill(session, pm, story, author, people, complete=state != PostmortemStatus.DRAFT)
        if state != PostmortemStatus.DRAFT:
            review.submit_for_review(session, pm, by=author)
            reviewer = people[(n + 1) % len(people)]
            editing.add_comment(session, pm, pm.sections[0].key, _COMMENTS[n % len(_COMMENTS)], by=reviewer)
        if state == PostmortemStatus.PUBLISHED:
            review.publish_postmortem(session, pm, by=author)
            items.update_action_item(session, pm.action_items[0], status="in_progress")
            if len(pm.action_items) > 2:
                items.update_action_item(session, pm.action_items[-1], status="done")
        counts[state] += 1
    session.flush()
    if not incidents:
        return "Post-mortems: nothing to add (every resolved incident already has one)."
    return ("Post-mortems: " + ", ".join(f"{counts[s]} {s.label}" for s in plan)
            + " (on resolved and closed incidents).")
