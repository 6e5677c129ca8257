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
