"""Sign-in throttling: per account and address with growing waits, a far higher per-account limit, per address."""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from flask.testing import FlaskClient

from incidents.auth import services
from incidents.auth.models import LoginAttempt
from incidents.database import utcnow
from tests.conftest import post_form
from tests.factories import PASSWORD, make_user

ROOT = Path(__file__).resolve().parent.parent.parent


def attempt(client, email: str, password: str, address: str):
    return post_form(client, "/login", {"email": email, "password": password},
                     environ_base={"REMOTE_ADDR": address})


def failures(session, email: str, address: str, ats) -> None:
    session.add_all(LoginAttempt(email=email, address=address, succeeded=False, at=at) for at in ats)
    session.commit()


def wait_for(session, email: str, address: str, now) -> int | None:
    """Seconds the throttle asks to wait at `now`, or None when the attempt may go ahead."""
    limits = services.LoginLimits(window=900, per_account_address=5, per_account=50, per_address=20, delay=30)
    try:
        services.check_login_throttle(session, email, address, limits, now)
    except services.LoginThrottled as e:
        return e.retry_after
    finally:
        session.rollback()
    return None


def test_failures_from_one_address_do_not_lock_the_account_elsewhere(client):
    user = make_user(email="target@example.com")
    for _ in range(5):
        assert attempt(client, user.email, "wrong guess", "203.0.113.7").status_code == 401
    blocked = attempt(client, user.email, PASSWORD, "203.0.113.7")
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["Retry-After"]) <= 30
    assert "Too many failed sign-in attempts" in blocked.get_data(as_text=True)
    assert attempt(client, user.email, PASSWORD, "198.51.100.2").status_code == 302  # the owner, elsewhere


def test_the_wait_doubles_with_every_further_failure(session):
    now = utcnow()
    email, address = "a@example.com", "203.0.113.7"
    failures(session, email, address, [now - timedelta(seconds=s) for s in (300, 200, 100, 50, 10)])
    assert wait_for(session, email, address, now) == 20  # 5th failure 10 s ago: 30 s wait
    assert wait_for(session, email, address, now + timedelta(seconds=21)) is None
    failures(session, email, address, [now + timedelta(seconds=21)])
    assert wait_for(session, email, address, now + timedelta(seconds=22)) == 59  # 6th: 60 s
    failures(session, email, address, [now + timedelta(seconds=81)])
    assert wait_for(session, email, address, now + timedelta(seconds=82)) == 119  # 7th: 120 s


def test_a_success_from_the_address_starts_its_count_again(session):
    now = utcnow()
    email, address = "a@example.com", "203.0.113.7"
    failures(session, email, address, [now - timedelta(seconds=s) for s in (60, 50, 40, 30)])
    session.add(LoginAttempt(email=email, address=address, succeeded=True, at=now - timedelta(seconds=20)))
    failures(session, email, address, [now - timedelta(seconds=10)])
    assert wait_for(session, email, address, now) is None


def test_failures_age_out_of_the_window(session):
    now = utcnow()
    failures(session, "a@example.com", "203.0.113.7", [now - timedelta(seconds=1000 + s) for s in range(60)])
    assert wait_for(session, "a@example.com", "203.0.113.7", now) is None


def test_per_account_limit_is_far_higher_and_holds_from_every_address(session):
    now = utcnow()
    ats = [now - timedelta(seconds=600 - i) for i in range(49)]
    for i, at in enumerate(ats):
        failures(session, "a@example.com", f"10.0.{i // 4}.{i}", [at])
    assert wait_for(session, "a@example.com", "192.0.2.1", now) is None  # 49 spread failures: not yet
    failures(session, "a@example.com", "10.9.9.9", [now - timedelta(seconds=100)])
    assert wait_for(session, "a@example.com", "192.0.2.1", now) == 300  # the 50th: until the oldest ages out


def test_per_address_limit_covers_every_account(session):
    now = utcnow()
    for i in range(20):
        failures(session, f"user{i}@example.com", "203.0.113.7", [now - timedelta(seconds=100 - i)])
    assert wait_for(session, "fresh@example.com", "203.0.113.7", now) == 900 - 100
    assert wait_for(session, "fresh@example.com", "198.51.100.2", now) is None


def test_every_limit_is_named_in_config_and_readme(app):
    readme = (ROOT / "README.md").read_text()
    defaults = (ROOT / "config" / "default.py").read_text()
    for name, value in (("LOGIN_MAX_FAILURES_PER_ACCOUNT_ADDRESS", 5), ("LOGIN_MAX_FAILURES_PER_ACCOUNT", 50),
                        ("LOGIN_MAX_FAILURES_PER_ADDRESS", 20), ("LOGIN_THROTTLE_WINDOW", 900),
                        ("LOGIN_THROTTLE_DELAY", 30)):
        assert app.config[name] == value
        assert re.search(rf"^{name} = ", defaults, re.M), name
        assert re.search(rf"\| `INCIDENTS_{name}` \| `{value}` \|", readme), name


def _browser(app, address: str):
    """A browser of its own, usable from another thread (the tests' client shares this thread's context)."""
    browser = FlaskClient(app, app.response_class, use_cookies=True)
    browser.environ_base["REMOTE_ADDR"] = address
    page = browser.get("/login", follow_redirects=True).get_data(as_text=True)  # or /setup
    return browser, re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def run_together(app, jobs) -> list:
    """Run each job(browser, csrf) in its own thread, all released at once; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i):
        try:
            browser = _browser(app, "203.0.113.7")  # in the thread: this thread's context, not the test's
            barrier.wait()
            results[i] = jobs[i](*browser)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_failures_all_count(app, session, monkeypatch):
    """Eight wrong passwords at once: exactly five are checked, three refused (count and insert are one step).
    Meaningful on PostgreSQL; on SQLite the write lock serialises the requests anyway."""
    email = make_user(email="raced@example.com").email  # threads must not touch this thread's ORM session
    session.rollback()  # nor wait for its transaction (SQLite's write lock)
    real = services.get_user_by_email

    def slow_lookup(*args, **kwargs):  # widens the gap between the throttle's count and its insert
        threading.Event().wait(0.1)
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "get_user_by_email", slow_lookup)
    job = lambda browser, token: browser.post(  # noqa: E731
        "/login", data={"email": email, "password": "wrong guess", "csrf_token": token}).status_code
    codes = run_together(app, [job] * 8)
    assert sorted(map(str, codes)) == ["401"] * 5 + ["429"] * 3, codes
    session.rollback()
    assert session.scalar(sa.select(sa.func.count(LoginAttempt.id))) == 5


def test_concurrent_first_run_setups_make_one_admin(app, session, monkeypatch):
    """Four setups at once make one admin, the others are sent to sign in (meaningful on PostgreSQL)."""
    from incidents.auth.models import User

    real = services.hash_password

    def slow_hash(password):  # widens the gap between "no user yet" and the insert
        threading.Event().wait(0.2)
        return real(password)

    monkeypatch.setattr(services, "hash_password", slow_hash)

    def setup(n):
        return lambda browser, token: browser.post("/setup", data={
            "csrf_token": token, "name": f"Admin {n}", "email": f"admin{n}@example.com",
            "password": "a long password", "password2": "a long password"}).status_code

    codes = run_together(app, [setup(n) for n in range(4)])
    assert all(code == 302 for code in codes), codes
    session.rollback()
    assert session.scalar(sa.select(sa.func.count(User.id))) == 1

