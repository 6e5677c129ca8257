"""Test harness: one migrated database per run (SQLite by default, PostgreSQL when
INCIDENTS_TEST_DATABASE_URL is set), emptied after every test."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import g
from flask.testing import FlaskClient

from incidents import create_app
from incidents.database import Base
from incidents.extensions import alembic, db

pytest_plugins = ["tests.browser"]  # live_server, browser, page for the Playwright tests

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
PAYLOADS = SHARED / "contracts" / "payloads"


def database_url(tmp_dir: Path) -> str:
    return os.environ.get("INCIDENTS_TEST_DATABASE_URL") or f"sqlite:///{tmp_dir / 'test.sqlite3'}"


def reset_database(url: str) -> None:
    """Start from nothing: drop every table (PostgreSQL schema) so migrations build it all."""
    if url.startswith("postgresql"):
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        engine.dispose()


@pytest.fixture(scope="session")
def db_url(tmp_path_factory) -> str:
    url = database_url(tmp_path_factory.mktemp("db"))
    reset_database(url)
    return url


@pytest.fixture(scope="session")
def _app(db_url, tmp_path_factory):
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test-secret",
        "SERVER_NAME": "localhost",
        "BASE_URL": "http://localhost",
        # Notification services are tested directly; tests/notify/test_jobs.py turns the automatic path on.
        "NOTIFY_ON_COMMIT": False,
        # Every test makes its own data: insights computed afresh (tests/insights/test_views.py tests the cache).
        "INSIGHTS_CACHE_SECONDS": 0,
    })
    with app.app_context():
        alembic.upgrade()
    return app


def empty_tables() -> None:
    """Back to a freshly migrated database: no rows but those the data migrations add (the coach's word list,
    the built-in post-mortem templates and factor categories)."""
    from tests.seeds import reseed

    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        reseed(conn)


@pytest.fixture
def app(_app):
    with _app.app_context():
        yield _app
        db.session.rollback()
        db.session.close()
        empty_tables()
        _app.extensions.pop("incidents.has_users", None)


@pytest.fixture
def session(app):
    return db.session


class Client(FlaskClient):
    """Each request gets a clean `g` (as in production), while sharing the test's database session.

    The test keeps an app context open for its factories; Flask reuses it for requests, so without
    this, `g` (current user, API user) would leak from one request into the next."""

    def open(self, *args, **kwargs):
        for key in [k for k in vars(g) if k != "_sqlalchemy_sessions"]:
            g.pop(key)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = Client
    return app.test_client()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client) -> str:
    """A CSRF token for this client's session, read from a real page like a browser would."""
    page = client.get("/login", follow_redirects=True).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, "no CSRF token on the page"
    return match.group(1)


def post_form(client, url: str, data: dict | None = None, **kwargs):
    """POST a form the way a browser does: with the page's CSRF token."""
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client))
    return client.post(url, data=data, **kwargs)


def login(client, user) -> None:
    """Sign `user` in without the password form (that form has its own tests)."""
    with client.session_transaction() as s:
        s["_user_id"] = user.get_id()
        s["_fresh"] = True


@pytest.fixture
def admin(session):
    from tests.factories import make_user

    return make_user(role="admin", email="admin@example.com", name="Ada Admin")


@pytest.fixture
def responder(session):
    from tests.factories import make_user

    return make_user(role="responder", email="responder@example.com", name="Rita Responder")


@pytest.fixture
def viewer(session):
    from tests.factories import make_user

    return make_user(role="viewer", email="viewer@example.com", name="Victor Viewer")


@pytest.fixture
def admin_client(client, admin):
    login(client, admin)
    return client


@pytest.fixture
def responder_client(client, responder):
    login(client, responder)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    login(client, viewer)
    return client


@pytest.fixture
def api(client, responder):
    """A JSON API client acting as a responder through a real bearer token."""
    from tests.factories import ApiClient, make_token

    return ApiClient(client, make_token(responder))


@pytest.fixture(scope="session")
def _smtp_server():
    from tests.smtp import SMTPTestServer

    server = SMTPTestServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(_smtp_server):
    """The loopback SMTP server (tests/smtp.py), running and empty, shared by the whole run."""
    _smtp_server.reset()
    return _smtp_server
