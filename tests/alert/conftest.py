"""Alert test helpers: integrations with known tokens, posting payloads, reading the shared samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incidents.alert import services
from incidents.extensions import db
from tests.conftest import PAYLOADS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OPSGENIE_SAMPLES = PAYLOADS / "opsgenie"
ROLLBAR_SAMPLES = PAYLOADS / "rollbar" / "matterbar"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def sample(folder: Path, name: str) -> dict:
    if not folder.is_dir():
        pytest.skip(f"shared samples not present at {folder}")
    return json.loads((folder / f"{name}.json").read_text())


def sample_names(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def make_integration(source: str = "rollbar", name: str | None = None, **kw):
    """An integration with a fresh token; returns (integration, token)."""
    row, token = services.create_integration(db.session, source=source, name=name or f"{source} test", **kw)
    db.session.commit()
    return row, token


def post(client, source: str, payload, token: str | None, *, via: str = "header", **kw):
    data = payload if isinstance(payload, bytes | str) else json.dumps(payload)
    headers = {"Content-Type": "application/json"}
    url = f"/webhooks/{source}"
    if token is not None and via == "header":
        headers["X-Incidents-Token"] = token
    elif token is not None:
        url += f"?token={token}"
    return client.post(url, data=data, headers=headers, **kw)


@pytest.fixture(autouse=True)
def _fresh_integration_cache():
    services.forget_cached_integrations()
    yield
    services.forget_cached_integrations()


@pytest.fixture
def rollbar(app):
    return make_integration("rollbar", "shop")


@pytest.fixture
def opsgenie(app):
    return make_integration("opsgenie", "ops")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(app, db_url, tmp_path):
    """The app under a real gunicorn (2 worker processes x 8 threads) on a free loopback port."""
    import os
    import subprocess
    import sys
    import time

    import requests

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    env = os.environ | {
        "INCIDENTS_DATABASE_URL": db_url,
        "INCIDENTS_SECRET_KEY": "test-secret",
        "INCIDENTS_INSTANCE_PATH": str(tmp_path),
        "PYTHONPATH": str(root),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "8", "--worker-class", "gthread",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--access-logfile", str(tmp_path / "access.log"),
         "incidents:create_app()"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or workers still booting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
