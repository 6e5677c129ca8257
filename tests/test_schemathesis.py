"""The API does what its document says: schemathesis runs every check, stateful phase included, against a real
`incidents serve` on the test database's kind (a temporary SQLite instance, or a fresh PostgreSQL database on
INCIDENTS_TEST_DATABASE_URL's server) and must find nothing.

Why schemathesis: it derives requests from the OpenAPI document itself (valid and invalid ones, and chains of
them through the document's links), so a constraint the server enforces but the document does not state, an
answer the document does not list, or a server error shows up as a failure here rather than in a client."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.test_serve import ROOT, Server

pytest.importorskip("schemathesis")
SEED = 20261129
MAX_EXAMPLES = 10
CONFIG = Path(__file__).with_name("schemathesis.toml")


def _cli(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "incidents", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture
def database_url(tmp_path):
    """A database of the test run's kind that nothing else uses, removed afterwards."""
    test_url = os.environ.get("INCIDENTS_TEST_DATABASE_URL")
    if not test_url:
        yield f"sqlite:///{tmp_path / 'instance' / 'schemathesis.sqlite3'}"
        return
    name = f"incidents_st_{secrets.token_hex(4)}"
    admin = sa.create_engine(sa.make_url(test_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(test_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _seed(url: str, token: str) -> None:
    """A team, a service and an incident with a post-mortem and an action item, for the examples to find."""
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    api = url + "/api/v1"
    assert http.post(api + "/teams", json={"name": "Payments", "slug": "payments"}).status_code == 201
    assert http.post(api + "/services", json={"name": "Checkout", "slug": "checkout",
                                              "team": "payments"}).status_code == 201
    incident = http.post(api + "/incidents", json={"title": "Checkout errors", "severity": "SEV2",
                                                   "service": "checkout"})
    assert incident.status_code == 201, incident.text
    ref = incident.json()["ref"]
    resolve = {"status": "resolved", "resolution": "Rolled back"}
    assert http.patch(api + f"/incidents/{ref}", json=resolve).status_code in (200, 409)
    pm = http.post(api + f"/incidents/{ref}/postmortem", json={"template": "lightweight"})
    assert pm.status_code == 201, pm.text
    item = http.post(api + f"/postmortems/{pm.json()['id']}/action-items", json={"title": "Canary config pushes"})
    assert item.status_code == 201, item.text


def test_schemathesis_finds_nothing(tmp_path, database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    env |= {"INCIDENTS_INSTANCE_PATH": str(tmp_path / "instance"), "INCIDENTS_DATABASE_URL": database_url}
    _cli("db", "upgrade", env=env)
    _cli("users", "create", "st@example.com", "--name", "Schema Thesis", "--role", "admin",
         "--password", "a long password", env=env)
    token = _cli("users", "token", "st@example.com", env=env).strip().splitlines()[-1]

    server = Server(tmp_path / "instance", env={"INCIDENTS_DATABASE_URL": database_url}, args=("--no-worker",),
                    log=tmp_path / "serve.log")
    server.start()
    started = time.monotonic()
    try:
        _seed(server.url, token)
        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        with open(tmp_path / "schemathesis.txt", "w") as out:  # a file, so a slow run can be watched
            run = subprocess.run(
                [cli, "--config-file", str(CONFIG), "run", server.url + "/api/v1/openapi.json",
                 "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
                 "--no-shrink", "--request-timeout", "30", "-H", f"Authorization: Bearer {token}"],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=400,
            )
    finally:
        log = server.stop()
    report = (tmp_path / "schemathesis.txt").read_text()
    print(report[-30000:])
    print(f"schemathesis ran {time.monotonic() - started:.0f}s")
    assert "Traceback" not in log, log[-5000:]
    assert run.returncode == 0, report[-30000:]
    assert "Stateful" in report, report[-30000:]
