"""The quickstart path as a user runs it: `incidents serve` on a fresh SQLite instance folder,
first admin through the setup page, an incident worked end to end, and everything still there after
a restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`incidents serve` as a user runs it; `env` adds INCIDENTS_* settings, `args` serve options."""

    def __init__(self, instance: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 log: Path | None = None, sigint_ignored: bool = False):
        self.instance = instance
        self.sigint_ignored = sigint_ignored  # as a shell's background job starts it
        self.log = log  # a file for the output of long runs (an unread pipe fills and stalls the server)
        self.extra_env = env or {}
        self.args = args
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        env["INCIDENTS_INSTANCE_PATH"] = str(self.instance)
        env.update(self.extra_env)
        self._out = self.log.open("a") if self.log else subprocess.PIPE  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "incidents", "serve", "--port", str(self.port), "--workers", "1", *self.args],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, text=True,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if self.sigint_ignored else None,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        pytest.fail("incidents serve did not come up:\n" + self.stop())

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        if self.log:
            self._out.close()
            return self.log.read_text()
        return out


def _post(http: requests.Session, url: str, page: str, data: dict) -> requests.Response:
    token = CSRF.search(http.get(page).text).group(1)
    return http.post(url, data=data | {"csrf_token": token})


@pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                    reason="the quickstart is the embedded SQLite default; one run is enough")
def test_quickstart_setup_incident_lifecycle_and_restart(tmp_path):
    server = Server(tmp_path / "instance")
    server.start()
    try:
        http = requests.Session()
        first = http.get(server.url + "/")
        assert first.url.endswith("/setup") and "no users yet" in first.text
        r = _post(http, server.url + "/setup", server.url + "/setup", {
            "name": "Ada", "email": "ada@example.com", "password": "a long password", "password2": "a long password"})
        assert r.status_code == 200 and "Sign out" in r.text
        r = _post(http, server.url + "/incidents/new", server.url + "/incidents/new",
                  {"title": "Checkout returns 502", "severity": "SEV2", "summary": "Customers **cannot** pay"})
        assert r.status_code == 200, r.text
        page = r.url
        for status in ("acknowledged", "investigating", "mitigated", "resolved", "closed"):
            r = _post(http, page + "/status", page, {"status": status, "resolution": "Rolled back"})
            assert r.status_code == 200
        r = _post(http, page + "/notes", page, {"body": "Rolled back release 2024.11.3"})
        assert r.status_code == 200
    finally:
        log = server.stop()
    assert "create the first admin" in log
    # The access log (stdout) gives each request's duration in ms.
    assert re.search(r'"POST /setup HTTP/1\.1" 302 .* \d+ms$', log, re.M), log[-2000:]

    server.start()  # restart: the data and the signing key must survive
    try:
        shown = http.get(page)
        assert shown.status_code == 200 and "Sign out" in shown.text  # same session cookie still valid
        text = shown.text
        assert "Checkout returns 502" in text and "Rolled back release 2024.11.3" in text
        assert "<strong>cannot</strong>" in text
        assert "resolved -&gt; closed" in text or "resolved -> closed" in text
    finally:
        server.stop()


@pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                    reason="runs on the embedded SQLite default, like the quickstart")
def test_serve_metrics_and_json_logs_follow_a_webhook_to_its_job(tmp_path):
    """Two gunicorn workers and the job worker share one multiprocess metrics folder: any worker's /metrics
    counts the webhook another worker took, and the job run in the job worker. With LOG_FORMAT=json the
    access line of the request and the worker's lines about its job carry the proxy's request id."""
    import json

    from prometheus_client.parser import text_string_to_metric_families

    instance = tmp_path / "instance"
    env = {"INCIDENTS_LOG_FORMAT": "json"}
    server = Server(instance, env=env, args=("--workers", "2"))  # the last --workers wins
    server.start()
    try:
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
        cli_env |= env | {"INCIDENTS_INSTANCE_PATH": str(instance)}
        subprocess.run([sys.executable, "-m", "incidents", "integrations", "add", "opsgenie", "shop", "--token",
                        "serve-test-token"], cwd=ROOT, env=cli_env, check=True, capture_output=True, timeout=60)
        payload = json.loads((ROOT / "tests" / "alert" / "fixtures" / "opsgenie_create_p1.json").read_text())
        r = requests.post(server.url + "/webhooks/opsgenie", json=payload, timeout=30,
                          headers={"X-Incidents-Token": "serve-test-token", "X-Request-ID": "serve-obs-1"})
        assert r.status_code == 200 and r.json()["incident"], r.text
        assert r.headers["X-Request-ID"] == "serve-obs-1"

        def scrape() -> dict:
            text = requests.get(server.url + "/metrics", timeout=10).text  # from loopback: no token needed
            return {(s.name, frozenset(s.labels.items())): s.value
                    for family in text_string_to_metric_families(text) for s in family.samples}

        announced = ("incidents_jobs_executed_total",
                     frozenset({("job", "incidents.notify.jobs.send_notification"), ("outcome", "succeeded")}))
        deadline = time.monotonic() + 60
        while scrape().get(announced, 0) < 1:  # counted by the job worker, another process
            assert time.monotonic() < deadline, "the job worker's run never showed in /metrics"
            time.sleep(0.3)
        processed = ("incidents_webhook_deliveries_total",
                     frozenset({("source", "opsgenie"), ("outcome", "processed")}))
        for _ in range(8):  # whichever gunicorn worker answers, it merges every process's counts
            samples = scrape()
            assert samples[processed] == 1
            assert samples[("incidents_open_incidents", frozenset({("severity", "SEV1")}))] == 1
        pids = {p.stem.rsplit("_", 1)[-1] for p in (instance / "metrics").glob("counter_*.db")}
        assert len(pids) >= 2, pids  # a web worker and the job worker wrote their own files
        ready = requests.get(server.url + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
    finally:
        out = server.stop()
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    access = [x for x in lines if x["logger"] == "gunicorn.access" and x.get("path") == "/webhooks/opsgenie"]
    assert len(access) == 1, out[-3000:]
    assert access[0]["request_id"] == "serve-obs-1" and access[0]["status"] == 200 and access[0]["method"] == "POST"
    assert isinstance(access[0]["duration"], float) and "serve-test-token" not in out
    job_lines = [x for x in lines if x.get("request_id") == "serve-obs-1" and x["logger"].startswith("huey")]
    assert any("send_notification" in x["message"] for x in job_lines), out[-3000:]


@pytest.mark.skipif(bool(os.environ.get("INCIDENTS_TEST_DATABASE_URL")),
                    reason="the job worker's signals, not the database; one run is enough")
def test_serve_started_with_sigint_ignored_still_stops_its_job_worker_at_once(tmp_path):
    """A shell's background job (`nohup incidents serve &`, a CI script) starts with SIGINT ignored, which exec
    keeps: stopped as soon as it answers, before the job worker has set its handlers, serve must still stop the
    worker at once, not wait out its 30 s grace."""
    server = Server(tmp_path / "instance", sigint_ignored=True)
    server.start()
    asked = time.monotonic()
    log = server.stop()
    assert time.monotonic() - asked < 10, log[-2000:]
    assert server.proc.returncode == 0, log[-2000:]
