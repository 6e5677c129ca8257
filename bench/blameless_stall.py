"""Does a viewer's blameless check stall webhook ingestion? Webhook latency alone, then beside a viewer's checks.

    python -m bench.blameless_stall                        # SQLite (the database with one writer), ~45 s
    python -m bench.blameless_stall --databases sqlite,postgresql --rate 20 --seconds 8 --rounds 2 --viewers 1
    python -m bench.blameless_stall --viewer-interval 0.25  # a viewer checking 4 times a second, not back to back

The real app runs under `incidents serve` (gunicorn with its settings and its job worker). Webhooks go out at a
steady rate (`--rate` a second, open loop: each is sent at its scheduled time by a small pool of sender threads,
so a stalled answer does not thin out the samples). Phases alternate on one server, `--rounds` times: webhooks
alone (the baseline), then the same kind of webhooks while `--viewers` threads post a 100 kB text to
`POST /api/v1/blameless-check` with a viewer's token, back to back or every `--viewer-interval` s. Figures are
pooled per phase kind and compared within the run. Issue 11's target: webhook p99 under 100 ms during the checks.
Bounded: 2 x `--rounds` phases of `--seconds` each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from bench.common import (
    INSTANCE,
    backend,
    bench_app,
    incidents_serve,
    normalise_url,
    reset_database,
    serve_settings,
    stats_ms,
    table,
)
from bench.ingest import app_env, app_instance, create_integrations
from bench.payloads import Generator

DEFAULT_DATABASES = {
    "sqlite": f"sqlite:///{INSTANCE / 'blameless-stall.sqlite3'}",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1/incidents_bench_blameless_stall",
}
MAX_P99_MS = 100.0
# Findings-heavy prose: a person as the subject of a failure, hindsight and blame words in every sentence.
SENTENCE = ("Obviously Priya forgot to renew the certificate and Bob failed to page the on-call; we should have "
            "seen it, but the alert was careless noise. ")


def viewer_text(size: int = 100_000) -> str:
    return (SENTENCE * (size // len(SENTENCE) + 1))[:size]


def prepare(url: str) -> tuple[Path, dict[str, str], str]:
    """A fresh migrated database with an admin, a viewer (whose name the coach looks up) and the viewer's token,
    and the two webhook integrations; returns the instance folder, webhook tokens and the viewer's API token."""
    from incidents.auth import services as auth
    from incidents.extensions import db

    reset_database(url)
    instance = app_instance(url)
    with bench_app(url).app_context():
        auth.create_user(db.session, email="bench@bench.example.com", name="Bench Admin", role="admin",
                         password=secrets.token_urlsafe(16))
        viewer = auth.create_user(db.session, email="viewer@bench.example.com", name="Priya Patel", role="viewer",
                                  password=secrets.token_urlsafe(16))
        _, api_token = auth.create_token(db.session, viewer, "bench")
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    return instance, create_integrations(url, instance, None, None), api_token


def send_webhooks(urls: dict[str, str], bodies: list[tuple[str, bytes]], rate: float, seconds: float) -> dict:
    """POST bodies at `rate` a second for `seconds`, each at its scheduled time; latency from that time is not
    used (the senders keep up at these rates), only each request's own duration."""
    count = min(len(bodies), int(rate * seconds))
    start = time.monotonic() + 0.2
    local = threading.local()
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()

    def send(i: int) -> None:
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        http = getattr(local, "http", None) or requests.Session()
        local.http = http
        source, body = bodies[i]
        t0 = time.perf_counter()
        try:
            r = http.post(urls[source], data=body, headers={"Content-Type": "application/json"}, timeout=30)
            code = str(r.status_code)
        except requests.RequestException as e:
            code = type(e).__name__
        elapsed = time.perf_counter() - t0
        with lock:
            latencies.append(elapsed)
            codes[code] = codes.get(code, 0) + 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(count)))
    return stats_ms(latencies) | {"codes": dict(sorted(codes.items())), "seconds": latencies}


def _viewer(base: str, api_token: str, interval: float, stop, results) -> None:
    """One viewer: post the 100 kB text until `stop`, waiting `interval` s between checks; report (s, status,
    findings) for each check on `results` at the end."""
    text = json.dumps({"text": viewer_text()})
    http = requests.Session()
    headers = {"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"}
    mine = []
    while not stop.is_set():
        t0 = time.perf_counter()
        r = http.post(f"{base}/api/v1/blameless-check", data=text, headers=headers, timeout=60)
        found = len(r.json().get("findings", [])) if r.headers.get("Content-Type", "").startswith(
            "application/json") else -1
        mine.append((time.perf_counter() - t0, r.status_code, found))
        stop.wait(interval)
    results.put(mine)


def viewers_checking(base: str, api_token: str, viewers: int, interval: float):
    """Start `viewers` processes (not threads: their JSON work must not hold this process's GIL while it times the
    webhooks); returns a function that stops them and returns every check's (seconds, status, findings)."""
    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_viewer, args=(base, api_token, interval, stop, results), daemon=True)
             for _ in range(viewers)]
    for proc in procs:
        proc.start()

    def finish() -> list:
        stop.set()
        checks = [c for _ in procs for c in results.get(timeout=90)]
        for proc in procs:
            proc.join(timeout=30)
        return checks

    return finish


def run(url: str, rate: float, seconds: float, viewers: int, interval: float, rounds: int, seed: int) -> dict:
    """Phases alternate on one server (alone, beside, alone, beside ...) so that both see the same neighbours."""
    instance, tokens, api_token = prepare(url)
    per_phase = int(rate * seconds)
    bodies = Generator(seed).mixed(per_phase * 2 * rounds)
    log = INSTANCE / f"blameless-stall-{backend(url)}.log"
    alone, beside, checks = [], [], []
    with incidents_serve(app_env(url, instance), log) as base:
        urls = {s: f"{base}/webhooks/{s}?token={t}" for s, t in tokens.items()}
        send_webhooks(urls, bodies[:20], 10, 2)  # warm up both workers' imports and connections
        for n in range(rounds):
            batch = bodies[2 * n * per_phase:2 * (n + 1) * per_phase]
            alone.append(send_webhooks(urls, batch[:per_phase], rate, seconds))
            finish = viewers_checking(base, api_token, viewers, interval)
            time.sleep(2)  # the viewers have started (spawned interpreters) and are checking
            beside.append(send_webhooks(urls, batch[per_phase:], rate, seconds))
            checks += finish()
    pooled = {name: stats_ms([x for r in runs for x in r.pop("seconds")]) | {
        "codes": {c: sum(r["codes"].get(c, 0) for r in runs) for c in sorted({c for r in runs for c in r["codes"]})},
        "rounds_p99": [r["p99"] for r in runs]} for name, runs in (("alone", alone), ("beside", beside))}
    return pooled | {"checks": stats_ms([c[0] for c in checks]) | {
        "codes": sorted({c[1] for c in checks}), "findings": max((c[2] for c in checks), default=0)}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default="sqlite", help="comma-separated: sqlite, postgresql")
    p.add_argument("--rate", type=float, default=20, help="webhooks a second, in each phase")
    p.add_argument("--seconds", type=float, default=8, help="length of each phase (at most 30)")
    p.add_argument("--rounds", type=int, default=2, help="pairs of phases (alone, beside), at most 5")
    p.add_argument("--viewers", type=int, default=1, help="threads posting 100 kB checks")
    p.add_argument("--viewer-interval", type=float, default=0.0,
                   help="seconds a viewer waits between its checks (0: back to back, the worst case)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.seconds, args.rounds = min(args.seconds, 30), max(1, min(args.rounds, 5))
    s = serve_settings()
    pace = f"every {args.viewer_interval:g} s" if args.viewer_interval else "back to back"
    print(f"# Blameless check beside webhooks: {args.rounds} rounds of {args.rate:g} webhooks/s for {args.seconds:g} s "
          f"alone, then the same beside {args.viewers} viewer(s) posting {len(viewer_text()) // 1000} kB checks "
          f"{pace}; `incidents serve` with {s['workers']} workers x {s['threads']} threads and its job worker\n")
    rows, results, verdicts = [], {}, []
    for db in [d.strip() for d in args.databases.split(",") if d.strip()]:
        url = normalise_url(DEFAULT_DATABASES[db])
        print(f"  {db} ...", file=sys.stderr)
        r = results[db] = run(url, args.rate, args.seconds, args.viewers, args.viewer_interval, args.rounds,
                              args.seed)
        for phase in ("alone", "beside"):
            st = r[phase]
            rows.append({"db": db, "webhooks": f"{phase} the checks" if phase == "beside" else "alone",
                         "n": st["n"], "p50": st["p50"], "p95": st["p95"], "p99": st["p99"], "max": st["max"],
                         "rounds' p99": " / ".join(f"{v:.0f}" for v in st["rounds_p99"]),
                         "codes": " ".join(f"{c}x{n}" for c, n in st["codes"].items())})
        rows.append({"db": db, "webhooks": "beside / alone", "p50": f"{r['beside']['p50'] / r['alone']['p50']:.2f}x",
                     "p95": f"{r['beside']['p95'] / r['alone']['p95']:.2f}x",
                     "p99": f"{r['beside']['p99'] / r['alone']['p99']:.2f}x"})
        c = r["checks"]
        rows.append({"db": db, "webhooks": "(the viewer's checks)", "n": c["n"], "p50": c["p50"], "p95": c["p95"],
                     "p99": c["p99"], "max": c["max"],
                     "codes": " ".join(map(str, c["codes"])) + f"; {c['findings']} findings each"})
        p99 = r["beside"]["p99"]
        verdicts.append(f"{db}: webhook p99 beside the checks {p99:.1f} ms < {MAX_P99_MS:.0f} ms: "
                        f"{'met' if p99 < MAX_P99_MS else 'NOT MET'}")
    print(table(rows, ["db", "webhooks", "n", "p50", "p95", "p99", "max", "rounds' p99", "codes"]))
    print("\nms per request, pooled over the rounds; the viewer's row is the check's own latency\n")
    print("\n".join(f"- {v}" for v in verdicts))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
