"""Webhook ingestion benchmark: deliveries/s and latency of OpsGenie + Rollbar webhooks, against a floor.

    python -m bench.ingest                                  # the floor app, SQLite and PostgreSQL, 16 senders
    python -m bench.ingest --target app [--opsgenie-token T --rollbar-token T]   # real app, ratio to the floor
    python -m bench.ingest --target app --storm             # 10,000 occurrences of one Rollbar item, 32 senders

Load comes from N sender threads, each with its own requests.Session (keep-alive), posting pre-generated bodies
as fast as the server answers (closed loop); each run is bounded by --deliveries and --max-seconds. The client
shares the machine with the server, so compare figures only within one run (that is why the floor is there).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
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
    gunicorn,
    normalise_url,
    reset_database,
    serve_settings,
    stats_ms,
    table,
)
from bench.payloads import Generator

DEFAULT_DATABASES = {
    "sqlite": f"sqlite:///{INSTANCE / 'ingest-{target}.sqlite3'}",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1/incidents_bench_ingest_{target}",
}
SAMPLES = ROOT.parent / "shared" / "contracts" / "payloads"


def drive(urls: dict[str, str], bodies: list[tuple[str, bytes]], senders: int, max_seconds: float) -> dict:
    """POST every body once from `senders` threads; returns throughput, latency and status counts."""
    next_index = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    codes: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds

    def sender():
        http = requests.Session()
        mine, my_codes = [], {}
        while time.monotonic() < deadline:
            i = next(next_index)  # itertools.count is atomic under the GIL
            if i >= len(bodies):
                break
            source, body = bodies[i]
            t0 = time.perf_counter()
            try:
                r = http.post(urls[source], data=body, headers={"Content-Type": "application/json"}, timeout=30,
                              allow_redirects=False)
                code = str(r.status_code)
            except requests.RequestException as e:
                code = type(e).__name__
            mine.append(time.perf_counter() - t0)
            my_codes[code] = my_codes.get(code, 0) + 1
        with lock:
            latencies.extend(mine)
            for c, n in my_codes.items():
                codes[c] = codes.get(c, 0) + n

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    done = sum(codes.values())
    ok = sum(n for c, n in codes.items() if c.isdigit() and 200 <= int(c) < 300)
    return {"deliveries": done, "seconds": elapsed, "per_s": done / elapsed if elapsed else 0.0,
            "non_2xx": done - ok, "codes": dict(sorted(codes.items()))} | stats_ms(latencies)


def run_floor(url: str, bodies, senders: int, max_seconds: float) -> dict:
    from bench.floor_app import floor_delivery, metadata

    reset_database(url)
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    env = {"FLOOR_DATABASE_URL": url, "INCIDENTS_INSTANCE_PATH": str(INSTANCE)}
    with gunicorn("bench.floor_app:create_floor_app()", env, INSTANCE / f"floor-{backend(url)}.log") as base:
        result = drive({s: f"{base}/floor?source={s}" for s in ("opsgenie", "rollbar")}, bodies, senders,
                       max_seconds)
    with engine.connect() as conn:
        result["stored"] = conn.scalar(sa.select(sa.func.count()).select_from(floor_delivery))
    engine.dispose()
    return result


def create_integrations(url: str, opsgenie_token: str | None, rollbar_token: str | None) -> dict[str, str] | str:
    """Tokens for the real webhooks: given ones, or made with `incidents integrations add` when it exists."""
    tokens = {"opsgenie": opsgenie_token, "rollbar": rollbar_token}
    env = {**os.environ, "INCIDENTS_DATABASE_URL": url, "INCIDENTS_INSTANCE_PATH": str(INSTANCE),
           "INCIDENTS_SECRET_KEY": "bench-secret"}
    for source, token in tokens.items():
        if token:
            continue
        tokens[source] = "bench-" + secrets.token_hex(16)
        cmd = [sys.executable, "-m", "incidents", "integrations", "add", source, f"bench-{source}",
               "--token", tokens[source]]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            return (f"`incidents integrations add` failed ({done.returncode}): "
                    f"{(done.stderr or done.stdout).strip().splitlines()[-1:]} — the webhooks branch is not merged "
                    "here; pass --opsgenie-token/--rollbar-token for an app that has them")
    return tokens


def run_app(url: str, bodies, senders: int, max_seconds: float, opsgenie_token, rollbar_token) -> dict | str:
    from incidents.auth import services as auth
    from incidents.extensions import db

    reset_database(url)
    with bench_app(url).app_context():  # migrated; one admin, so the first-run setup redirect is out of the way
        auth.create_user(db.session, email="bench@bench.example.com", name="Bench", role="admin",
                         password=secrets.token_urlsafe(16))
        db.session.commit()
    tokens = create_integrations(url, opsgenie_token, rollbar_token)
    if isinstance(tokens, str):
        return tokens
    env = {"INCIDENTS_DATABASE_URL": url, "INCIDENTS_SECRET_KEY": "bench-secret",
           "INCIDENTS_INSTANCE_PATH": str(INSTANCE)}
    with gunicorn("incidents:create_app()", env, INSTANCE / f"ingest-app-{backend(url)}.log") as base:
        urls = {s: f"{base}/webhooks/{s}?token={t}" for s, t in tokens.items()}
        probe = requests.post(urls["rollbar"], json={"event_name": "test", "data": {"message": "probe"}},
                              timeout=10, allow_redirects=False)
        if not 200 <= probe.status_code < 300:
            where = probe.headers.get("Location", "")
            return (f"POST /webhooks/rollbar answers {probe.status_code} {where}".rstrip()
                    + (": the webhooks branch is not merged here" if probe.status_code in (302, 404) else ""))
        return drive(urls, bodies, senders, max_seconds)


def _row(target: str, db: str, senders: int, r: dict | str) -> dict:
    if isinstance(r, str):
        return {"target": target, "db": db, "senders": senders, "codes": f"SKIPPED: {r}"}
    return {"target": target, "db": db, "senders": senders, "deliveries": r["deliveries"],
            "per_s": r["per_s"], "p50": r["p50"], "p99": r["p99"], "max": r["max"], "non_2xx": r["non_2xx"],
            "stored": r.get("stored", ""), "codes": " ".join(f"{c}x{n}" for c, n in r["codes"].items())}


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
    p.add_argument("--opsgenie-token")
    p.add_argument("--rollbar-token")
    p.add_argument("--with-samples", action="store_true", help=f"mix in the captured samples from {SAMPLES}")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.storm:
        args.senders, args.deliveries = 32, 10_000
        args.max_seconds = max(args.max_seconds, 600)
    args.deliveries = min(args.deliveries, 20_000)

    gen = Generator(args.seed, samples_dir=SAMPLES if args.with_samples and SAMPLES.is_dir() else None)
    bodies = gen.storm(args.deliveries) if args.storm else gen.mixed(args.deliveries)
    mean_kb = sum(len(b) for _, b in bodies) / len(bodies) / 1024
    s = serve_settings()
    print(f"# Ingestion benchmark ({'storm' if args.storm else 'mixed OpsGenie/Rollbar'}): {len(bodies)} deliveries "
          f"(mean {mean_kb:.1f} KiB), {args.senders} senders; gunicorn {s['workers']} workers x {s['threads']} "
          f"threads ({s['worker_class']})\n")
    rows, results = [], {}
    for db in [d.strip() for d in args.databases.split(",") if d.strip()]:
        overrides = {"sqlite": args.sqlite_url, "postgresql": args.postgresql_url}
        for target in ["floor"] + (["app"] if args.target == "app" else []):
            url = normalise_url(overrides[db] or DEFAULT_DATABASES[db].format(target=target))
            print(f"  {target} on {db} ...", file=sys.stderr)
            if target == "floor":
                r = run_floor(url, bodies, args.senders, args.max_seconds)
            else:
                r = run_app(url, bodies, args.senders, args.max_seconds, args.opsgenie_token, args.rollbar_token)
            results[(target, db)] = r
            rows.append(_row(target, db, args.senders, r))
        app, floor = results.get(("app", db)), results.get(("floor", db))
        if isinstance(app, dict) and isinstance(floor, dict):
            rows.append({"target": "app/floor", "db": db, "per_s": f"{app['per_s'] / floor['per_s']:.2f}x",
                         "p50": f"{app['p50'] / floor['p50']:.2f}x", "p99": f"{app['p99'] / floor['p99']:.2f}x"})
    print(table(rows, ["target", "db", "senders", "deliveries", "per_s", "p50", "p99", "max", "non_2xx", "stored",
                       "codes"]))
    print("\nper_s = deliveries per second; p50/p99/max in ms; stored = rows the floor committed")
    if args.json:
        args.json.write_text(json.dumps([{"target": t, "db": d, "result": r} for (t, d), r in results.items()],
                                        indent=2, default=str))


if __name__ == "__main__":
    main()
