"""Webhook ingestion benchmark: deliveries/s and latency of alert webhooks (default OpsGenie + Rollbar), vs a floor.

    python -m bench.ingest                                  # the floor app, SQLite and PostgreSQL, 16 senders
    python -m bench.ingest --target app [--opsgenie-token T --rollbar-token T]   # real app, ratio to the floor
    python -m bench.ingest --target app --storm             # 10,000 occurrences of one Rollbar item, 32 senders
    python -m bench.ingest --target app --sources opsgenie,rollbar,alertmanager,grafana,sentry,pagerduty,jsm
    python -m bench.ingest --group-size 10                  # CPU per alert: 10-alert Alertmanager groups vs 1-alert
    python -m bench.ingest --target app --audit-ab --rounds 3   # the app with and without its audit subscribers

Load comes from N sender threads, each with its own requests.Session (keep-alive), posting pre-generated bodies
as fast as the server answers (closed loop); each run is bounded by --deliveries and --max-seconds. The client
shares the machine with the server, so compare figures only within one run (that is why the floor is there).
The floor is measured under several server settings each round (`floor_servers`) and the fastest is the round's
floor: the most a bare insert does here, not the insert under the app's own settings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import sqlalchemy as sa

from bench.common import (
    INSTANCE,
    ROOT,
    backend,
    bench_app,
    busy_cpu_seconds,
    gunicorn,
    incidents_serve,
    normalise_url,
    reset_database,
    serve_settings,
    stats_ms,
    table,
)
from bench.payloads import DEFAULT_SOURCES, SIGNED, SOURCES, Generator

DEFAULT_DATABASES = {
    "sqlite": f"sqlite:///{INSTANCE / 'ingest-{target}.sqlite3'}",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1/incidents_bench_ingest_{target}",
}
SAMPLES = ROOT.parent / "shared" / "contracts" / "payloads"


def drive(urls: dict[str, str], bodies: list[tuple[str, bytes]], senders: int, max_seconds: float) -> dict:
    """POST every body once from `senders` threads; returns throughput, latency and status counts."""
    next_index = itertools.count()
    lock = threading.Lock()
    kinds = [_kind(source, body) for source, body, *_ in bodies]
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {}
    codes: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds

    def sender():
        http = requests.Session()
        mine, my_codes, my_kinds = [], {}, []
        while time.monotonic() < deadline:
            i = next(next_index)  # itertools.count is atomic under the GIL
            if i >= len(bodies):
                break
            source, body, *extra = bodies[i]
            headers = {"Content-Type": "application/json", **(extra[0] if extra else {})}
            t0 = time.perf_counter()
            try:
                r = http.post(urls[source], data=body, headers=headers, timeout=30, allow_redirects=False)
                code = str(r.status_code)
            except requests.RequestException as e:
                code = type(e).__name__
            mine.append(time.perf_counter() - t0)
            my_kinds.append(kinds[i])
            my_codes[code] = my_codes.get(code, 0) + 1
        with lock:
            latencies.extend(mine)
            for kind, seconds in zip(my_kinds, mine):
                by_kind.setdefault(kind, []).append(seconds)
            for c, n in my_codes.items():
                codes[c] = codes.get(c, 0) + n

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    cpu0, own0 = busy_cpu_seconds(), _own_cpu_seconds()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu, own = busy_cpu_seconds() - cpu0, _own_cpu_seconds() - own0
    done = sum(codes.values())
    ok = sum(n for c, n in codes.items() if c.isdigit() and 200 <= int(c) < 300)
    return {"deliveries": done, "seconds": elapsed, "per_s": done / elapsed if elapsed else 0.0,
            "non_2xx": done - ok, "codes": dict(sorted(codes.items())),
            "cpu_ms": 1000 * cpu / done if done else float("nan"),
            "server_ms": 1000 * (cpu - own) / done if done else float("nan"),
            "by_kind": {k: stats_ms(v) for k, v in sorted(by_kind.items())}} | stats_ms(latencies)


def _own_cpu_seconds() -> float:
    """CPU seconds of this process (the senders): the machine's busy time less this is the server's side of a
    run (server, job worker, database, and whatever else the machine runs), the part the app and the floor differ in."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _kind(source: str, body: bytes) -> str:
    """The event kind of a body (OpsGenie/JSM/Sentry `action`, Rollbar `event_name`, PagerDuty `event_type`,
    Alertmanager/Grafana group status and size), for the per-kind latency table."""
    try:
        doc = json.loads(body)
        if isinstance(doc.get("alerts"), list):
            return f"{source} {doc.get('status')} x{len(doc['alerts'])}"
        if isinstance(doc.get("event"), dict):
            return f"{source} {doc['event'].get('event_type')}"
        return f"{source} {doc.get('action') or doc.get('event_name') or '?'}"
    except (ValueError, AttributeError):
        return f"{source} ?"


def floor_servers() -> dict[str, dict]:
    """The server settings the floor is measured under; the fastest in a round is that round's floor, so the app
    is compared with the most a bare insert does on this machine, not with the insert under the app's settings."""
    s = serve_settings()
    return {
        f"serve {s['workers']}x{s['threads']}": {k: s[k] for k in ("workers", "threads", "keep_alive")},
        "2x8 keep-alive": {"workers": 2, "threads": 8, "keep_alive": 5},
        "4 sync": {"workers": 4, "threads": 1, "keep_alive": 0, "worker_class": "sync"},
        "8 sync": {"workers": 8, "threads": 1, "keep_alive": 0, "worker_class": "sync"},
        "4x4": {"workers": 4, "threads": 4, "keep_alive": 0},
    }


def run_floor(url: str, bodies, senders: int, max_seconds: float, server: dict | None = None) -> dict:
    from bench.floor_app import floor_delivery, metadata

    reset_database(url)
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    env = {"FLOOR_DATABASE_URL": url, "INCIDENTS_INSTANCE_PATH": str(INSTANCE)}
    with gunicorn("bench.floor_app:create_floor_app()", env, INSTANCE / f"floor-{backend(url)}.log",
                  server=server) as base:
        result = drive({s: f"{base}/floor?source={s}" for s in sorted({b[0] for b in bodies})}, bodies, senders,
                       max_seconds)
    with engine.connect() as conn:
        result["stored"] = conn.scalar(sa.select(sa.func.count()).select_from(floor_delivery))
    engine.dispose()
    return result


def create_integrations(url: str, instance: Path, opsgenie_token: str | None, rollbar_token: str | None,
                        sources: tuple[str, ...] = DEFAULT_SOURCES, secret: str | None = None) -> dict[str, str]:
    """Tokens for the real webhooks: given ones, or made with the real `incidents integrations add` (with
    `--secret` for the sources that sign, so that their signatures are checked as in production)."""
    given = {"opsgenie": opsgenie_token, "rollbar": rollbar_token}
    tokens = {source: given.get(source) for source in sources}
    env = {**os.environ, **app_env(url, instance)}
    for source, token in tokens.items():
        if token:
            continue
        tokens[source] = "bench-" + secrets.token_hex(16)
        cmd = [sys.executable, "-m", "incidents", "integrations", "add", source, f"bench-{source}",
               "--token", tokens[source]]
        if source in SIGNED and secret:
            cmd += ["--secret", secret]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"`incidents integrations add` failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-500:]}")
    return tokens


def app_env(url: str, instance: Path) -> dict[str, str]:
    return {"INCIDENTS_DATABASE_URL": url, "INCIDENTS_SECRET_KEY": "bench-secret",
            "INCIDENTS_INSTANCE_PATH": str(instance)}


def app_instance(url: str) -> Path:
    """A fresh instance folder per database: the job queue (queue.sqlite3) starts empty every run."""
    instance = INSTANCE / f"app-{backend(url)}"
    shutil.rmtree(instance, ignore_errors=True)
    instance.mkdir(parents=True)
    return instance


def end_state(url: str, instance: Path) -> dict:
    """What the run left in the database (and the job queue), read directly with SQL."""
    from incidents.alert.models import Alert, Delivery
    from incidents.audit.models import AuditEntry
    from incidents.incident.models import Incident, TimelineEntry

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        outcomes = dict(conn.execute(sa.select(Delivery.outcome, sa.func.count()).group_by(Delivery.outcome)).all())
        state = {
            "deliveries": sum(outcomes.values()),
            "outcomes": {str(getattr(k, "value", k)): n for k, n in sorted(outcomes.items(), key=str)},
            "alerts": conn.scalar(sa.select(sa.func.count()).select_from(Alert)),
            "max_occurrence_count": conn.scalar(sa.select(sa.func.max(Alert.occurrence_count))) or 0,
            "incidents": conn.scalar(sa.select(sa.func.count()).select_from(Incident)),
            "timeline_entries": conn.scalar(sa.select(sa.func.count()).select_from(TimelineEntry)),
            "audit_rows": conn.scalar(sa.select(sa.func.count()).select_from(AuditEntry)),
        }
    engine.dispose()
    queue = instance / "queue.sqlite3"
    if queue.exists():  # huey's SqliteHuey: `task` holds what is queued and not yet taken by the worker
        q = sa.create_engine(f"sqlite:///{queue}")
        with q.connect() as conn:
            state["jobs_left"] = conn.scalar(sa.text("SELECT count(*) FROM task"))
        q.dispose()
    return state


def run_app(url: str, bodies, senders: int, max_seconds: float, opsgenie_token, rollbar_token,
            job_worker: bool = True, sources: tuple[str, ...] = DEFAULT_SOURCES, secret: str | None = None,
            audit: bool = True) -> dict:
    from incidents.auth import services as auth
    from incidents.extensions import db

    reset_database(url)
    instance = app_instance(url)
    with bench_app(url).app_context():  # migrated; one admin, so the first-run setup redirect is out of the way
        auth.create_user(db.session, email="bench@bench.example.com", name="Bench", role="admin",
                         password=secrets.token_urlsafe(16))
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    tokens = create_integrations(url, instance, opsgenie_token, rollbar_token, sources, secret)
    log = INSTANCE / f"ingest-app-{backend(url)}.log"
    module = "incidents" if audit else "bench.serve_without_audit"
    with incidents_serve(app_env(url, instance), log, job_worker=job_worker, module=module) as base:
        urls = {s: f"{base}/webhooks/{s}?token={t}" for s, t in tokens.items()}
        result = drive(urls, bodies, senders, max_seconds)
        if job_worker:
            time.sleep(2)  # let the worker drain what the last deliveries enqueued
    result["state"] = end_state(url, instance)
    return result


def _row(target: str, db: str, senders: int, r: dict | str) -> dict:
    if isinstance(r, str):
        return {"target": target, "db": db, "senders": senders, "codes": f"SKIPPED: {r}"}
    return {"target": target, "db": db, "senders": senders, "deliveries": r["deliveries"],
            "per_s": r["per_s"], "p50": r["p50"], "p99": r["p99"], "max": r["max"], "cpu_ms": r["cpu_ms"],
            "server_ms": r["server_ms"], "non_2xx": r["non_2xx"],
            "stored": r.get("stored", r.get("state", {}).get("deliveries", "")),
            "codes": " ".join(f"{c}x{n}" for c, n in r["codes"].items())}


# Issue 3's targets: at 16 senders, at least half the floor's deliveries/s, p99 < 100 ms, nothing over 2.5 s.
# Issue 18: the app at 0.5 of the strongest floor on PostgreSQL and 0.7 on SQLite; p99 and max on both.
MIN_RATIO = {"postgresql": 0.5, "sqlite": 0.7}
MAX_P99_MS, MAX_MS = 100.0, 2500.0


def verdicts(db: str, app: dict, floor: dict | None, storm: bool, deliveries: int) -> list[str]:
    """Each target with met / NOT MET, from this run's figures and the database's end state."""
    out = []
    st = app["state"]
    if floor:
        ratio = app["per_s"] / floor["per_s"]
        least = MIN_RATIO[db]
        out.append(f"ratio to floor {ratio:.2f} >= {least}: {'met' if ratio >= least else 'NOT MET'}")
    if storm:
        checks = [("one alert", st["alerts"] == 1),
                  (f"occurrence_count {st['max_occurrence_count']} == {deliveries}",
                   st["max_occurrence_count"] == deliveries),
                  (f"incidents {st['incidents']} == 1", st["incidents"] == 1),
                  (f"non-2xx {app['non_2xx']} == 0", app["non_2xx"] == 0),
                  (f"max {app['max']:.0f} ms < {MAX_MS:.0f} ms", app["max"] < MAX_MS)]
    else:
        checks = [(f"p99 {app['p99']:.1f} ms < {MAX_P99_MS:.0f} ms", app["p99"] < MAX_P99_MS),
                  (f"max {app['max']:.0f} ms < {MAX_MS:.0f} ms", app["max"] < MAX_MS),
                  (f"non-2xx {app['non_2xx']} == 0", app["non_2xx"] == 0),
                  (f"rejected {st['outcomes'].get('rejected', 0)} == 0", not st["outcomes"].get("rejected")),
                  (f"failed {st['outcomes'].get('failed', 0)} == 0", not st["outcomes"].get("failed"))]
    out += [f"{label}: {'met' if ok else 'NOT MET'}" for label, ok in checks]
    return out


def summary_verdicts(db: str, pairs: list[tuple[dict, dict | None]], storm: bool) -> list[str]:
    """The targets over several rounds: the median ratio and the median p99; the rest must hold in every round."""
    out = []
    ratios = [app["per_s"] / floor["per_s"] for app, floor in pairs if floor]
    if ratios:
        ratio, least = statistics.median(ratios), MIN_RATIO[db]
        out.append(f"ratio to floor {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) >= {least}: "
                   f"{'met' if ratio >= least else 'NOT MET'}")
    if not storm:
        p99s = [app["p99"] for app, _ in pairs]
        p99 = statistics.median(p99s)
        out.append(f"p99 {p99:.1f} ms (rounds: {', '.join(f'{v:.0f}' for v in p99s)}) < {MAX_P99_MS:.0f} ms: "
                   f"{'met' if p99 < MAX_P99_MS else 'NOT MET'}")
    worst = max(app["max"] for app, _ in pairs)
    out.append(f"max {worst:.0f} ms in any round < {MAX_MS:.0f} ms: {'met' if worst < MAX_MS else 'NOT MET'}")
    clean = all(app["non_2xx"] == 0 and not app["state"]["outcomes"].get("rejected")
                and not app["state"]["outcomes"].get("failed") for app, _ in pairs)
    out.append(f"0 non-2xx, 0 rejected, 0 failed in every round: {'met' if clean else 'NOT MET'}")
    return out


def audit_ab_summary(rounds: dict) -> list[str]:
    """Issue 17's check: the ratio to the same floor with (app) and without (app-noaudit) the audit subscribers,
    per round (they ran back to back, A then B) and as medians, and the difference."""
    out = []
    for db in dict.fromkeys(db for db, _ in rounds):
        a = [app["per_s"] / floor["per_s"] for app, floor in rounds.get((db, "app"), []) if floor]
        b = [app["per_s"] / floor["per_s"] for app, floor in rounds.get((db, "app-noaudit"), []) if floor]
        if not a or not b:
            continue
        diffs = [x - y for x, y in zip(a, b)]
        out.append(f"{db}: audit A/B, ratio with audit {statistics.median(a):.2f} ({', '.join(f'{v:.2f}' for v in a)})"
                   f", without {statistics.median(b):.2f} ({', '.join(f'{v:.2f}' for v in b)}); with - without per "
                   f"round {', '.join(f'{d:+.2f}' for d in diffs)}, median {statistics.median(diffs):+.2f}")
    return out


def run_groups(args, dbs: list[str], secret: str) -> None:
    """Does a group of N Alertmanager alerts cost close to N single deliveries? The same alerts (10-instance
    groups: fire, re-sent twice, resolved, fired again) are posted as N-alert bodies, then as 1-alert bodies, to
    a fresh app each time; machine CPU per *alert* is compared within the round (the sizes alternate order)."""
    notifications = max(1, args.deliveries // 10)
    rows, ratios = [], {}
    overrides = {"sqlite": args.sqlite_url, "postgresql": args.postgresql_url}
    for rnd in range(1, args.rounds + 1):
        for db in dbs:
            url = normalise_url(overrides[db] or DEFAULT_DATABASES[db].format(target="app"))
            sizes = [args.group_size, 1] if rnd % 2 else [1, args.group_size]
            per_alert = {}
            for size in sizes:
                bodies, alerts = Generator(args.seed, secret=secret).alertmanager_groups(notifications, size)
                print(f"  round {rnd}: {db}, {len(bodies)} bodies of {size} alert(s) ...", file=sys.stderr)
                r = run_app(url, bodies, args.senders, args.max_seconds, None, None,
                            job_worker=not args.no_job_worker, sources=("alertmanager",))
                st = r["state"]
                cpu_alert = r["cpu_ms"] * r["deliveries"] / alerts if r["deliveries"] == len(bodies) else float("nan")
                per_alert[size] = cpu_alert
                rows.append({"round": rnd, "db": db, "group_size": size, "deliveries": r["deliveries"],
                             "alerts": alerts, "per_s": r["per_s"], "alerts_per_s": r["per_s"] * alerts / len(bodies),
                             "p50": r["p50"], "p99": r["p99"], "cpu_ms": r["cpu_ms"], "cpu_ms_per_alert": cpu_alert,
                             "non_2xx": r["non_2xx"],
                             "outcomes": " ".join(f"{k}x{v}" for k, v in st["outcomes"].items()),
                             "alert_rows": st["alerts"], "incidents": st["incidents"]})
            ratio = per_alert[args.group_size] / per_alert[1]
            ratios.setdefault(db, []).append(ratio)
            rows.append({"round": rnd, "db": db, "group_size": f"{args.group_size} / 1",
                         "cpu_ms_per_alert": f"{ratio:.2f}x"})
    print(table(rows, ["round", "db", "group_size", "deliveries", "alerts", "per_s", "alerts_per_s", "p50", "p99",
                       "cpu_ms", "cpu_ms_per_alert", "non_2xx", "outcomes", "alert_rows", "incidents"]))
    print(f"\ncpu_ms = machine CPU ms per delivery; cpu_ms_per_alert = the same per alert carried; per_s = deliveries"
          f" per second; p50/p99 in ms. A group of {args.group_size} costs close to {args.group_size} single "
          f"deliveries when the ratio is near 1.00x (below: cheaper per alert).")
    for db, values in ratios.items():
        print(f"- {db}: CPU per alert, groups of {args.group_size} / single: median "
              f"{statistics.median(values):.2f}x (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=["floor", "app"], default="floor",
                   help="floor: only the floor app; app: the floor, then the real app, and their ratio")
    p.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    p.add_argument("--sqlite-url", help="override the SQLite URL (the database is wiped)")
    p.add_argument("--postgresql-url", help="override the PostgreSQL URL (the database is wiped)")
    p.add_argument("--senders", type=int, default=16)
    p.add_argument("--deliveries", type=int, default=4000)
    p.add_argument("--max-seconds", type=float, default=120, help="stop sending after this long, done or not")
    p.add_argument("--storm", action="store_true",
                   help="10,000 occurrences of one Rollbar item (distinct uuids) from 32 senders")
    p.add_argument("--no-job-worker", action="store_true",
                   help="start the app with `incidents serve --no-worker` (default: with its job worker)")
    p.add_argument("--workers", type=int, help="gunicorn workers for the floor and the app (default: serve's)")
    p.add_argument("--threads", type=int, help="threads per worker for the floor and the app (default: serve's)")
    p.add_argument("--keep-alive", type=int, dest="keep_alive",
                   help="gunicorn keep-alive seconds for the floor and the app (default: serve's, 0)")
    p.add_argument("--opsgenie-token")
    p.add_argument("--rollbar-token")
    p.add_argument("--with-samples", action="store_true", help=f"mix in the captured samples from {SAMPLES}")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat floor-then-app this many times; the targets are then judged on the medians")
    p.add_argument("--by-kind", action="store_true", help="also print the app's latency per event kind")
    p.add_argument("--floors", help="comma-separated floor server settings to try (default: all; names: serve, "
                                    "2x8, 4, 8, 4x4, i.e. serve's, 2x8 keep-alive, 4 sync, 8 sync, 4x4 gthread)")
    p.add_argument("--audit-ab", action="store_true", dest="audit_ab",
                   help="after each round's app, the same app without the audit subscribers (issue 17's A/B)")
    p.add_argument("--sources", default=",".join(DEFAULT_SOURCES),
                   help=f"comma-separated sources of the mix, spread evenly (known: {', '.join(SOURCES)}; default: "
                        "today's OpsGenie/Rollbar mix, so runs compare); signed ones are created with --secret")
    p.add_argument("--group-size", type=int, dest="group_size",
                   help="instead of the mix: the same Alertmanager alerts as N-alert groups, then one per delivery, "
                        "to the app; --deliveries counts alerts; reports CPU ms per alert for each")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    sources = tuple(s.strip() for s in args.sources.split(",") if s.strip())
    if unknown := set(sources) - set(SOURCES):
        p.error(f"unknown sources: {', '.join(sorted(unknown))} (known: {', '.join(SOURCES)})")
    if args.group_size is not None and not 1 < args.group_size <= 10:
        p.error("--group-size must be 2..10 (Alertmanager groups of one rule over 10 instances)")
    secret = "bench-" + secrets.token_hex(16)  # the signed sources' integrations are created with it
    if args.storm:
        args.senders, args.deliveries = 32, 10_000
        args.max_seconds = max(args.max_seconds, 600)
    args.deliveries = min(args.deliveries, 20_000)
    from bench import common

    common.OVERRIDES.update({k: v for k, v in (("workers", args.workers), ("threads", args.threads),
                                               ("keep_alive", args.keep_alive)) if v is not None})

    if args.group_size is not None:
        s = serve_settings()
        print(f"# Alertmanager groups of {args.group_size} vs single alerts: {args.deliveries} alerts each way, "
              f"{args.senders} senders; gunicorn {s['workers']} workers x {s['threads']} threads; app via "
              f"`incidents serve` {'without' if args.no_job_worker else 'with'} its job worker\n")
        run_groups(args, [d.strip() for d in args.databases.split(",") if d.strip()], secret)
        return
    gen = Generator(args.seed, samples_dir=SAMPLES if args.with_samples and SAMPLES.is_dir() else None,
                    secret=secret)
    bodies = gen.storm(args.deliveries) if args.storm else gen.mix(args.deliveries, sources)
    mean_kb = sum(len(b[1]) for b in bodies) / len(bodies) / 1024
    s = serve_settings()
    worker = "without" if args.no_job_worker else "with"
    mix = "mixed OpsGenie/Rollbar" if sources == DEFAULT_SOURCES else "mixed " + "/".join(sources)
    print(f"# Ingestion benchmark ({'storm' if args.storm else mix}): {len(bodies)} deliveries "
          f"(mean {mean_kb:.1f} KiB), {args.senders} senders; gunicorn {s['workers']} workers x {s['threads']} "
          f"threads ({s['worker_class']}, keep-alive {s['keep_alive']} s); app via `incidents serve` {worker} "
          f"its job worker\n")
    rows, results, states, checks, rounds = [], {}, [], [], {}
    servers = floor_servers()
    if args.floors:
        wanted = [f.strip() for f in args.floors.split(",") if f.strip()]
        servers = {name: settings for name, settings in servers.items()
                   if name in wanted or name.split(" ")[0] in wanted}
    apps = ["app", "app-noaudit"] if args.audit_ab else ["app"]
    wins: dict[str, dict[str, int]] = {}
    dbs = [d.strip() for d in args.databases.split(",") if d.strip()]
    for rnd in range(1, args.rounds + 1):
        for db in dbs:
            overrides = {"sqlite": args.sqlite_url, "postgresql": args.postgresql_url}
            for target in ["floor"] + (apps if args.target == "app" else []):
                url = normalise_url(overrides[db] or DEFAULT_DATABASES[db].format(target=target.split("-")[0]))
                if target == "floor":
                    best = None
                    for name, server in servers.items():
                        print(f"  round {rnd}: floor [{name}] on {db} ...", file=sys.stderr)
                        f = run_floor(url, bodies, args.senders, args.max_seconds, server) | {"server": name}
                        rows.append({"round": rnd} | _row(f"floor [{name}]", db, args.senders, f))
                        if best is None or f["per_s"] > best["per_s"]:
                            best = f
                    wins.setdefault(db, {}).setdefault(best["server"], 0)
                    wins[db][best["server"]] += 1
                    results[(target, db, rnd)] = best
                    continue
                print(f"  round {rnd}: {target} on {db} ...", file=sys.stderr)
                r = run_app(url, bodies, args.senders, args.max_seconds, args.opsgenie_token,
                            args.rollbar_token, job_worker=not args.no_job_worker,
                            sources=tuple(dict.fromkeys(DEFAULT_SOURCES + sources)) if args.storm else sources,
                            secret=secret, audit=target == "app")
                st = r["state"]
                states.append({"round": rnd, "db": db, "target": target}
                              | {k: v for k, v in st.items() if k != "outcomes"}
                              | {"outcomes": " ".join(f"{k}x{v}" for k, v in st["outcomes"].items())})
                results[(target, db, rnd)] = r
                rows.append({"round": rnd} | _row(target, db, args.senders, r))
            floor = results.get(("floor", db, rnd))
            for target in apps:
                app = results.get((target, db, rnd))
                if isinstance(app, dict) and isinstance(floor, dict):
                    rows.append({"round": rnd, "target": f"{target}/floor", "db": db,
                                 "per_s": f"{app['per_s'] / floor['per_s']:.2f}x",
                                 "p50": f"{app['p50'] / floor['p50']:.2f}x",
                                 "p99": f"{app['p99'] / floor['p99']:.2f}x",
                                 "cpu_ms": f"{app['cpu_ms'] / floor['cpu_ms']:.2f}x",
                                 "server_ms": f"{app['server_ms'] / floor['server_ms']:.2f}x",
                                 "codes": f"floor: {floor['server']}"})
                if isinstance(app, dict):
                    rounds.setdefault((db, target), []).append((app, floor))
                    label = f"{db}, round {rnd}" if args.rounds > 1 else db
                    if target != "app":
                        label += f" ({target})"
                    checks += [f"{label}: {v}" for v in verdicts(db, app, floor, args.storm, len(bodies))]
    if args.rounds > 1:
        for (db, target), pairs in rounds.items():
            label = db if target == "app" else f"{db} ({target})"
            checks += [f"{label}, median of {len(pairs)} rounds: {v}" for v in summary_verdicts(db, pairs, args.storm)]
    for db, won in wins.items():
        checks.append(f"{db}: strongest floor " + ", ".join(f"{name} in {n} round(s)" for name, n in won.items()))
    if args.audit_ab:
        checks += audit_ab_summary(rounds)
    print(table(rows, ["round", "target", "db", "senders", "deliveries", "per_s", "p50", "p99", "max", "cpu_ms",
                       "server_ms", "non_2xx", "stored", "codes"]))
    print("\nper_s = deliveries per second; p50/p99/max in ms; cpu_ms = machine CPU ms per delivery (client, server,"
          " job worker and database together); server_ms = the same less the senders' own CPU; stored = rows"
          " committed (floor rows, app deliveries)")
    kind_rows = [{"round": n, "db": d, "kind": k, "n": st["n"], "p50": st["p50"], "p99": st["p99"], "max": st["max"]}
                 for (t, d, n), r in results.items() if isinstance(r, dict) and t == "app"
                 for k, st in r.get("by_kind", {}).items()]
    if kind_rows and args.by_kind:
        print("\n## Latency by event kind (app)\n")
        print(table(kind_rows, ["round", "db", "kind", "n", "p50", "p99", "max"]))
    if states:
        print("\n## End state of the app's database (read with SQL after the run)\n")
        print(table(states, ["round", "db", "target", "deliveries", "outcomes", "alerts", "max_occurrence_count",
                             "incidents", "timeline_entries", "audit_rows", "jobs_left"]))
        print("\n## Targets\n")
        print("\n".join(f"- {c}" for c in checks))
    if args.json:
        args.json.write_text(json.dumps([{"target": t, "db": d, "round": n, "result": r}
                                         for (t, d, n), r in results.items()],
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
