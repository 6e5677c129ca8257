"""Bulk-generate realistic incidents (tags, timeline entries, post-mortems with factors and action items).

    python -m bench.generate_incidents --database-url sqlite:////tmp/incidents-bench/scale.sqlite3 --count 100000

Rows go in with core `insert()` executemany in batches (the ORM one-by-one would take an hour for 100k); the
catalogue and the author are made through the real services. The schema comes from the real migrations.
Post-mortems are topped up separately (for incidents past the last one that has one), so a database generated
before they existed gains them on the next run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.common import backend, bench_app, ensure_postgres_database, normalise_url, reset_database

BENCH_EMAIL = "bench@bench.example.com"
BENCH_PASSWORD = "bench-password-123"  # throwaway local benchmark account
DAYS = 3 * 365

TEAM_SERVICES = {
    "Payments": ["checkout-api", "payment-gateway", "refunds-worker", "billing", "fraud-scoring"],
    "Search": ["search-api", "search-indexer", "recommendations"],
    "Platform": ["auth", "edge-proxy", "postgres-primary", "kafka", "kubernetes", "dns"],
    "Mobile": ["mobile-bff", "push-notifications", "ios-app", "android-app"],
    "Data": ["etl-pipeline", "warehouse", "reporting"],
}
SYMPTOMS = [
    "elevated 5xx error rate", "p99 latency above objective", "timeouts to upstream", "queue backlog growing",
    "requests failing after deploy", "replication lag", "disk usage critical", "memory leak and OOM kills",
    "certificate expiring", "stale data served", "duplicate events processed", "login failures",
    "crash loop in one region", "rate limiting legitimate traffic", "connection pool exhausted",
    "partial outage in eu-west", "slow queries on hot table", "webhook deliveries failing",
]
TAGS = ["customer-facing", "latency", "5xx", "database", "third-party", "deploy", "capacity", "eu", "us",
        "mobile", "security", "data-integrity", "queue", "regression", "toil"]
SEVERITIES = (["SEV1"] * 2) + (["SEV2"] * 10) + (["SEV3"] * 50) + (["SEV4"] * 38)
# Share of resolved/closed incidents that get a post-mortem, by severity (SEV4s rarely do).
POSTMORTEM_SHARE = {"SEV1": 1.0, "SEV2": 0.8, "SEV3": 0.1, "SEV4": 0.0}
FACTOR_TEXT = {
    "change": "a deploy changed the {slug} connection settings",
    "dependency": "the upstream provider behind {slug} slowed down",
    "capacity": "{slug} hit its replica limit under the evening peak",
    "configuration": "a feature flag for {slug} drifted between regions",
    "monitoring-gap": "no alert watched replication lag on {slug}",
    "process": "the runbook for {slug} assumed a single region",
    "unknown": "we could not yet explain the first {slug} timeouts",
}
ACTIONS = [
    ("prevent", "Add a canary stage for {slug} deploys"), ("detect", "Alert on {slug} saturation before timeouts"),
    ("mitigate", "Document the {slug} failover in the runbook"), ("process", "Rehearse the {slug} rollback"),
    ("repair", "Replace the flaky {slug} health check"), ("detect", "Add a dashboard for {slug} queue depth"),
]


def prepare(url: str, reset: bool) -> tuple:
    """Migrate, then make the catalogue and the bench user through the real services (few rows)."""
    from incidents.auth import services as auth
    from incidents.catalog import services as catalog
    from incidents.catalog.models import Service, Team
    from incidents.extensions import db

    ensure_postgres_database(url)
    if reset:
        reset_database(url)
    app = bench_app(url)
    with app.app_context():
        s = db.session
        user = auth.get_user_by_email(s, BENCH_EMAIL) or auth.create_user(
            s, email=BENCH_EMAIL, name="Bench Admin", role="admin", password=BENCH_PASSWORD)
        services = []
        for team_name, slugs in TEAM_SERVICES.items():
            team = s.scalar(sa.select(Team).where(Team.slug == catalog.slugify(team_name))) or \
                catalog.create_team(s, name=team_name)
            for slug in slugs:
                svc = s.scalar(sa.select(Service).where(Service.slug == slug)) or \
                    catalog.create_service(s, name=slug.replace("-", " ").title(), slug=slug, team_id=team.id)
                services.append((svc.id, team.id, slug))
        s.commit()
        return app, user.id, services


def incident_count(url: str) -> int:
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM incident"))
    except sa.exc.DBAPIError:
        return 0
    finally:
        engine.dispose()


def _rows(rng: random.Random, first_id: int, n: int, services: list, user_id: int, now: datetime, total: int):
    """One batch of incidents with their tags and timeline rows; ids and created_at both grow, like real life."""
    incidents, tags, entries = [], [], []
    span = DAYS * 86400
    for i in range(n):
        iid = first_id + i
        # Spread evenly over DAYS, newest last, with jitter; the newest ~0.5 % are still open.
        pos = (iid - 1) / max(1, total)
        detected = now - timedelta(seconds=span * (1 - pos) + rng.uniform(0, 600))
        started = detected - timedelta(minutes=rng.uniform(0, 30))
        service_id, team_id, slug = rng.choice(services)
        severity = rng.choice(SEVERITIES)
        fresh = pos > 0.995
        status = rng.choice(["triggered", "acknowledged", "investigating", "mitigated"]) if fresh else (
            "resolved" if rng.random() < 0.15 else "closed")
        ack = detected + timedelta(minutes=rng.uniform(1, 30)) if status != "triggered" else None
        done = status in ("mitigated", "resolved", "closed")
        mitigated = ack + timedelta(minutes=rng.uniform(10, 240)) if done else None
        resolved = mitigated + timedelta(minutes=rng.uniform(5, 600)) if status in ("resolved", "closed") else None
        closed = resolved + timedelta(days=rng.uniform(1, 7)) if status == "closed" else None
        symptom = rng.choice(SYMPTOMS)
        incidents.append({
            "id": iid, "title": f"{slug}: {symptom}", "severity": severity, "status": status,
            "summary": f"**Impact:** {symptom} on `{slug}`.\n\n- detected by monitoring\n- see runbook",
            "service_id": service_id, "team_id": team_id, "created_by_id": user_id, "commander_id": user_id,
            "created_at": detected, "updated_at": closed or resolved or mitigated or ack or detected,
            "started_at": started, "detected_at": detected, "acknowledged_at": ack, "mitigated_at": mitigated,
            "resolved_at": resolved, "closed_at": closed,
        })
        for tag in rng.sample(TAGS, rng.randint(0, 3)):
            tags.append({"incident_id": iid, "name": tag})
        entry = {"incident_id": iid, "author_id": user_id, "body": "", "created_at": detected}
        entries.append(entry | {"kind": "created", "occurred_at": detected, "text": f"Incident declared ({severity})",
                                "data": {"severity": severity}})
        previous = "triggered"
        for to, at in (("acknowledged", ack), ("mitigated", mitigated), ("resolved", resolved), ("closed", closed)):
            if at is None:
                continue
            entries.append(entry | {"kind": "status", "occurred_at": at, "text": f"Status: {previous} -> {to}",
                                    "data": {"from": previous, "to": to}})
            previous = to
            if to == "acknowledged" and rng.random() < 0.4:
                entries.append(entry | {"kind": "note", "occurred_at": at + timedelta(minutes=2), "text": "Note",
                                        "body": f"Looking at `{slug}` dashboards; {symptom} confirmed.", "data": {}})
    return incidents, tags, entries


def generate(url: str, count: int, *, batch: int = 5000, seed: int = 42, reset: bool = False,
             quiet: bool = False) -> dict:
    """Top the database up to `count` incidents; returns what it did and how long it took."""
    from incidents.incident.models import Incident, IncidentTag, TimelineEntry

    url = normalise_url(url)
    t0 = time.perf_counter()
    app, user_id, services = prepare(url, reset)
    have = 0 if reset else incident_count(url)
    engine = sa.create_engine(url)
    rng = random.Random(seed + have)
    now = datetime.now(UTC)
    made = {"incidents": 0, "tags": 0, "timeline_entries": 0}
    with engine.connect() as conn:
        first = (conn.scalar(sa.select(sa.func.max(Incident.id))) or 0) + 1
    todo = max(0, count - have)
    for start in range(0, todo, batch):
        n = min(batch, todo - start)
        incidents, tags, entries = _rows(rng, first + start, n, services, user_id, now, count)
        with engine.begin() as conn:
            conn.execute(sa.insert(Incident.__table__), incidents)
            if tags:
                conn.execute(sa.insert(IncidentTag.__table__), tags)
            conn.execute(sa.insert(TimelineEntry.__table__), entries)
        made["incidents"] += n
        made["tags"] += len(tags)
        made["timeline_entries"] += len(entries)
        if not quiet:
            print(f"  {first + start + n - 1:>8} incidents ({time.perf_counter() - t0:5.1f}s)", file=sys.stderr)
    with engine.connect() as conn:
        has_postmortems = conn.scalar(sa.text("SELECT count(*) FROM postmortem")) > 0
    made |= {"postmortems": 0, "sections": 0, "factors": 0, "action_items": 0}
    if made["incidents"] or not has_postmortems:  # new incidents, or a database made before post-mortems were
        made |= generate_postmortems(engine, user_id, batch=batch, seed=seed, quiet=quiet, t0=t0)
    if made["incidents"] or made["postmortems"]:
        # Bulk rows bypass the services, so their search documents come from the same rebuild an operator runs.
        from incidents.extensions import db
        from incidents.search import services as search

        t1 = time.perf_counter()
        with app.app_context():
            search.reindex(db.session, batch=batch)
        made["search_reindex_seconds"] = round(time.perf_counter() - t1, 1)
    with engine.begin() as conn:
        if backend(url) == "postgresql":
            # Explicit ids bypass the sequences; move them past the ids so the app can create rows again.
            for table in ("incident", "postmortem"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT coalesce(max(id), 1) FROM {table}))")
    if backend(url) == "postgresql":
        # What autovacuum does soon after a bulk load (PostgreSQL 13+ vacuums after inserts too): statistics, and
        # the visibility map without which no index-only scan pays off. VACUUM cannot run in a transaction.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
    if made["incidents"] or made["postmortems"]:
        # The insights roll-up: what was stored does not count the bulk rows, so it is dropped and stored again by
        # the refresh the job worker runs.
        from incidents.extensions import db
        from incidents.insights import rollup
        from incidents.insights.models import InsightsRollup

        t1 = time.perf_counter()
        with app.app_context():
            db.session.execute(sa.delete(InsightsRollup))
            db.session.commit()
            rollup.refresh(db.session, datetime.now(UTC).date())
        made["insights_refresh_seconds"] = round(time.perf_counter() - t1, 1)
    engine.dispose()
    made["seconds"] = round(time.perf_counter() - t0, 1)
    made["total"] = have + made["incidents"]
    return made


def _templates(conn) -> dict:
    """slug -> (id, name, version, sections) of the built-in templates the bulk post-mortems copy."""
    rows = conn.execute(sa.text("SELECT id, slug, name, version, sections FROM postmortem_template "
                                "WHERE slug IN ('full-blameless', 'lightweight')"))
    out = {}
    for tid, slug, name, version, sections in rows:
        out[slug] = (tid, name, version, sections if isinstance(sections, list) else json.loads(sections))
    return out


def _postmortem_rows(rng: random.Random, incidents: list, first_pm: int, templates: dict, categories: dict,
                     user_id: int, now: datetime):
    """Post-mortems (sections, factors, action items) for one batch of incidents, decided by a seeded coin."""
    pms, sections, factors, items = [], [], [], []
    today = now.date()
    pm_id = first_pm
    for iid, title, severity, status, resolved, slug in incidents:
        if resolved is None or rng.random() >= POSTMORTEM_SHARE[severity]:
            continue
        if isinstance(resolved, str):
            resolved = datetime.fromisoformat(resolved)
        resolved = resolved if resolved.tzinfo else resolved.replace(tzinfo=UTC)
        tpl_slug = "full-blameless" if severity in ("SEV1", "SEV2") else "lightweight"
        tid, tname, tversion, tsections = templates[tpl_slug]
        created = resolved + timedelta(hours=rng.uniform(2, 48))
        roll = rng.random()
        published = created + timedelta(days=rng.uniform(1, 20))
        state = "published" if roll < 0.85 and published < now else ("in_review" if roll < 0.9 else "draft")
        published_at = published if state == "published" else None
        factor_slugs = rng.sample(sorted(categories), rng.randint(1, 3))
        symptom = title.split(": ", 1)[-1]
        body_text = {
            "summary": f"{slug} had {symptom}; customers saw errors until we rolled back.",
            "impact": f"About {rng.randint(1, 40)} % of requests to {slug} failed for {rng.randint(5, 240)} minutes.",
            "detection": f"An alert on {slug} fired; replication dashboards confirmed {symptom}.",
            "response": f"Responders drained traffic from {slug}, then restored the previous release.",
            "lessons": f"Our {slug} capacity model ignores retries; retries doubled the load.",
            "timeline": f"- alert on {slug} fired: detected\n- rolled back: mitigated\n- error rate normal: resolved",
        }
        pms.append({"id": pm_id, "incident_id": iid, "template_id": tid, "template_slug": tpl_slug,
                    "template_name": tname, "template_version": tversion, "status": state, "title": title,
                    "created_by_id": user_id, "created_at": created, "updated_at": published_at or created,
                    "published_at": published_at,
                    "search_text": "\n".join([title, f"INC-{iid}", tname, *body_text.values()]).lower()})
        for position, sec in enumerate(tsections):
            sections.append({"postmortem_id": pm_id, "key": sec["key"], "position": position, "title": sec["title"],
                             "guidance": sec.get("guidance", ""), "kind": sec["kind"],
                             "required": bool(sec.get("required")), "body": body_text.get(sec["key"], ""),
                             "version": 1, "updated_by_id": user_id, "updated_at": published_at or created})
        for cat in factor_slugs:
            factors.append({"postmortem_id": pm_id, "category_id": categories[cat], "created_by_id": user_id,
                            "description": FACTOR_TEXT.get(cat, "{slug}").format(slug=slug), "created_at": created})
        for kind, text in rng.sample(ACTIONS, rng.randint(1, 4)):
            due = (created + timedelta(days=rng.randint(7, 60))).date()
            r = rng.random()
            if r < 0.6:  # done, on time or late
                closed = created + timedelta(days=rng.uniform(1, 75))
                item_status = "done" if closed < now else "in_progress"
            elif r < 0.65:
                closed, item_status = created + timedelta(days=rng.uniform(1, 10)), "wont_do"
            else:
                closed, item_status = None, rng.choice(["open", "in_progress"])
            if closed is not None and closed >= now:
                closed = None
            items.append({"postmortem_id": pm_id, "title": text.format(slug=slug), "description": "",
                          "owner_id": user_id, "due_date": due if due <= today + timedelta(days=60) else None,
                          "type": kind, "priority": rng.choice(["urgent", "high", "medium", "low"]),
                          "status": item_status, "wont_do_reason": "Superseded" if item_status == "wont_do" else "",
                          "created_by_id": user_id, "created_at": created, "updated_at": closed or created,
                          "closed_at": closed})
        pm_id += 1
    return pms, sections, factors, items


def generate_postmortems(engine: sa.Engine, user_id: int, *, batch: int, seed: int, quiet: bool, t0: float) -> dict:
    """Post-mortems for every incident past the last one that has one (so it tops up like the incidents)."""
    from incidents.action_item.models import ActionItem
    from incidents.postmortem.models import ContributingFactor, Postmortem, PostmortemSection

    made = {"postmortems": 0, "sections": 0, "factors": 0, "action_items": 0}
    now = datetime.now(UTC)
    with engine.connect() as conn:
        templates = _templates(conn)
        categories = dict(conn.execute(sa.text("SELECT slug, id FROM factor_category")).all())
        after = conn.scalar(sa.text("SELECT coalesce(max(incident_id), 0) FROM postmortem"))
        next_pm = conn.scalar(sa.text("SELECT coalesce(max(id), 0) FROM postmortem")) + 1
        last = conn.scalar(sa.text("SELECT coalesce(max(id), 0) FROM incident"))
    rng = random.Random(seed * 7919 + after)
    while after < last:
        with engine.begin() as conn:
            rows = conn.execute(sa.text(
                "SELECT i.id, i.title, i.severity, i.status, i.resolved_at, s.slug FROM incident i "
                "LEFT JOIN service s ON s.id = i.service_id WHERE i.id > :after ORDER BY i.id LIMIT :n"),
                {"after": after, "n": batch}).all()
            if not rows:
                break
            pms, sections, factors, items = _postmortem_rows(rng, rows, next_pm, templates, categories, user_id, now)
            if pms:
                conn.execute(sa.insert(Postmortem.__table__), pms)
                conn.execute(sa.insert(PostmortemSection.__table__), sections)
                conn.execute(sa.insert(ContributingFactor.__table__), factors)
                conn.execute(sa.insert(ActionItem.__table__), items)
        after = rows[-1][0]
        next_pm += len(pms)
        for key, got in (("postmortems", pms), ("sections", sections), ("factors", factors), ("action_items", items)):
            made[key] += len(got)
        if not quiet:
            print(f"  post-mortems up to INC-{after} ({time.perf_counter() - t0:5.1f}s)", file=sys.stderr)
    return made


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True, help="SQLAlchemy URL; PostgreSQL databases are created")
    p.add_argument("--count", type=int, default=100_000, help="incidents wanted in total (tops up)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--reset", action="store_true", help="drop everything first")
    args = p.parse_args(argv)
    result = generate(args.database_url, args.count, batch=args.batch, seed=args.seed, reset=args.reset)
    print(f"{backend(args.database_url)}: {result}")


if __name__ == "__main__":
    main()
