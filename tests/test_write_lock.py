"""Requests that do not write hold no write lock (issue 11, findings 1 and 2): SQLite has one writer, and every
webhook delivery waits for it, so a slow read inside a write transaction stalled them all."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from incidents.auth import services as auth
from incidents.auth.models import ApiToken, LoginAttempt
from incidents.database import utcnow
from incidents.extensions import db
from incidents.postmortem import blameless
from incidents.postmortem.models import BlamelessPhrase
from tests.conftest import csrf_token
from tests.factories import PASSWORD, make_user, statement_kinds
from tests.seeds import WORD_LIST, revision


def another_writer_can_begin() -> bool:
    """Whether a writer outside this request could start now: on SQLite, another connection's BEGIN IMMEDIATE
    (no waiting); on PostgreSQL, whether this request's transaction has written nothing (its rows locked)."""
    if db.engine.dialect.name == "sqlite":
        other = sqlite3.connect(db.engine.url.database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError as e:
            assert "locked" in str(e) or "busy" in str(e)
            return False
        finally:
            other.close()
    return db.session.scalar(sa.text("SELECT pg_current_xact_id_if_assigned()")) is None


@pytest.fixture
def during_check(monkeypatch):
    """Runs the probe while the coach is checking a text; yields what each probe answered."""
    seen: list[bool] = []
    check = blameless.check_text

    def probing(*args, **kwargs):
        findings = check(*args, **kwargs)
        seen.append(another_writer_can_begin())
        return findings

    monkeypatch.setattr(blameless, "check_text", probing)
    return seen


# --- finding 1: the blameless coach --------------------------------------------------------------------------

def test_blameless_check_holds_no_write_lock(api, responder_client, during_check):
    text = "Obviously Bob failed to page. " * 3000  # 90 kB
    r = api.post("/api/v1/blameless-check", json={"text": text})
    assert r.status_code == 200 and r.get_json()["findings"]
    r = responder_client.post("/postmortems/blameless-check", json={"text": text},
                              headers={"X-CSRFToken": csrf_token(responder_client)})
    assert r.status_code == 200 and r.get_json()["findings"]
    assert during_check == [True, True]


def _best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_coach_time_grows_linearly_with_the_text(session):
    """20x the text may cost about 20x the time, never 400x (the overlap test was quadratic: 100 kB took seconds;
    the ratio was 100-400 there, 15-20 now). A ratio within one run, best of three, so a busy machine passes."""
    make_user(name="Priya Patel")
    unit = "Priya forgot to renew it and Bob failed to page; we should have seen it. "
    small, large = ((unit * (n // len(unit) + 1))[:n] for n in (5_000, 100_000))
    assert len(blameless.check_text(session, large)) > 4000
    t_small = _best_of(3, lambda: blameless.check_text(session, small))
    t_large = _best_of(3, lambda: blameless.check_text(session, large))
    assert t_large / t_small < 60, f"5 kB: {t_small * 1000:.1f} ms, 100 kB: {t_large * 1000:.1f} ms"


def test_coach_never_writes_even_with_an_empty_word_list(session):
    """The word list comes from migration 0008: a first check on an empty list seeds nothing."""
    session.execute(sa.delete(BlamelessPhrase))
    session.commit()
    with statement_kinds() as statements:
        assert blameless.check_text(session, "We should have known; Bob failed to page.") == [
            blameless.Finding(22, 35, "Bob failed to", blameless.NAME_SUGGESTION.format(name="Bob"), "blame")]
        assert blameless.list_phrases(session) == []
    assert statements and set(statements) == {"SELECT"}


def test_migrations_seed_the_word_list(tmp_path):
    from incidents import create_app
    from incidents.extensions import alembic

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}", "SECRET_KEY": "x",
                      "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        alembic.upgrade()
        phrases = db.session.execute(sa.select(BlamelessPhrase.phrase, BlamelessPhrase.category,
                                               BlamelessPhrase.suggestion).order_by(BlamelessPhrase.id)).all()
        assert [tuple(p) for p in phrases] == revision(WORD_LIST).BLAMELESS_PHRASES
        db.session.close()
        for engine in db.engines.values():
            engine.dispose()


def test_coach_input_and_answer_are_bounded(app, api):
    too_long = api.post("/api/v1/blameless-check", json={"text": "x" * 100_001})
    error = too_long.get_json()["error"]
    assert too_long.status_code == 422 and error["code"] == "validation_error" and "text" in error["fields"]
    too_big = api.post("/api/v1/blameless-check", data=b'{"text": "' + b"x" * 1_100_000 + b'"}',
                       content_type="application/json")
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "request_entity_too_large"

    many = api.post("/api/v1/blameless-check", json={"text": "careless. " * 150}).get_json()
    assert len(many["findings"]) == 100 and many["truncated"] is True
    few = api.post("/api/v1/blameless-check", json={"text": "careless. " * 3}).get_json()
    assert len(few["findings"]) == 3 and few["truncated"] is False

    saved = {key: app.config[key] for key in ("BLAMELESS_MAX_TEXT", "BLAMELESS_MAX_FINDINGS")}
    app.config.update(BLAMELESS_MAX_TEXT=50, BLAMELESS_MAX_FINDINGS=2)
    app.extensions.pop("incidents.openapi", None)  # the document is built once per app: build it with these
    try:
        assert api.post("/api/v1/blameless-check", json={"text": "x" * 51}).status_code == 422
        assert len(api.post("/api/v1/blameless-check", json={"text": "careless. " * 3}).get_json()["findings"]) == 2
        doc = api.get("/api/v1/openapi.json").get_json()
    finally:
        app.config.update(saved)
        app.extensions.pop("incidents.openapi", None)
    schema = next(v for k, v in doc["components"]["schemas"].items() if k.startswith("BlamelessCheck")
                  and "text" in v.get("properties", {}))
    assert schema["properties"]["text"]["maxLength"] == 50
    assert "413" in doc["paths"]["/api/v1/blameless-check"]["post"]["responses"]


# --- finding 2: sign-in verifies the password outside any transaction ----------------------------------------

@pytest.fixture
def during_verify(monkeypatch):
    """Probes, while Argon2 verifies a password: is a transaction open, can another writer begin, and is the
    attempt already recorded (seen from another connection)."""
    seen: list[dict] = []
    real = auth._hasher

    class Probing:
        def verify(self, hashed, password):
            with db.engine.connect() as other:
                recorded = other.scalar(sa.select(sa.func.count(LoginAttempt.id)).where(
                    LoginAttempt.succeeded.is_(False)))
            seen.append({"in_transaction": db.session.in_transaction(), "writer": another_writer_can_begin(),
                         "failures_recorded": recorded})
            return real.verify(hashed, password)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(auth, "_hasher", Probing())
    return seen


def test_sign_in_verifies_the_password_with_no_transaction_open(client, during_verify):
    user = make_user(email="slow@example.com")
    token = csrf_token(client)
    wrong = client.post("/login", data={"csrf_token": token, "email": user.email, "password": "wrong password"})
    assert wrong.status_code == 401
    right = client.post("/login", data={"csrf_token": token, "email": user.email, "password": PASSWORD})
    assert right.status_code == 302
    # Each attempt is recorded (as a failure) before Argon2 runs, so attempts made in parallel count too.
    assert during_verify == [{"in_transaction": False, "writer": True, "failures_recorded": 1},
                             {"in_transaction": False, "writer": True, "failures_recorded": 2}]
    db.session.expire_all()
    attempts = db.session.execute(sa.select(LoginAttempt.email, LoginAttempt.succeeded).order_by(LoginAttempt.id))
    assert [tuple(a) for a in attempts] == [(user.email, False), (user.email, True)]


def test_sign_in_with_a_nul_character_is_a_422_on_every_database(client, admin):
    r = client.post("/login", data={"csrf_token": csrf_token(client), "email": "a\x00b@example.com", "password": "x"})
    assert r.status_code == 422


def test_sign_in_refuses_an_account_changed_while_verifying(session):
    user = make_user(email="changing@example.com")
    sign_in = auth.begin_sign_in(session, user.email, "127.0.0.1", auth.LoginLimits())
    session.commit()
    new_hash = auth.check_password(sign_in, PASSWORD)
    assert new_hash is not None
    user.active = False
    session.commit()
    assert auth.finish_sign_in(session, sign_in, new_hash) is None
    assert auth.check_password(sign_in, "wrong password") is None


# --- API tokens: last_used_at at most once a minute, in a transaction of its own --------------------------------

def test_token_use_is_stamped_at_most_once_a_minute(client, responder):
    from tests.factories import make_token

    headers = {"Authorization": f"Bearer {make_token(responder)}"}
    updates: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("UPDATE API_TOKEN"):
            updates.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert client.get("/api/v1/me", headers=headers).status_code == 200
        assert len(updates) == 1  # the first use; the next two are within the minute
        token = db.session.scalar(sa.select(ApiToken))
        assert token.last_used_at is not None
        token.last_used_at = utcnow() - timedelta(seconds=61)
        db.session.commit()
        updates.clear()
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        assert len(updates) == 1  # a minute later, the next use is stamped
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    db.session.expire_all()
    assert utcnow() - db.session.scalar(sa.select(ApiToken.last_used_at)) < timedelta(seconds=5)


def test_token_stamp_is_committed_before_the_request_runs(api, during_check):
    """A read-only request that stamps its token still holds no write lock afterwards: the stamp had its own."""
    assert api.post("/api/v1/blameless-check", json={"text": "careless"}).status_code == 200
    assert during_check == [True]
    with db.engine.connect() as other:
        assert other.scalar(sa.select(ApiToken.last_used_at)) is not None
