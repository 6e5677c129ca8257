"""Post-mortem published and action item overdue: through jobs after commit, to Slack (local receiver) and
e-mail (loopback SMTP), once each thanks to the notification log."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from incidents.action_item import services as items
from incidents.jobs import get_queue
from incidents.notify.jobs import queue_overdue_reminders, scan_overdue_action_items
from incidents.postmortem import services as pm_services
from tests.factories import make_service, make_user
from tests.notify.conftest import GLOBAL_HOOK
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident

TODAY = date(2026, 11, 26)


@pytest.fixture
def automatic(app, notify_config):
    app.config["NOTIFY_ON_COMMIT"] = True
    yield
    app.config["NOTIFY_ON_COMMIT"] = False


def test_publishing_a_postmortem_is_announced_after_the_commit(automatic, session, slack_server, smtp_server):
    service = make_service(name="Checkout API")
    author = make_user(email="author@example.com")
    pm = fill_for_publishing(make_postmortem(make_resolved_incident(service_id=service.id, severity="SEV3")), by=author)
    pm_services.submit_for_review(session, pm, by=author)
    session.commit()
    slack_server.reset()

    pm_services.publish_postmortem(session, pm, by=author)
    session.flush()
    assert slack_server.to(GLOBAL_HOOK) == []  # nothing leaves before the commit
    session.commit()
    [post] = slack_server.to(GLOBAL_HOOK)
    assert post["text"].startswith(f"[SEV3] Post-mortem published for {pm.incident.ref}")
    assert get_queue().failures == []


def test_a_rolled_back_publish_announces_nothing(automatic, session, slack_server):
    author = make_user()
    pm = fill_for_publishing(make_postmortem(make_resolved_incident(severity="SEV3")), by=author)
    pm_services.submit_for_review(session, pm, by=author)
    session.commit()
    slack_server.reset()
    pm_services.publish_postmortem(session, pm, by=author)
    session.rollback()
    session.commit()
    assert slack_server.to(GLOBAL_HOOK) == []


@pytest.fixture
def overdue_world(session, notify_config):
    owner = make_user(email="owner@example.com", name="Olive Owner")
    pm = make_postmortem(make_resolved_incident(severity="SEV4"))
    late = items.create_action_item(session, pm, title="Add a timeout to the PSP client", owner_id=owner.id,
                                    due_date=TODAY - timedelta(days=1))
    ancient = items.create_action_item(session, pm, title="Old debt", owner_id=owner.id,
                                       due_date=TODAY - timedelta(days=30))
    done = items.create_action_item(session, pm, title="Done already", owner_id=owner.id,
                                    due_date=TODAY - timedelta(days=2))
    items.update_action_item(session, done, status="done")
    not_yet = items.create_action_item(session, pm, title="Due later", owner_id=owner.id,
                                       due_date=TODAY + timedelta(days=5))
    session.commit()
    return {"owner": owner, "pm": pm, "late": late, "ancient": ancient, "not_yet": not_yet}


def test_the_owner_gets_one_email_when_an_item_becomes_overdue(session, overdue_world, smtp_server, slack_server):
    assert queue_overdue_reminders(TODAY) == 1  # not the ancient one, the done one, or the one due later
    assert queue_overdue_reminders(TODAY) == 1  # the next scan sees it again...
    assert queue_overdue_reminders(TODAY + timedelta(days=1)) == 1  # ...and the day after
    [mail] = smtp_server.to("owner@example.com")  # ...but the owner hears once
    ref = overdue_world["pm"].incident.ref
    # strip(): a subject longer than one header line is folded before its first word (INC-100 and up).
    assert mail.message["Subject"].strip() == f"[SEV4] Action item overdue for {ref}: Add a timeout to the PSP client"
    assert "Olive Owner" in mail.text and str(TODAY - timedelta(days=1)) in mail.text
    [post] = slack_server.to(GLOBAL_HOOK)  # the channel hears it once too, whatever the severity
    assert "Add a timeout to the PSP client" in post["text"]
    assert get_queue().failures == []


def test_a_new_due_date_is_a_new_reminder(session, overdue_world, smtp_server):
    queue_overdue_reminders(TODAY)
    items.update_action_item(session, overdue_world["late"], due_date=TODAY + timedelta(days=3))
    session.commit()
    assert queue_overdue_reminders(TODAY + timedelta(days=2)) == 0
    assert queue_overdue_reminders(TODAY + timedelta(days=4)) == 1
    assert len(smtp_server.to("owner@example.com")) == 2


def test_overdue_reminder_is_retried_when_smtp_is_down(session, overdue_world, smtp_server, slack_server):
    smtp_server.stop()
    try:
        queue_overdue_reminders(TODAY)
    finally:
        smtp_server.start()
    [(name, _, _)] = get_queue().failures  # the job failed and huey will retry it
    assert name.endswith("send_notification") and len(slack_server.to(GLOBAL_HOOK)) == 1
    get_queue().failures.clear()
    queue_overdue_reminders(TODAY)  # the retry (or tomorrow's scan): the e-mail goes, Slack is not repeated
    assert len(smtp_server.to("owner@example.com")) == 1 and len(slack_server.to(GLOBAL_HOOK)) == 1


def test_the_scan_runs_daily_and_the_weekly_report_every_quarter_hour(app):
    from datetime import datetime

    huey = get_queue(app).huey
    names = {t.name for t in huey.read_periodic(datetime(2026, 11, 30, 6, 0))}
    assert {"scan_overdue_action_items", "send_weekly_reports"} <= names
    names = {t.name for t in huey.read_periodic(datetime(2026, 11, 30, 9, 15))}
    assert "send_weekly_reports" in names and "scan_overdue_action_items" not in names
    names = {t.name for t in huey.read_periodic(datetime(2026, 11, 30, 9, 7))}
    assert not {"scan_overdue_action_items", "send_weekly_reports"} & names
    assert scan_overdue_action_items.schedule is not None
