"""Realistic, reproducible demo data for `incidents demo`: teams, services, users and incidents with timelines.

Everything goes through the real services so the data obeys the same rules as production data. The loader is a
list of steps over one `DemoContext`; a later capability (alerts, post-mortems, action items) adds its own step
to `STEPS` and reads what the earlier steps left in the context.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.auth import services as auth
from incidents.auth.models import Role, User
from incidents.catalog import services as catalog
from incidents.catalog.models import Service, Team
from incidents.database import utcnow
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, IncidentRole, Severity, Status, TimelineEntry

SEED = 20240901
DEMO_PASSWORD = "demo-incidents-2024"  # noqa: S105 - printed on purpose: a shared password for throwaway demo data
DEMO_DOMAIN = "demo.example.com"
INCIDENT_COUNT = 40
DAYS = 90

TEAMS = {
    "payments": ("Payments", "Checkout, card processing and refunds."),
    "search": ("Search", "Indexing, ranking and the search API."),
    "platform": ("Platform", "Identity, edge, databases and the deploy pipeline."),
    "mobile": ("Mobile", "iOS and Android apps and their backend-for-frontend."),
}

SERVICES = {  # slug: (name, team slug, description)
    "checkout-api": ("Checkout API", "payments", "Cart, order placement and payment orchestration."),
    "payment-gateway": ("Payment Gateway", "payments", "Talks to card acquirers and PSPs."),
    "refunds-worker": ("Refunds Worker", "payments", "Asynchronous refunds and chargebacks."),
    "search-indexer": ("Search Indexer", "search", "Streams catalogue changes into the search cluster."),
    "search-api": ("Search API", "search", "Query parsing, ranking and autocomplete."),
    "auth": ("Auth", "platform", "Sign-in, sessions, OAuth and API keys."),
    "edge-proxy": ("Edge Proxy", "platform", "TLS termination, routing and rate limits."),
    "postgres-primary": ("Postgres Primary", "platform", "The main OLTP database cluster."),
    "mobile-bff": ("Mobile BFF", "mobile", "Backend-for-frontend of the mobile apps."),
    "push-notifications": ("Push Notifications", "mobile", "APNs and FCM fan-out."),
}

USERS = [  # key, name, role, team slug (None: cross-team)
    ("admin", "Ada Lovelace", Role.ADMIN, None),
    ("priya", "Priya Natarajan", Role.RESPONDER, "payments"),
    ("marco", "Marco Rossi", Role.RESPONDER, "payments"),
    ("sofia", "Sofia Lindqvist", Role.RESPONDER, "search"),
    ("kwame", "Kwame Mensah", Role.RESPONDER, "search"),
    ("jonas", "Jonas Weber", Role.RESPONDER, "platform"),
    ("aiko", "Aiko Tanaka", Role.RESPONDER, "platform"),
    ("lucas", "Lucas Oliveira", Role.RESPONDER, "mobile"),
    ("emma", "Emma Dubois", Role.RESPONDER, "mobile"),
    ("victor", "Victor Viewer", Role.VIEWER, None),
]


@dataclass(frozen=True)
class Scenario:
    """One kind of incident that happens to a service; notes are written in order through its life."""

    service: str
    title: str
    summary: str
    tags: tuple[str, ...]
    notes: tuple[str, ...] = ()
    deploy: str | None = None  # a deploy or rollback worth a timeline entry


SCENARIOS = [
    Scenario("checkout-api", "Checkout returns 500 for a share of card payments",
             "Customers see **\"Something went wrong\"** after pressing *Pay*.\n\n"
             "- Error rate on `POST /orders` rose from 0.2 % to 14 %\n- Only card payments; PayPal unaffected",
             ("customer-facing", "payments", "5xx"),
             ("Error budget for checkout burnt 30 % in 20 minutes.",
              "Traces show `PaymentIntentTimeout` from the gateway client after 2 s.",
              "Rolled back checkout-api to the previous release; errors are dropping."),
             deploy="Rolled back checkout-api v2.41.0 -> v2.40.3"),
    Scenario("payment-gateway", "Card authorisations timing out with acquirer",
             "Authorisation latency p99 above **8 s** for one acquirer; retries double the load.\n\n"
             "> The acquirer's status page reports degraded performance in EU-West.",
             ("third-party", "payments", "latency"),
             ("Opened a ticket with the acquirer (#A-55812).",
              "Shifted 70 % of traffic to the secondary acquirer via routing rules.",
              "Acquirer confirms the fault is fixed; traffic split back to normal.")),
    Scenario("refunds-worker", "Refund jobs stuck in the queue",
             "Refunds older than 2 hours are still `pending`. Queue depth: ~18k jobs.",
             ("queue", "payments", "backlog"),
             ("A poison message makes every worker crash-loop on the same job.",
              "Moved the message to the dead-letter queue; workers draining at 400 jobs/s.")),
    Scenario("checkout-api", "Duplicate orders created on retry",
             "Some customers were charged twice. The idempotency key was not sent by the new web client.",
             ("data-integrity", "payments", "customer-facing"),
             ("Around 230 orders affected so far; support is refunding them.",
              "Hotfix sends the idempotency key again; verifying with synthetic orders."),
             deploy="Deployed web-client hotfix v5.12.1"),
    Scenario("search-indexer", "Search index lagging behind the catalogue",
             "New and updated products take **over an hour** to show up in search (normally < 1 min).",
             ("freshness", "search", "lag"),
             ("Consumer lag on `catalogue-changes` is 2.1M messages.",
              "One partition is stuck on an oversized document; skipping it and reindexing that product.")),
    Scenario("search-api", "Search results empty for queries with accents",
             "Queries such as `café` or `über` return no results after the analyser change.",
             ("relevance", "search", "regression"),
             ("The new analyser drops the ASCII folding filter.",
              "Reverted the analyser settings and reopened the index."),
             deploy="Reverted search analyser config to r1187"),
    Scenario("search-api", "Autocomplete p95 latency above 1 s",
             "Autocomplete feels sluggish; p95 at 1.3 s against a 150 ms objective.",
             ("latency", "search"),
             ("Cache hit rate dropped to 12 % after the cache cluster was resized.",
              "Warmed the cache with the top 50k prefixes; p95 back to 120 ms.")),
    Scenario("auth", "Users logged out and unable to sign in",
             "Sign-in fails with `invalid_grant` for **all** users on web and mobile.\n\n"
             "Impact: nobody can start a new session; existing sessions keep working until expiry.",
             ("customer-facing", "auth", "outage"),
             ("The signing key rotated early; the JWKS endpoint serves only the new key.",
              "Published both keys in JWKS; sign-ins recovering.",
              "Added an alert on JWKS key count < 2.")),
    Scenario("auth", "Elevated 401s on the public API",
             "About 6 % of API calls with valid keys get 401.",
             ("api", "auth"),
             ("Only requests routed to one of three auth replicas fail.",
              "That replica has a stale key cache; restarted it.")),
    Scenario("edge-proxy", "TLS certificate expiring on api.example.com",
             "The certificate expires in 36 hours and automatic renewal failed twice.",
             ("tls", "edge", "toil"),
             ("The DNS challenge fails because the API token for the DNS provider was revoked.",
              "New token installed; certificate renewed and deployed.")),
    Scenario("edge-proxy", "Elevated 502s from the edge after config push",
             "A share of requests to every service returns **502 Bad Gateway**.",
             ("edge", "5xx", "customer-facing"),
             ("The new upstream keep-alive timeout is longer than the backends' idle timeout.",
              "Rolled back the edge configuration."),
             deploy="Rolled back edge-proxy config to revision 3f9c2a1"),
    Scenario("postgres-primary", "Primary database CPU at 100 %",
             "Every service that writes to the main cluster is slow; checkout p99 at 4 s.",
             ("database", "capacity"),
             ("A new report query does a sequential scan on `orders` every 30 s.",
              "Disabled the report; CPU back to 35 %.",
              "Index `orders(created_at, status)` created concurrently.")),
    Scenario("postgres-primary", "Replication lag on read replicas",
             "Read replicas lag by up to 9 minutes; users see stale order statuses.",
             ("database", "replication"),
             ("A long-running vacuum on a replica blocks WAL replay.",
              "Cancelled the vacuum; lag back under 1 s.")),
    Scenario("postgres-primary", "Disk usage at 92 % on the primary",
             "The WAL volume is filling up; at the current rate it is full in about 5 hours.",
             ("database", "disk", "capacity"),
             ("A replication slot of a decommissioned consumer retains 400 GB of WAL.",
              "Dropped the orphaned slot; disk at 48 %.")),
    Scenario("mobile-bff", "Android app crashes on launch for version 8.3.0",
             "Crash-free sessions on Android dropped to **91 %**. iOS is not affected.",
             ("mobile", "android", "crash"),
             ("The BFF returns `null` for `banner.image` and the new app version does not handle it.",
              "BFF now omits empty banners; crash rate back to baseline."),
             deploy="Deployed mobile-bff v1.88.2 with a null-safe banner payload"),
    Scenario("mobile-bff", "Home feed slow to load on mobile",
             "Home feed p95 at 3.8 s; the BFF fans out to 14 services per request.",
             ("mobile", "latency"),
             ("The recommendations call lost its timeout in the last refactor.",
              "Restored a 300 ms timeout with a fallback to popular items.")),
    Scenario("push-notifications", "Push notifications delayed by up to 40 minutes",
             "Order-shipped and login-code notifications arrive late.",
             ("mobile", "notifications", "queue"),
             ("APNs connection pool exhausted after a certificate reload.",
              "Restarted the senders with a larger pool; backlog drained.")),
    Scenario("push-notifications", "Duplicate push notifications sent",
             "Some users received the same notification 3–5 times.",
             ("mobile", "notifications"),
             ("A retry loop re-sends on timeout without checking the delivery receipt.",)),
    Scenario("checkout-api", "Promo codes not applied at checkout",
             "Valid promo codes show *\"Code not recognised\"*; marketing campaign started an hour ago.",
             ("promotions", "payments"),
             ("The promotions cache was not invalidated after the campaign was created.",
              "Flushed the cache; codes apply correctly.")),
    Scenario("search-indexer", "Reindex job failing nightly",
             "The nightly full reindex has failed three nights in a row; search still serves yesterday's index.",
             ("batch", "search"),
             ("The job hits the memory limit when building synonyms.",)),
]

# Minutes between milestones, by severity: (detect, acknowledge, investigate, mitigate, resolve) as (low, high).
PACE = {
    Severity.SEV1: ((1, 6), (1, 5), (1, 4), (20, 90), (15, 120)),
    Severity.SEV2: ((2, 12), (2, 10), (2, 8), (30, 180), (20, 240)),
    Severity.SEV3: ((5, 30), (5, 30), (5, 20), (60, 480), (30, 600)),
    Severity.SEV4: ((10, 120), (10, 120), (10, 60), (120, 1440), (60, 2880)),
}
STATUS_PATH = [Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED, Status.RESOLVED, Status.CLOSED]


@dataclass
class DemoContext:
    """What the steps share: the session, a seeded random source, one `now`, and the rows made so far."""

    session: Session
    rng: random.Random
    now: datetime
    password_hash: str = ""
    teams: dict[str, Team] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    incidents: list[Incident] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def demo_email(key: str) -> str:
    return f"{key}@{DEMO_DOMAIN}"


def load_catalog(ctx: DemoContext) -> None:
    """Teams and services; rows that already exist under the same slug are reused, not duplicated."""
    for slug, (name, description) in TEAMS.items():
        existing = ctx.session.scalar(sa.select(Team).where(Team.slug == slug))
        ctx.teams[slug] = existing or catalog.create_team(ctx.session, name=name, slug=slug, description=description)
    for slug, (name, team, description) in SERVICES.items():
        existing = ctx.session.scalar(sa.select(Service).where(Service.slug == slug))
        ctx.services[slug] = existing or catalog.create_service(
            ctx.session, name=name, slug=slug, team_id=ctx.teams[team].id, description=description)
    ctx.lines.append(f"Teams: {', '.join(t.name for t in ctx.teams.values())}")
    ctx.lines.append(f"Services: {', '.join(ctx.services)}")


def load_users(ctx: DemoContext) -> None:
    """Demo accounts of every role; Argon2 is slow on purpose, so the shared password is hashed once."""
    ctx.password_hash = auth.hash_password(DEMO_PASSWORD)
    ctx.lines.append(f"Users (password for all: {DEMO_PASSWORD}):")
    for key, name, role, team in USERS:
        user = User(email=demo_email(key), name=name, role=role, password_hash=ctx.password_hash)
        ctx.session.add(user)
        ctx.users[key] = user
        ctx.lines.append(f"  {user.email:<28} {role.value:<10} {TEAMS[team][0] if team else ''}".rstrip())
    ctx.session.flush()


def _team_people(ctx: DemoContext, team: str) -> list[User]:
    return [ctx.users[key] for key, _, role, t in USERS if t == team and role == Role.RESPONDER]


def _plan(ctx: DemoContext) -> list[tuple[Scenario, Severity, Status, datetime]]:
    """Which scenarios happen when, with which severity and final status; every severity and status appears."""
    rng = ctx.rng
    picks = [SCENARIOS[i % len(SCENARIOS)] for i in range(INCIDENT_COUNT)]
    rng.shuffle(picks)
    severities = list(Severity) + rng.choices(list(Severity), weights=(1, 3, 5, 3), k=INCIDENT_COUNT - 4)
    rng.shuffle(severities)
    # Newest first: the latest incidents are still open, older ones resolved or closed.
    open_statuses = [Status.TRIGGERED, Status.ACKNOWLEDGED, Status.INVESTIGATING, Status.MITIGATED] * 2
    ages = sorted(rng.uniform(0.05, DAYS) for _ in range(INCIDENT_COUNT))
    plan = []
    for i, (scenario, severity, age) in enumerate(zip(picks, severities, ages, strict=True)):
        if i < len(open_statuses):
            status = open_statuses[i]
        elif age < 7 or i % 4 == 0:
            status = Status.RESOLVED
        else:
            status = Status.CLOSED
        plan.append((scenario, severity, status, ctx.now - timedelta(days=age)))
    plan.reverse()  # create oldest first, so ids grow with time like a real installation
    return plan


def _milestones(ctx: DemoContext, severity: Severity, status: Status, started: datetime) -> list[datetime]:
    """Started, detected, then one time per status on the way to `status`, shifted back to end before now."""
    rng = ctx.rng
    times = [started]
    for low, high in PACE[severity]:
        times.append(times[-1] + timedelta(minutes=rng.uniform(low, high)))
    times.append(times[-1] + timedelta(days=rng.uniform(1, 5)))  # closed after the review
    needed = 2 + (STATUS_PATH.index(status) + 1 if status != Status.TRIGGERED else 0)
    times = times[:needed]
    latest = ctx.now - timedelta(minutes=rng.uniform(3, 30))
    if times[-1] > latest:
        shift = times[-1] - latest
        times = [t - shift for t in times]
    return times


def _between(start: datetime, end: datetime, frac: float) -> datetime:
    return start + (end - start) * frac


def _backdate_last_entry(ctx: DemoContext, incident: Incident, at: datetime) -> None:
    """Services that take no `at` (roles, edits) stamp now; move their entry to when it happened in the story."""
    entry = ctx.session.scalar(sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident.id)
                               .order_by(TimelineEntry.id.desc()).limit(1))
    entry.occurred_at = at


def load_incidents(ctx: DemoContext) -> None:
    """Incidents over the last DAYS days, driven through the real status machine with historical times."""
    s, rng = ctx.session, ctx.rng
    for scenario, severity, status, started in _plan(ctx):
        service = ctx.services[scenario.service]
        team = SERVICES[scenario.service][1]
        people = _team_people(ctx, team)
        commander, scribe = rng.sample(people, 2)
        comms = ctx.users["admin"] if severity in (Severity.SEV1, Severity.SEV2) else scribe
        times = _milestones(ctx, severity, status, started)
        incident = incidents.create_incident(
            s, title=scenario.title, severity=severity, summary=scenario.summary, service_id=service.id,
            tags=scenario.tags, started_at=times[0], detected_at=times[1], created_by=commander)
        incident.created_at = times[1]  # declared when detected, not when this loader ran
        notes = list(scenario.notes)
        bounds = [*times, ctx.now]
        for k, step in enumerate(STATUS_PATH[:len(times) - 2]):
            prev, at, nxt = bounds[k + 1], bounds[k + 2], bounds[k + 3]
            # Entries without a milestone of their own go a fraction of the way to the next (or from the previous).
            if step == Status.ACKNOWLEDGED:
                incidents.acknowledge_incident(s, incident, by=commander, at=at)
                incidents.set_role(s, incident, IncidentRole.COMMANDER, commander.id, by=commander)
                _backdate_last_entry(ctx, incident, _between(at, nxt, 0.1))
                if severity in (Severity.SEV1, Severity.SEV2, Severity.SEV3):
                    incidents.set_role(s, incident, IncidentRole.COMMS_LEAD, comms.id, by=commander)
                    _backdate_last_entry(ctx, incident, _between(at, nxt, 0.2))
                    incidents.set_role(s, incident, IncidentRole.SCRIBE, scribe.id, by=commander)
                    _backdate_last_entry(ctx, incident, _between(at, nxt, 0.3))
            elif step == Status.INVESTIGATING:
                incidents.investigate_incident(s, incident, by=commander, at=at)
                if notes:
                    incidents.add_note(s, incident, notes.pop(0), by=scribe, occurred_at=_between(at, nxt, 0.2))
            elif step == Status.MITIGATED:
                if scenario.deploy:
                    incidents.add_timeline_entry(s, incident, EntryKind.DEPLOY, scenario.deploy, author=commander,
                                                 occurred_at=_between(at, prev, 0.3),
                                                 data={"service": scenario.service})
                while len(notes) > 1:
                    incidents.add_note(s, incident, notes.pop(0), by=scribe, occurred_at=_between(at, prev, 0.1))
                incidents.mitigate_incident(s, incident, by=commander, at=at)
            elif step == Status.RESOLVED:
                if notes:
                    incidents.add_note(s, incident, notes.pop(0), by=commander, occurred_at=_between(at, prev, 0.1))
                incidents.resolve_incident(s, incident, by=commander, at=at)
            elif step == Status.CLOSED:
                incidents.close_incident(s, incident, by=commander, at=at)
        ctx.incidents.append(incident)
    counts = {st: sum(i.status == st for i in ctx.incidents) for st in Status}
    ctx.lines.append(f"Incidents: {len(ctx.incidents)} over the last {DAYS} days ("
                     + ", ".join(f"{n} {st.value}" for st, n in counts.items()) + ")")


def load_postmortems(ctx: DemoContext) -> None:
    from incidents.action_item.demo import load_demo_postmortems

    ctx.session.flush()
    ctx.lines.append(load_demo_postmortems(ctx.session))


def load_debt_history(ctx: DemoContext) -> None:
    from incidents.report.demo import load_debt_history as load

    ctx.session.flush()
    ctx.lines.append(load(ctx.session, ctx.rng, ctx.now))


STEPS: list[Callable[[DemoContext], None]] = [load_catalog, load_users, load_incidents, load_postmortems,
                                              load_debt_history]


def load_demo(session: Session, *, seed: int = SEED, now: datetime | None = None) -> str:
    """Load the demo data once (the caller commits); a second run changes nothing and says so."""
    marker = demo_email(USERS[0][0])
    if auth.get_user_by_email(session, marker) is not None:
        return (f"Demo data is already loaded (found {marker}); nothing changed.\n"
                f"Sign in as any {DEMO_DOMAIN} user with the password {DEMO_PASSWORD}.")
    ctx = DemoContext(session=session, rng=random.Random(seed), now=now or utcnow())
    for step in STEPS:
        step(ctx)
    session.flush()
    return "Demo data loaded.\n" + "\n".join(ctx.lines)
