"""Scale benchmark: do lists, filters and search stay under 200 ms, and insights under 500 ms, at 1,000,000 incidents?

    python -m bench.scale --database-url sqlite:////tmp/incidents-bench/scale.sqlite3 --count 1000000
    python -m bench.scale --database-url postgresql://postgres@127.0.0.1/incidents_bench_scale --count 1000000

Three parts, all against 127.0.0.1 and bounded in requests:
1. in-process: `list_incidents` with each filter and `get_incident` + its timeline, timed through the services;
2. query plans: the SQL those calls really emit (captured from the engine) under EXPLAIN [QUERY PLAN];
3. HTTP: the real app under gunicorn with the `incidents serve` settings, signed in through the real login form
   (and a bearer token for the API); latency of each page (lists, search, insights for 90 days and a year) and
   its ratio to /healthz measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from datetime import date, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import sqlalchemy as sa

from bench.common import INSTANCE, backend, bench_app, gunicorn, normalise_url, stats_ms, table
from bench.generate_incidents import BENCH_EMAIL, BENCH_PASSWORD, generate
from incidents.database import COUNT_LIMIT, Cursor

BUDGET_MS = 200
LAST_NUMBERED = COUNT_LIMIT // 25  # the last page a number reaches at 25 a page (offset 9,975)
INSIGHTS_BUDGET_MS = 500
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OLDER = re.compile(r'before=([A-Za-z0-9_-]+)[^"]*">Older')


def list_cases(deep: Cursor) -> list[tuple[str, dict, int, str | None]]:
    """(label, IncidentFilter fields, page, before): one per filter the list page offers, the last page reached by
    number (the deepest OFFSET the list allows), and a page halfway down reached by the cursor an Older link gives."""
    return [
        ("first page", {}, 1, None),
        ("open only", {"open_only": True}, 1, None),
        ("status=investigating", {"status": ["investigating"]}, 1, None),
        ("status=closed", {"status": ["closed"]}, 1, None),
        ("severity=SEV1", {"severity": ["SEV1"]}, 1, None),
        ("service=checkout-api", {"service": "checkout-api"}, 1, None),
        ("team=payments", {"team": "payments"}, 1, None),
        ("tag=security", {"tag": "security"}, 1, None),
        ("q=replication", {"q": "replication"}, 1, None),
        ("q=INC-50000", {"q": "INC-50000"}, 1, None),
        (f"page {LAST_NUMBERED} (last numbered)", {}, LAST_NUMBERED, None),
        (f"page {deep.page} by cursor", {}, 1, deep.encode()),
        (f"page {deep.page} by cursor, status=closed", {"status": ["closed"]}, 1, deep.encode()),
    ]


def deep_cursor(session, page: int, per_page: int = 25) -> Cursor:
    """The cursor the Older link of page `page` - 1 carries (newest first, show=all): what a user walking that far
    holds. Found once with the OFFSET the list no longer runs."""
    from incidents.incident.models import Incident

    row = session.execute(sa.select(Incident.created_at, Incident.id)
                          .order_by(Incident.created_at.desc(), Incident.id.desc())
                          .offset((page - 1) * per_page - 1).limit(1)).one()
    return Cursor(row.created_at, row.id, page)


def http_cases(max_id: int, deep_page: int) -> list[tuple[str, str, bool, int]]:
    """(label, path, api?, budget ms): the URLs a responder hits; the incident page is a different incident every
    time. Lists, filters and search have 200 ms; insights, which aggregate a whole period, 500 ms. `{before}`: the
    cursor walk, starting at page `deep_page` and then following each answer's Older link (API: `next`)."""
    # The list shows open incidents unless show=all: the show=all rows are the ones that reach every incident.
    year = (date.today() - timedelta(days=365)).isoformat()
    return [
        ("/healthz (baseline)", "/healthz", False, BUDGET_MS),
        ("/ (open incidents)", "/", False, BUDGET_MS),
        ("/ q=replication (open)", "/?q=replication", False, BUDGET_MS),
        ("/ show=all", "/?show=all", False, BUDGET_MS),
        ("/ show=all status=investigating", "/?show=all&status=investigating", False, BUDGET_MS),
        ("/ show=all status=closed", "/?show=all&status=closed", False, BUDGET_MS),
        ("/ show=all service=checkout-api", "/?show=all&service=checkout-api", False, BUDGET_MS),
        ("/ show=all tag=security", "/?show=all&tag=security", False, BUDGET_MS),
        ("/ show=all q=replication", "/?show=all&q=replication", False, BUDGET_MS),
        ("/ show=all q=repl (prefix)", "/?show=all&q=repl", False, BUDGET_MS),
        ("/ show=all q=INC-<n>", "/?show=all&q=INC-{n}", False, BUDGET_MS),
        (f"/ show=all page={LAST_NUMBERED} (last numbered)", f"/?show=all&page={LAST_NUMBERED}", False, BUDGET_MS),
        (f"/ show=all before= (page {deep_page}+, Older links)", "/?show=all&before={before}", False, BUDGET_MS),
        (f"/ show=all status=closed before= (page {deep_page}+)", "/?show=all&status=closed&before={before}", False,
         BUDGET_MS),
        ("/incidents/INC-<n>", "/incidents/INC-{n}", False, BUDGET_MS),
        ("/search q=replication", "/search?q=replication", False, BUDGET_MS),
        ("/search q=failover runbook", "/search?q=failover+runbook", False, BUDGET_MS),
        ("/api/v1/incidents", "/api/v1/incidents", True, BUDGET_MS),
        (f"/api/v1/incidents before= (page {deep_page}+, next)", "/api/v1/incidents?before={before}", True, BUDGET_MS),
        ("/api/v1/search q=repl", "/api/v1/search?q=repl", True, BUDGET_MS),
        ("/api/v1/search q=canary kind=postmortem", "/api/v1/search?q=canary&kind=postmortem", True, BUDGET_MS),
        ("/insights (90 days)", "/insights", False, INSIGHTS_BUDGET_MS),
        ("/insights (365 days)", f"/insights?since={year}", False, INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/response-times (90 days)", "/api/v1/insights/response-times", True, INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/response-times (365 days)", f"/api/v1/insights/response-times?since={year}", True,
         INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/factors (90 days)", "/api/v1/insights/factors", True, INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/factors (365 days)", f"/api/v1/insights/factors?since={year}", True, INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/follow-through (90 days)", "/api/v1/insights/follow-through", True, INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/follow-through (365 days)", f"/api/v1/insights/follow-through?since={year}", True,
         INSIGHTS_BUDGET_MS),
        ("/api/v1/insights/response-times team=payments (365 days, CSV)",
         f"/api/v1/insights/response-times?since={year}&team=payments&format=csv", True, INSIGHTS_BUDGET_MS),
        ("/insights severity=SEV1,SEV2 (365 days)", f"/insights?since={year}&severity=SEV1&severity=SEV2", False,
         INSIGHTS_BUDGET_MS),
    ]


class SqlCapture:
    """Collect the statements an engine executes while active (to EXPLAIN exactly what the services emit)."""

    def __init__(self, engine: sa.Engine):
        self.engine, self.statements = engine, []

    def _hook(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):  # WITH: the full-text counts
            self.statements.append((statement, parameters))

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._hook)


def explain(session, statement: str, parameters) -> list[str]:
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    return [row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)]


def plan_verdict(lines: list[str]) -> str:
    """Classify how the plan reaches the big tables: index seek, ordered index scan (fine with LIMIT), or full scan."""
    text = "\n".join(lines)
    big = r"(incident|timeline_entry|incident_tag)"
    if re.search(rf"^\s*SCAN {big}\s*$", text, re.M) or re.search(rf"Seq Scan on {big}\b", text):
        return "FULL SCAN"
    if re.search(rf"^\s*SCAN {big} USING", text, re.M) or (
            re.search(r"Index (Only )?Scan", text) and "Index Cond" not in text):
        return "index scan (ordered)"
    if re.search(r"^\s*SCAN \w+\s*$", text, re.M) or "Seq Scan" in text:
        return "seq scan (tiny table)"
    return "index seek"


def _from_table(statement: str) -> str:
    return re.search(r'FROM "?(\w+)', statement).group(1)


def in_process(url: str, iterations: int, seed: int) -> tuple[list[dict], list[dict], int, Cursor]:
    """Time the services directly and EXPLAIN what they run; returns (timings, plans, max incident id, the cursor
    of a page halfway down the list)."""
    from incidents.extensions import db
    from incidents.incident import services as svc
    from incidents.incident.models import Incident

    app = bench_app(url)
    rows, plans = [], []
    rng = random.Random(seed)
    with app.app_context():
        max_id = db.session.scalar(sa.select(sa.func.max(Incident.id)))
        total = db.session.scalar(sa.select(sa.func.count(Incident.id)))
        deep = deep_cursor(db.session, max(2, total // 25 // 2))
        db.session.close()
        for label, fields, page, before in list_cases(deep):
            f = svc.IncidentFilter(**fields)
            with SqlCapture(db.engine) as cap:
                result = svc.list_incidents(db.session, f, page=page, before=before)
            for statement, params in cap.statements:
                lines = explain(db.session, statement, params)
                kind = "count" if "count(" in statement.lower() else _from_table(statement)
                plans.append({"query": label, "part": kind, "verdict": plan_verdict(lines), "plan": lines})
            db.session.close()
            times = []
            for _ in range(iterations):
                t0 = time.perf_counter()
                result = svc.list_incidents(db.session, f, page=page, before=before)
                [(i.title, i.status, i.tags) for i in result.items]
                times.append(time.perf_counter() - t0)
                db.session.close()  # every request starts with an empty identity map
            rows.append({"query": f"list_incidents {label}", "rows": result.total} | stats_ms(times))
        times = []
        for i in range(iterations):
            ref = f"INC-{rng.randint(1, max_id)}"
            t0 = time.perf_counter()
            incident = svc.get_incident(db.session, ref)
            entries = [(e.kind, e.text, e.author.name if e.author else "") for e in incident.timeline]
            (incident.service.name if incident.service else "", incident.team.name if incident.team else "",
             incident.commander.name if incident.commander else "", incident.tags)
            times.append(time.perf_counter() - t0)
            if i == 0:
                db.session.close()
                with SqlCapture(db.engine) as cap:
                    incident = svc.get_incident(db.session, ref)
                    [(e.author.name if e.author else "") for e in incident.timeline]
                    incident.service, incident.team, incident.commander, incident.tags
                for statement, params in cap.statements:
                    lines = explain(db.session, statement, params)
                    plans.append({"query": "get_incident + timeline", "part": _from_table(statement),
                                  "verdict": plan_verdict(lines), "plan": lines})
            db.session.close()
        rows.append({"query": "get_incident + timeline", "rows": len(entries)} | stats_ms(times))
        rows += insights_in_process(db.session, iterations)
    return rows, plans, max_id, deep


def insights_in_process(session, iterations: int) -> list[dict]:
    """The insights page's four kinds of figures, per call with no cache: through the roll-up (what the app
    does), and counted from the incidents for the same scope (what it did before the roll-up; a few calls)."""
    from incidents.catalog.models import Team
    from incidents.database import utcnow
    from incidents.insights import queries as q
    from incidents.insights import rollup

    today = utcnow().date()
    payments = session.scalar(sa.select(Team).where(Team.slug == "payments"))
    session.close()  # detached, its id and slug loaded: what a Scope reads
    rows = []
    for label, days, scope_team in (("90 days", 90, None), ("a year", 365, None), ("a year, team=payments", 365,
                                                                                    payments)):
        scope = q.Scope(today - timedelta(days=days - 1), today, team=scope_team)
        ways = {"roll-up": lambda k, scope=scope: rollup.figures(session, k, scope, today),
                "counted": lambda k, scope=scope: q.FIGURES[k][1](
                    session, scope, q.compute_parts(session, q.FIGURES[k][0], scope.where()).get(None, {}), today)}
        for way, figures in ways.items():
            times = []
            for _ in range(iterations if way == "roll-up" else min(iterations, 3)):
                t0 = time.perf_counter()
                for kind in q.FIGURES:
                    figures(kind)
                times.append(time.perf_counter() - t0)
                session.close()
            rows.append({"query": f"insights page {label} ({way})", "rows": 4} | stats_ms(times))
    return rows


def prepare_credentials(url: str) -> str:
    """An API token for the bench admin, through the same service as `incidents users token`."""
    from incidents.auth import services as auth
    from incidents.extensions import db

    app = bench_app(url)
    with app.app_context():
        user = auth.get_user_by_email(db.session, BENCH_EMAIL)
        _, plain = auth.create_token(db.session, user, "bench")
        db.session.commit()
    return plain


def sign_in(base: str) -> requests.Session:
    """Sign in like a browser: the login page's CSRF token, then the form."""
    http = requests.Session()
    page = http.get(base + "/login", timeout=10)
    match = CSRF.search(page.text)
    if not match:
        raise RuntimeError(f"no CSRF token on /login (status {page.status_code})")
    r = http.post(base + "/login", data={"email": BENCH_EMAIL, "password": BENCH_PASSWORD,
                                         "csrf_token": match.group(1)}, allow_redirects=False, timeout=10)
    if r.status_code != 302:
        raise RuntimeError(f"sign-in failed with {r.status_code}")
    return http


def _older(response: requests.Response, is_api: bool) -> str | None:
    """The cursor of the page after this one: the API's `next`, the page's Older link."""
    if is_api:
        return response.json().get("next")
    match = OLDER.search(response.text)
    return match and match.group(1)


def over_http(url: str, requests_per_url: int, max_id: int, seed: int, deep: Cursor) -> list[dict]:
    token = prepare_credentials(url)
    # The per-process cache of insights figures off: every insights request computes its figures (from the
    # roll-up the generator stored and the recent days), so the row is what a new scope or a changed day costs.
    env = {"INCIDENTS_DATABASE_URL": url, "INCIDENTS_SECRET_KEY": "bench-secret",
           "INCIDENTS_INSTANCE_PATH": str(INSTANCE), "INCIDENTS_INSIGHTS_CACHE_SECONDS": "0"}
    rng = random.Random(seed)
    rows = []
    log = INSTANCE / f"scale-gunicorn-{backend(url)}.log"
    with gunicorn("incidents:create_app()", env, log) as base:
        web = sign_in(base)
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        baseline = None
        for label, path, is_api, budget in http_cases(max_id, deep.page):
            http = api if is_api else web
            codes: dict[int, int] = {}
            times = []
            # Insights take longer per request: a quarter of the requests keeps the run bounded.
            count = requests_per_url if budget == BUDGET_MS else max(20, requests_per_url // 4)
            before = deep.encode()  # cursor walks: each request asks for the page after the previous one
            for i in range(count + 10):  # the first 10 warm the workers up and are not counted
                target = base + path.format(n=rng.randint(1, max_id), before=before)
                t0 = time.perf_counter()
                r = http.get(target, allow_redirects=False, timeout=30)
                elapsed = time.perf_counter() - t0
                if "{before}" in path and r.status_code == 200:
                    before = _older(r, is_api) or deep.encode()
                if i >= 10:
                    times.append(elapsed)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
            row = {"url": label, "budget": budget} | stats_ms(times)
            row["codes"] = codes
            row["status"] = " ".join(f"{c}x{n}" for c, n in sorted(codes.items()))
            if 404 in codes and len(codes) == 1:
                row["status"] += " (route missing on this branch)"
            elif (path.startswith("/?") or path.startswith("/incidents")) and r.status_code == 200 \
                    and "INC-" not in r.text:
                row["status"] += " (no incident rendered: placeholder page?)"
            baseline = baseline or row["p50"]
            row["p50/healthz"] = f"{row['p50'] / baseline:.1f}x"
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--count", type=int, default=100_000, help="incidents to generate if the database has fewer")
    p.add_argument("--iterations", type=int, default=50, help="in-process calls per query")
    p.add_argument("--requests", type=int, default=200, help="HTTP requests per URL (bounded)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--plans", action="store_true", help="print every query plan in full")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    url = normalise_url(args.database_url)
    args.requests = min(args.requests, 2000)

    made = generate(url, args.count, quiet=True)
    print(f"# Scale benchmark on {backend(url)}: {made['total']} incidents "
          f"(generated {made['incidents']} in {made['seconds']}s)\n")
    rows, plans, max_id, deep = in_process(url, args.iterations, args.seed)
    print(f"## In-process service calls ({args.iterations} each, ms)\n")
    print(table(rows, ["query", "rows", "p50", "p95", "max"]))
    print("\n## Query plans\n")
    print(table([{k: v for k, v in p.items() if k != "plan"} | {"plan": " / ".join(p["plan"])[:110]}
                 for p in plans], ["query", "part", "verdict", "plan"]))
    if args.plans:
        for p in plans:
            print(f"\n{p['query']} [{p['part']}]:\n  " + "\n  ".join(p["plan"]))
    http_rows = []
    if not args.skip_http:
        print(f"\n## HTTP through gunicorn ({args.requests} sequential requests per URL, ms)\n")
        http_rows = over_http(url, args.requests, max_id, args.seed, deep)
        print(table(http_rows, ["url", "budget", "p50", "p95", "max", "p50/healthz", "status"]))
    # In process, the insights rows have the insights budget; "(counted)" rows are the baseline the roll-up is
    # measured against (what the app did before it), not what the app does, so they are judged by no budget.
    slow = [r["query"] for r in rows if not r["query"].endswith("(counted)") and r["p95"] >= (
        INSIGHTS_BUDGET_MS if r["query"].startswith("insights") else BUDGET_MS)] + \
        [r["url"] for r in http_rows if r["p95"] >= r["budget"] and not r["status"].startswith("404")]
    print(f"\np95 at or over its budget ({BUDGET_MS} ms; insights {INSIGHTS_BUDGET_MS} ms): "
          f"{', '.join(slow) if slow else 'none'}")
    bad = [r["url"] for r in http_rows if set(r["codes"]) != {200}]
    if bad:
        print(f"answers other than 200: {', '.join(bad)}")
    if args.json:
        args.json.write_text(json.dumps({"backend": backend(url), "service_calls": rows, "plans": plans,
                                         "http": http_rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
