"""Python CPU per webhook delivery in one process: where the app's own time goes, repeatably (issue 18).

    python -m bench.ingest_cpu --database sqlite                 # CPU ms per delivery, request vs writer thread
    python -m bench.ingest_cpu --database postgresql --profile writer --top 30   # cProfile of the writer thread
    python -m bench.ingest_cpu --threads 16                      # concurrent senders: batches as under gunicorn

The real app (create_app, migrated, the two integrations made by the service), driven through Flask's test client
with the bench's mixed OpsGenie/Rollbar bodies (bench/payloads.py, fixed seed). Sequential by default, so every
delivery is its own batch and the run is deterministic up to the database's timing; CPU is read per thread
(`time.thread_time` on the request threads, /proc for the writer), which excludes the database server's. No
gunicorn, so its parsing and access log are not in the figures: this measures the app's code, not the server's.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import pstats
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import INSTANCE, bench_app, normalise_url, reset_database
from bench.payloads import Generator

DATABASES = {"sqlite": f"sqlite:///{INSTANCE / 'ingest-cpu.sqlite3'}",
             "postgresql": "postgresql+psycopg://postgres@127.0.0.1/incidents_bench_ingest_cpu"}


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writer_thread() -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == "webhook-writer"), None)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=sorted(DATABASES), default="sqlite")
    p.add_argument("--url", help="override the database URL (the database is wiped)")
    p.add_argument("--deliveries", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200, help="deliveries before measuring (caches, prepared statements)")
    p.add_argument("--threads", type=int, default=1, help="concurrent senders (1: deterministic, batches of one)")
    p.add_argument("--profile", choices=["request", "writer"], help="cProfile the request or the writer thread")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--sort", default="tottime")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--callees", help="also print the callees of functions matching this pattern")
    p.add_argument("--dump", type=Path, help="write the raw profile here (pstats format)")
    p.add_argument("--callgrind", action="store_true",
                   help="under `valgrind --tool=callgrind --instr-atstart=no`: count instructions of the measured "
                        "deliveries only (callgrind_control switches it on and off)")
    args = p.parse_args(argv)

    url = normalise_url(args.url or DATABASES[args.database])
    reset_database(url)
    os.environ["INCIDENTS_INSTANCE_PATH"] = str(INSTANCE / "ingest-cpu")
    app = bench_app(url)
    from incidents.alert import services
    from incidents.auth import services as auth
    from incidents.extensions import db

    with app.app_context():
        auth.create_user(db.session, email="bench@bench.example.com", name="Bench", role="admin",
                         password=secrets.token_urlsafe(16))
        tokens = {s: services.create_integration(db.session, source=s, name=f"bench-{s}")[1]
                  for s in ("opsgenie", "rollbar")}
        db.session.commit()

    bodies = Generator(args.seed).mixed(args.warmup + args.deliveries)
    client = app.test_client()
    codes: dict[int, int] = {}

    def post(i: int) -> None:
        source, body = bodies[i][:2]
        r = client.post(f"/webhooks/{source}", data=body, headers={
            "Content-Type": "application/json", "X-Incidents-Token": tokens[source]})
        codes[r.status_code] = codes.get(r.status_code, 0) + 1

    for i in range(args.warmup):
        post(i)
    batcher = app.extensions.get("incidents.ingest_batcher")
    if batcher is not None:
        batcher._ensure_running()  # started by the first delivery otherwise: its CPU is read from its start
    writer = _writer_thread()
    # Thread CPU time, not wall time: the waits for the database and for the GIL are not this thread's work.
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if args.profile == "writer":  # the writer is idle between batches: enable it from a batch's first delivery
        from incidents.alert import batching

        original = batching.Batcher._apply

        def profiled(self, batch):
            profiler.enable()
            try:
                return original(self, batch)
            finally:
                profiler.disable()
        batching.Batcher._apply = profiled

    measured = range(args.warmup, args.warmup + args.deliveries)
    request_cpu = [0.0]
    lock = threading.Lock()
    indices = iter(measured)

    def sender():
        mine = 0.0
        while True:
            with lock:
                i = next(indices, None)
            if i is None:
                break
            c0 = time.thread_time()
            post(i)
            mine += time.thread_time() - c0
        with lock:
            request_cpu[0] += mine

    if args.callgrind:
        subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, capture_output=True)
    writer_cpu0 = _thread_cpu(writer.native_id) if writer else 0.0
    wall0, proc0 = time.perf_counter(), time.process_time()
    if args.threads == 1:
        if args.profile == "request":
            profiler.enable()
        sender()
        if args.profile == "request":
            profiler.disable()
    else:
        threads = [threading.Thread(target=sender) for _ in range(args.threads)]
        for t in itertools.chain(threads):
            t.start()
        for t in threads:
            t.join()
    wall, proc = time.perf_counter() - wall0, time.process_time() - proc0
    if args.callgrind:
        subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True, capture_output=True)
    writer_cpu = (_thread_cpu(writer.native_id) - writer_cpu0) if writer else 0.0
    n = args.deliveries
    print(f"{args.database}: {n} deliveries after {args.warmup} warm-up, {args.threads} sender(s); codes {codes}")
    print(f"  CPU ms per delivery: process {1000 * proc / n:.3f}, request threads {1000 * request_cpu[0] / n:.3f} "
          f"(thread_time, includes the wait's wake-ups), writer {1000 * writer_cpu / n:.3f} (/proc, 10 ms ticks)")
    if batcher is not None and batcher.batches:
        print(f"  batches {batcher.batches}, deliveries per batch {batcher.batched / batcher.batches:.2f}")
    print(f"  wall {wall:.2f} s, {n / wall:.0f} deliveries/s")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        print(f"  profile of the {args.profile} thread(s), per delivery: "
              f"{stats.total_calls / n:.0f} calls, {1000 * stats.total_tt / n:.3f} ms (profiled)")
        stats.sort_stats(args.sort).print_stats(args.top)
        if args.callees:
            stats.print_callees(args.callees)
        if args.dump:
            stats.dump_stats(args.dump)


if __name__ == "__main__":
    main()
