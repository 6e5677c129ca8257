"""The weekly report end to end: built from the hand-built history, sent through a real SMTP server on loopback,
parsed back from MIME, and sent once per (week, team, recipient) however often and however concurrently it runs."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from incidents.mail import message_id_for
from incidents.notify.models import Channel, DeliveryStatus, NotificationLog
from incidents.report import services
from incidents.report.queries import Week
from tests.report.history import UTC_TZ

SENDER = "Incidents <incidents@example.org>"
W48 = Week.parse("2026-W48", UTC_TZ)
W47 = Week.parse("2026-W47", UTC_TZ)
MONDAY_AFTER_W48 = datetime(2026, 11, 30, 9, 5, tzinfo=UTC)  # W48's report is due Mon 30 Nov 09:00 UTC


@pytest.fixture
def report_config(app, smtp_server):
    changes = {"SMTP_URL": smtp_server.url, "SMTP_TIMEOUT": 5, "MAIL_FROM": SENDER,
               "BASE_URL": "https://incidents.example.org", "REPORT_RECIPIENTS": "cto@example.com",
               "REPORT_WEEKDAY": "mon", "REPORT_TIME": "09:00", "REPORT_TIMEZONE": "UTC"}
    saved = {k: app.config.get(k) for k in changes}
    app.config.update(changes)
    yield app.config
    app.config.update(saved)


@pytest.fixture
def lists(session, history, report_config):
    services.set_recipients(session, history["payments"].id, "lead@example.com, Rita <rita@example.com>")
    services.set_recipients(session, None, "vp@example.com")
    session.commit()
    return history


def log_rows(session) -> dict[tuple[str, str], NotificationLog]:
    session.expire_all()
    return {(r.event_key, r.recipient): r for r in session.scalars(sa.select(NotificationLog))}


def figures(text: str) -> dict[str, tuple[str, str, str]]:
    """The comparison table of the text part: label -> (this week, last week, verdict)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(.{26}) +(\S+) +(\S+) +[▲▼=] (better|worse|no change)$", line)
        if m:
            out[m.group(1).strip()] = (m.group(2), m.group(3), m.group(4))
    return out


def section(text: str, title: str) -> list[str]:
    """The lines of a text-part section ("Overdue (2)" ... up to the blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title + " ("))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start + 1:end]


# --- when ------------------------------------------------------------------------------------------------


def test_the_due_week_follows_the_configured_day_time_and_zone(report_config):
    assert services.due_week(MONDAY_AFTER_W48, report_config) == W48
    assert services.due_week(MONDAY_AFTER_W48 - timedelta(minutes=10), report_config) == W47  # 08:55: not yet
    report_config.update(REPORT_WEEKDAY="fri", REPORT_TIME="17:30", REPORT_TIMEZONE="Europe/Berlin")
    berlin = services.report_tz(report_config)
    assert services.send_moment(Week.parse("2026-W48", berlin), report_config) == datetime(
        2026, 12, 4, 16, 30, tzinfo=UTC)  # Friday of the next week, 17:30 in Berlin (CET)
    assert services.due_week(datetime(2026, 12, 4, 16, 29, tzinfo=UTC), report_config).label == "2026-W47"
    assert services.due_week(datetime(2026, 12, 4, 16, 30, tzinfo=UTC), report_config).label == "2026-W48"
    report_config["REPORT_WEEKDAY"] = "someday"
    with pytest.raises(ValueError, match="REPORT_WEEKDAY"):
        services.report_schedule(report_config)


# --- what --------------------------------------------------------------------------------------------------


def test_each_recipient_gets_its_report_with_the_figures_of_the_week(session, lists, smtp_server):
    result = services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    team_key = f"report:weekly:2026-W48:team:{lists['payments'].id}"
    assert set(result) == {"report:weekly:2026-W48:all", team_key}  # Search has no recipients
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "cto@example.com", "lead@example.com", "rita@example.com", "vp@example.com"]

    [mail] = smtp_server.to("lead@example.com")
    msg = mail.message
    assert msg["Subject"] == "Tech-debt report 2026-W48 · Payments: 3 open, 1 repaid, 2 overdue"
    assert msg["From"] == SENDER and msg["To"] == "lead@example.com"
    assert msg["Message-ID"] == message_id_for(f"{team_key}/lead@example.com", SENDER)
    assert msg.get_content_type() == "multipart/alternative"
    assert figures(mail.text) == {
        "Opened": ("2", "1", "worse"),
        "Repaid": ("1", "0", "better"),
        "Open balance": ("3", "2", "worse"),
        "Open points": ("14", "13", "worse"),
        "Overdue": ("2", "1", "worse"),
        "Repayment rate (4 weeks)": ("33%", "25%", "better"),
    }
    overdue = section(mail.text, "Overdue")
    assert overdue == [f"- Item b [{lists['source'].ref}] owner Rita Responder, due 2026-11-14, age 26 d",
                       f"- Item f [{lists['source'].ref}] owner Sam Owner, due 2026-11-24, age 5 d"]
    assert section(mail.text, "Due next week") == [
        f"- Item d [{lists['source'].ref}] owner Sam Owner, due 2026-12-02"]
    assert section(mail.text, "Repaid this week") == [
        f"- Item e [{lists['source'].ref}] thanks, Sam Owner (2 pts)"]
    assert section(mail.text, "Incidents this week") == ["No incidents this week."]
    w48_chart = [line for line in mail.text.splitlines() if line.startswith("W48 o")]
    assert w48_chart == ["W48 o ##                   2"]

    html = mail.html
    assert "Tech-debt report · Payments" in html and "https://incidents.example.org/postmortems/" in html
    assert re.search(r'<td width="\d+" height="9" bgcolor="#36b37e"', html)  # the repaid bars: table cells
    assert "<script" not in html and "Thanks, Sam Owner · 2 pts" in html
    for label, this, last in (("Opened", "2", "1"), ("Overdue", "2", "1"), ("Repayment rate (4 weeks)", "33%", "25%")):
        assert re.search(rf">{re.escape(label)}</td>\s*<td[^>]*>{this}</td>\s*<td[^>]*>{last}</td>", html), label


def test_the_all_teams_report_flags_repeat_incidents_with_their_times(session, lists, smtp_server):
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    [mail] = smtp_server.to("cto@example.com")
    assert mail.message["Subject"] == "Tech-debt report 2026-W48 · All teams: 4 open, 1 repaid, 3 overdue"
    by_fp, other = lists["by_fp"], lists["other"]
    assert section(mail.text, "Incidents this week") == [
        f"- {by_fp.ref} SEV3 Indexer cannot reach checkout: acknowledged in 3m, resolved in 1h 30m",
        f"  ! repeat, 1 item still open from {other.ref}"]
    assert f"repeat, 1 item still open from {other.ref}" in mail.html


def test_a_team_week_with_a_repeat_incident(session, lists, report_config):
    report = services.build_weekly_report(session, report_config, week=W47, team=lists["payments"],
                                          now=MONDAY_AFTER_W48)
    [line] = report.incidents
    assert (line.incident.id, line.tta, line.ttr) == (lists["repeat"].id, 12 * 60, None)
    assert line.repeat.text == f"repeat, 2 items still open from {lists['source'].ref}"
    assert [i.title for i in report.written_off] == ["Item c"]
    text = services.render_weekly_report(report).text
    assert "- Item c: Replaced by the platform rewrite" in text
    assert "acknowledged in 12m, resolved in —" in text


# --- exactly once --------------------------------------------------------------------------------------------


def services_config():
    from flask import current_app

    return current_app.config


def test_running_twice_delivers_once(session, lists, smtp_server):
    first = services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    second = services.send_due_reports(session, services_config(), MONDAY_AFTER_W48 + timedelta(minutes=15))
    assert sum(len(r.sent) for r in first.values()) == 4
    assert second == {}  # every delivery of the week is settled: nothing is even rendered again
    again = services.send_weekly_report(session, services_config(), week=W48, team=lists["payments"],
                                        now=MONDAY_AFTER_W48)
    assert again.sent == [] and sorted(again.skipped) == ["email:lead@example.com", "email:rita@example.com"]
    assert len(smtp_server.messages) == 4
    rows = log_rows(session)
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    assert all(r.attempts == 1 and r.channel == Channel.EMAIL and r.incident_id is None for r in rows.values())


def test_two_workers_at_the_same_moment_deliver_once(app, session, lists, smtp_server):
    session.commit()
    barrier = threading.Barrier(2)
    outcomes: list = []
    errors: list = []

    def worker():
        with app.app_context():
            from incidents.extensions import db

            barrier.wait()
            try:
                outcomes.append(services.send_due_reports(db.session, app.config, MONDAY_AFTER_W48))
            except Exception as e:  # pragma: no cover - surfaced by the assertion below
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = sorted(name for outcome in outcomes for r in outcome.values() for name in r.sent)
    assert sent == ["email:cto@example.com", "email:lead@example.com", "email:rita@example.com",
                    "email:vp@example.com"]
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "cto@example.com", "lead@example.com", "rita@example.com", "vp@example.com"]
    # Whatever one worker found busy, a later tick settles without sending again.
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48 + timedelta(minutes=15))
    assert len(smtp_server.messages) == 4


def test_smtp_down_is_retried_by_the_next_tick_and_delivered_once(session, lists, smtp_server, admin_client):
    smtp_server.stop()
    try:
        down = services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    finally:
        smtp_server.start()
    assert sorted(n for r in down.values() for n in r.failed) == [
        "email:cto@example.com", "email:lead@example.com", "email:rita@example.com", "email:vp@example.com"]
    rows = log_rows(session)
    assert {r.status for r in rows.values()} == {DeliveryStatus.FAILED}
    page = admin_client.get("/debt/settings").get_data(as_text=True)  # reported in the UI
    assert page.count('class="delivery-failed"') == 4 and "SMTP delivery via 127.0.0.1" in page

    smtp_server.fail_next(1)  # the next tick: one recipient still refused with a 451, the others go out
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48 + timedelta(minutes=15))
    assert len(smtp_server.messages) == 3
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48 + timedelta(minutes=30))
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48 + timedelta(minutes=45))
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "cto@example.com", "lead@example.com", "rita@example.com", "vp@example.com"]
    rows = log_rows(session)
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    assert sorted(r.attempts for r in rows.values()) == [2, 2, 2, 3]


def test_a_run_that_died_mid_send_is_taken_over_after_its_lease(session, lists, smtp_server):
    key = "report:weekly:2026-W48:all"
    # A worker claimed cto@ and died before SMTP answered: the row stays "sending" with an old claim.
    session.add(NotificationLog(event_key=key, channel=Channel.EMAIL, recipient="cto@example.com",
                                status=DeliveryStatus.SENDING, claimed_at=datetime.now(UTC) - timedelta(hours=1)))
    session.commit()
    services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "cto@example.com", "lead@example.com", "rita@example.com", "vp@example.com"]
    assert log_rows(session)[(key, "cto@example.com")].attempts == 2


def test_a_fresh_claim_elsewhere_is_left_alone(session, lists, smtp_server):
    key = "report:weekly:2026-W48:all"
    session.add(NotificationLog(event_key=key, channel=Channel.EMAIL, recipient="cto@example.com",
                                status=DeliveryStatus.SENDING, claimed_at=datetime.now(UTC)))
    session.commit()
    result = services.send_due_reports(session, services_config(), MONDAY_AFTER_W48)
    assert result[key].busy == ["email:cto@example.com"] and not smtp_server.to("cto@example.com")


def test_recipients_are_validated_and_deduplicated(session, history, report_config):
    from incidents.errors import Invalid

    assert services.set_recipients(session, None, "A@Example.com; a@example.com\nb@example.com") == [
        "a@example.com", "b@example.com"]
    assert services.recipients_for(session, report_config, None) == ["cto@example.com", "a@example.com",
                                                                     "b@example.com"]
    with pytest.raises(Invalid):
        services.set_recipients(session, history["payments"].id, "not an address")


def test_the_periodic_job_sends_the_due_week_through_the_queue(app, session, lists, smtp_server):
    from incidents.database import utcnow
    from incidents.jobs import get_queue
    from incidents.report.jobs import send_weekly_reports

    week = services.due_week(utcnow(), app.config)
    get_queue(app).enqueue(send_weekly_reports)  # immediate in tests: runs inline, in its own app context
    get_queue(app).enqueue(send_weekly_reports)
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "cto@example.com", "lead@example.com", "rita@example.com", "vp@example.com"]
    assert all(f"report {week.label}" in m.message["Subject"] for m in smtp_server.messages)
