"""Bulk-generate realistic incidents (with tags and a few timeline entries each) for scale benchmarks.

    python -m bench.generate_incidents --database-url sqlite:////tmp/incidents-bench/scale.sqlite3 --count 100000

Rows go in with core `insert()` executemany in batches (the ORM one-by-one would take an hour for 100k); the
catalogue and the author are made through the real services. The schema comes from the real migrations.
"""

from __future__ import annotations

import argparse
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
    with engine.begin() as conn:
        if backend(url) == "postgresql":
            # Explicit ids bypass the sequence; move it past them so the app can create incidents again.
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('incident', 'id'), "
                                 "(SELECT coalesce(max(id), 1) FROM incident))")
            conn.exec_driver_sql("ANALYZE")  # what autovacuum would do shortly after a bulk load
    engine.dispose()
    made["seconds"] = round(time.perf_counter() - t0, 1)
    made["total"] = have + made["incidents"]
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
