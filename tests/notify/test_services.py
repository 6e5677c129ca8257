"""Incident notifications end to end: real SMTP on loopback, a local Slack receiver, the real delivery log."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.incident import services as incidents
from incidents.incident.models import TimelineEntry
from incidents.mail import message_id_for
from incidents.notify import services as notify
from incidents.notify.models import Channel, DeliveryStatus, NotificationLog
from incidents.notify.services import Event, NotificationIncomplete, send_incident_notification
from tests.factories import make_incident, make_service, make_team, make_user
from tests.notify.conftest import GLOBAL_HOOK, TEAM_HOOK

BASE = "https://incidents.example.org"


@pytest.fixture
def world(session, notify_config, slack_server):
    """Payments team with its own Slack hook, a service, and three subscribers with different wishes."""
    team = make_team(name="Payments")
    catalog.update_team(session, team, slack_webhook_url=slack_server.url(TEAM_HOOK))
    session.commit()
    service = make_service(name="Checkout API", team_id=team.id)
    other = make_team(name="Search")
    rita = make_user(email="rita@example.com", name="Rita Responder")
    sam = make_user(email="sam@example.com", name="Sam Allsev", role="viewer")
    olga = make_user(email="olga@example.com", name="Olga Other")
    gone = make_user(email="gone@example.com", name="Gone User", active=False)
    notify.subscribe(session, rita, team_id=team.id, severities=["SEV1", "SEV2"])
    notify.subscribe(session, rita, team_id=None, severities=["SEV1"])  # two matches: still one e-mail
    notify.subscribe(session, sam, team_id=None, severities=["SEV1", "SEV2", "SEV3", "SEV4"])
    notify.subscribe(session, olga, team_id=other.id, severities=["SEV1"])
    notify.subscribe(session, gone, team_id=None, severities=["SEV1"])
    session.commit()
    return {"team": team, "service": service, "other": other}


def sev1(world, **overrides):
    return make_incident(**({"title": "Checkout returns 502", "severity": "SEV1", "service_id": world["service"].id}
                            | overrides))


def log_rows(session):
    session.expire_all()
    return {(r.channel.value, r.recipient): r for r in session.scalars(sa.select(NotificationLog))}


# --- events -------------------------------------------------------------------------------------------


def test_timeline_entries_map_to_events(session, world):
    incident = sev1(world)
    created, = incident.timeline
    assert notify.notification_events_for_timeline_entry(created) == [Event.opened(incident.id)]
    incidents.acknowledge_incident(session, incident)
    incidents.add_note(session, incident, "looking")
    session.commit()
    status, note = session.scalars(sa.select(TimelineEntry).where(TimelineEntry.id != created.id)
                                   .order_by(TimelineEntry.id)).all()
    [event] = notify.notification_events_for_timeline_entry(status)
    assert (event.kind, event.key, event.from_status, event.to_status) == (
        "status_changed", f"timeline:{status.id}", "triggered", "acknowledged")
    assert notify.notification_events_for_timeline_entry(note) == []
    assert Event.from_dict(event.as_dict()) == event
    assert Event.action_item_overdue(9, date(2026, 11, 26)).key == "action_item:9:overdue:2026-11-26"


# --- recipients -----------------------------------------------------------------------------------------


def recipients_of(session, incident, event, config):
    """Who hears `event`, decided from the incident's stored row as the job reads it."""
    return notify.recipients(session, notify.Audience.load(session, incident.id), event, config)


def test_recipients_of_a_sev1_opening(session, notify_config, world, slack_server):
    incident = sev1(world)
    deliveries = recipients_of(session, incident, Event.opened(incident.id), notify_config)
    assert [(d.channel.value, d.recipient) for d in deliveries] == [
        ("slack", "global"), ("slack", f"team:{world['team'].id}"),
        ("email", "rita@example.com"), ("email", "sam@example.com"),
    ]
    assert deliveries[1].target == slack_server.url(TEAM_HOOK)
    assert "team-secret" not in repr(deliveries[1])


def test_low_severity_opening_skips_slack_but_reaches_subscribers_who_asked(session, notify_config, world):
    incident = sev1(world, severity="SEV3")
    deliveries = recipients_of(session, incident, Event.opened(incident.id), notify_config)
    assert [(d.channel.value, d.recipient) for d in deliveries] == [("email", "sam@example.com")]
    published = recipients_of(session, incident, Event.postmortem_published(4), notify_config)
    assert [d.recipient for d in published if d.channel == Channel.SLACK] == ["global", f"team:{world['team'].id}"]


def test_team_hook_equal_to_the_global_one_posts_once(session, notify_config, world):
    catalog.update_team(session, world["team"], slack_webhook_url=notify_config["SLACK_WEBHOOK_URL"])
    incident = sev1(world)
    slack = [d for d in recipients_of(session, incident, Event.opened(incident.id), notify_config)
             if d.channel == Channel.SLACK]
    assert [d.recipient for d in slack] == ["global"]


def test_no_smtp_means_no_email_deliveries(session, notify_config, world):
    notify_config["SMTP_URL"] = ""
    incident = sev1(world)
    assert {d.channel for d in recipients_of(session, incident, Event.opened(incident.id), notify_config)} == {
        Channel.SLACK}


# --- rendering and sending ----------------------------------------------------------------------------------


def test_an_event_nobody_can_hear_reads_one_row_and_loads_no_incident(session, notify_config, world):
    """No hook anywhere and no mail server: the job reads the incident's audience row and stops there."""
    notify_config["SLACK_WEBHOOK_URL"] = notify_config["SMTP_URL"] = ""
    catalog.update_team(session, world["team"], slack_webhook_url="")
    incident = sev1(world)
    incident_id = incident.id
    session.commit()
    session.expunge_all()
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(" ".join(statement.split()))

    engine = session.get_bind()
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        report = send_incident_notification(incident_id, Event.opened(incident_id))
        missing = send_incident_notification(incident_id + 1000, Event.opened(incident_id + 1000))
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert report.sent == report.skipped == report.failed == [] and missing.sent == []
    reads = [q for q in seen if not q.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    assert len(reads) == 2 and all("incident.title" not in q for q in reads)  # one row each, no ORM load
    assert log_rows(session) == {}


def test_opened_notification_reaches_slack_and_subscribers(session, world, smtp_server, slack_server):
    incident = sev1(world, title="Checkout <script> returns 502 & times out")
    ref, url = incident.ref, f"{BASE}/incidents/{incident.ref}"

    report = send_incident_notification(incident.id, Event.opened(incident.id).as_dict())

    assert sorted(report.sent) == ["email:rita@example.com", "email:sam@example.com", "slack:global",
                                   f"slack:team:{world['team'].id}"]
    global_post, = slack_server.to(GLOBAL_HOOK)
    assert slack_server.to(TEAM_HOOK) == [global_post]
    assert global_post["text"] == f"[SEV1] {ref} opened: Checkout <script> returns 502 & times out (triggered) {url}"
    head, body, actions = global_post["blocks"]
    assert head["text"]["text"] == f"*<{url}|{ref} opened: Checkout &lt;script&gt; returns 502 &amp; times out>*"
    assert body["text"]["text"] == "A SEV1 incident was declared."
    assert [f["text"] for f in body["fields"]] == ["*Severity*\nSEV1", "*Status*\ntriggered",
                                                   "*Service*\nCheckout API", "*Team*\nPayments"]
    assert actions["elements"][0]["url"] == url

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["rita@example.com", "sam@example.com"]
    mail, = smtp_server.to("rita@example.com")
    assert mail.message["To"] == "Rita Responder <rita@example.com>"
    assert mail.message["Subject"] == f"[SEV1] {ref} opened: Checkout <script> returns 502 & times out"
    assert mail.message["From"] == "Incidents <incidents@example.org>"
    assert mail.message["X-Incident"] == ref
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert mail.message["Message-ID"].endswith("@example.org>")
    text = mail.text
    assert "A SEV1 incident was declared." in text
    assert "Service:   Checkout API" in text and "Team:      Payments" in text
    assert f"Open {ref}: {url}" in text
    assert f"{BASE}/account/notifications" in text
    html = mail.html
    assert "<script>" not in html and "Checkout &lt;script&gt; returns 502 &amp; times out" in html
    assert f'href="{url}"' in html and f'href="{BASE}/account/notifications"' in html
    assert ">Checkout API<" in html and ">Payments<" in html


def test_stored_title_with_line_breaks_still_gets_its_email(session, world, smtp_server, slack_server):
    """Data stored before titles were checked (or by any other path) must never make an e-mail unbuildable."""
    from incidents.incident.models import Incident

    incident = sev1(world)
    session.execute(sa.update(Incident).where(Incident.id == incident.id)
                    .values(title="Checkout\r\nBcc: attacker@example.com\tdown"))
    session.commit()

    report = send_incident_notification(incident.id, Event.opened(incident.id).as_dict())

    assert "email:rita@example.com" in report.sent and report.complete
    mail, = smtp_server.to("rita@example.com")
    assert mail.message["Subject"] == f"[SEV1] {incident.ref} opened: Checkout Bcc: attacker@example.com down"
    assert mail.message["Bcc"] is None
    assert all("attacker@example.com" not in m.rcpt_tos for m in smtp_server.messages)


def test_status_change_says_from_and_to(session, world, smtp_server, slack_server):
    incident = sev1(world)
    incidents.resolve_incident(session, incident)
    session.commit()
    entry = incident.timeline[-1]
    [event] = notify.notification_events_for_timeline_entry(entry)
    send_incident_notification(incident.id, event)
    post, = slack_server.to(GLOBAL_HOOK)
    assert post["blocks"][1]["text"]["text"] == "Status changed from triggered to resolved."
    mail = smtp_server.to("sam@example.com")[0]
    assert mail.message["Subject"] == f"[SEV1] {incident.ref} resolved: Checkout returns 502"
    assert "Status:    resolved" in mail.text


def test_postmortem_and_action_item_events_render_generic_messages(session, world, smtp_server, slack_server):
    incident = sev1(world, severity="SEV3")
    send_incident_notification(incident.id, Event.postmortem_published(12))
    send_incident_notification(incident.id, Event.action_item_overdue(34, date(2026, 11, 26)))
    pm, item = slack_server.to(GLOBAL_HOOK)
    assert pm["text"].startswith(f"[SEV3] Post-mortem published for {incident.ref}: Checkout returns 502")
    assert item["blocks"][1]["text"]["text"] == "Action item #34 from this incident is past its due date."
    subjects = [m.message["Subject"] for m in smtp_server.to("sam@example.com")]
    assert subjects == [f"[SEV3] Post-mortem published for {incident.ref}: Checkout returns 502",
                        f"[SEV3] Action item overdue for {incident.ref}: Checkout returns 502"]


# --- exactly once ---------------------------------------------------------------------------------------------


def test_running_twice_sends_once(session, world, smtp_server, slack_server):
    incident = sev1(world)
    event = Event.opened(incident.id)
    first = send_incident_notification(incident.id, event)
    second = send_incident_notification(incident.id, event)

    assert len(first.sent) == 4 and second.sent == [] and sorted(second.skipped) == sorted(first.sent)
    assert len(slack_server.to(GLOBAL_HOOK)) == 1 and len(slack_server.to(TEAM_HOOK)) == 1
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["rita@example.com", "sam@example.com"]
    rows = log_rows(session)
    assert {r.status for r in rows.values()} == {DeliveryStatus.SENT}
    assert all(r.attempts == 1 and r.sent_at is not None and r.incident_id == incident.id for r in rows.values())
    assert not any("secret" in recipient for _, recipient in rows)  # webhook URLs never reach the log


def test_two_workers_at_once_still_send_once(app, session, world, smtp_server, slack_server):
    incident_id = sev1(world).id
    session.commit()  # the test's session holds no transaction while the workers run (SQLite locks)
    barrier = threading.Barrier(2)
    outcomes: list = []

    def worker():
        with app.app_context():
            barrier.wait()
            try:
                outcomes.append(send_incident_notification(incident_id, Event.opened(incident_id)))
            except NotificationIncomplete as e:  # the other worker held a delivery at that moment
                outcomes.append(e.report)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(outcomes) == 2
    assert sorted(outcomes[0].sent + outcomes[1].sent) == ["email:rita@example.com", "email:sam@example.com",
                                                           "slack:global", f"slack:team:{world['team'].id}"]
    assert len(slack_server.to(GLOBAL_HOOK)) == 1 and len(slack_server.to(TEAM_HOOK)) == 1
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["rita@example.com", "sam@example.com"]


def test_a_delivery_in_flight_elsewhere_is_not_repeated_and_asks_for_a_retry(app, session, notify_config, world,
                                                                             smtp_server, slack_server):
    notify_config["SLACK_TIMEOUT"] = 120  # A waits for as long as B runs, however slow the machine
    incident_id = sev1(world).id
    session.commit()
    slack_server.hold()  # worker A's first Slack post arrives, then waits
    reports: list = []

    def worker_a():
        with app.app_context():
            reports.append(send_incident_notification(incident_id, Event.opened(incident_id)))

    a = threading.Thread(target=worker_a)
    a.start()
    try:
        assert slack_server.arrived.wait(30), "worker A never posted"
        with pytest.raises(NotificationIncomplete) as err:  # worker B: A holds slack:global
            send_incident_notification(incident_id, Event.opened(incident_id))
    finally:
        slack_server.release()
        a.join()
    b = err.value.report
    assert b.busy == ["slack:global"]
    assert sorted(b.sent) == ["email:rita@example.com", "email:sam@example.com", f"slack:team:{world['team'].id}"]
    [a_report] = reports
    assert a_report.sent == ["slack:global"]
    assert sorted(a_report.skipped) == sorted(b.sent)

    retry = send_incident_notification(incident_id, Event.opened(incident_id))  # B's retry: all done
    assert retry.sent == [] and len(retry.skipped) == 4
    assert len(slack_server.to(GLOBAL_HOOK)) == 1 and len(slack_server.to(TEAM_HOOK)) == 1
    assert len(smtp_server.messages) == 2


def test_smtp_down_is_recorded_and_a_retry_sends_exactly_once(session, world, smtp_server, slack_server):
    incident = sev1(world)
    event = Event.opened(incident.id)
    smtp_server.stop()
    with pytest.raises(NotificationIncomplete) as err:
        send_incident_notification(incident.id, event)
    assert sorted(err.value.report.failed) == ["email:rita@example.com", "email:sam@example.com"]
    assert len(err.value.report.sent) == 2  # Slack went out regardless
    rows = log_rows(session)
    failed = rows[("email", "rita@example.com")]
    assert failed.status == DeliveryStatus.FAILED and failed.sent_at is None
    assert f"127.0.0.1:{smtp_server.port}" in failed.last_error

    smtp_server.start()
    retry = send_incident_notification(incident.id, event)
    assert sorted(retry.sent) == ["email:rita@example.com", "email:sam@example.com"]
    assert len(retry.skipped) == 2
    assert send_incident_notification(incident.id, event).sent == []

    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["rita@example.com", "sam@example.com"]
    assert len(slack_server.to(GLOBAL_HOOK)) == 1
    rows = log_rows(session)
    assert (rows[("email", "rita@example.com")].status, rows[("email", "rita@example.com")].attempts) == (
        DeliveryStatus.SENT, 2)
    # The retried mail carries the Message-ID the first attempt would have had.
    assert smtp_server.to("rita@example.com")[0].message["Message-ID"] == message_id_for(
        f"{event.key}/rita@example.com", "Incidents <incidents@example.org>")


def test_temporary_and_permanent_failures(session, world, smtp_server, slack_server):
    incident = sev1(world)
    event = Event.opened(incident.id)
    slack_server.fail_next(1, 503, "service_unavailable")  # the global hook (first) fails for now
    smtp_server.fail_next(1, "550 5.1.1 No such user")  # rita's mail (first e-mail) is refused for good
    with pytest.raises(NotificationIncomplete) as err:
        send_incident_notification(incident.id, event)
    report = err.value.report
    assert report.failed == ["slack:global"]
    assert report.rejected == ["email:rita@example.com"]
    rows = log_rows(session)
    assert rows[("slack", "global")].last_error == "Slack webhook answered 503: service_unavailable"
    assert rows[("email", "rita@example.com")].status == DeliveryStatus.REJECTED
    assert "550" in rows[("email", "rita@example.com")].last_error

    retry = send_incident_notification(incident.id, event)  # complete now: the rejection is not retried
    assert retry.sent == ["slack:global"]
    assert "email:rita@example.com" in retry.skipped
    assert smtp_server.to("rita@example.com") == []
    assert len(slack_server.to(GLOBAL_HOOK)) == 1


def test_a_claim_abandoned_past_its_lease_is_taken_over(session, notify_config, world, smtp_server, slack_server):
    incident = sev1(world)
    event = Event.opened(incident.id)
    stale = utcnow() - timedelta(seconds=notify_config["NOTIFY_SEND_LEASE"] + 60)
    session.add(NotificationLog(event_key=event.key, channel=Channel.SLACK, recipient="global",
                                incident_id=incident.id, status=DeliveryStatus.SENDING, claimed_at=stale))
    session.add(NotificationLog(event_key=event.key, channel=Channel.EMAIL, recipient="sam@example.com",
                                incident_id=incident.id, status=DeliveryStatus.SENDING, claimed_at=utcnow()))
    session.commit()  # a crashed worker (slack) and a live one (sam's e-mail)

    with pytest.raises(NotificationIncomplete) as err:
        send_incident_notification(incident.id, event)
    assert "slack:global" in err.value.report.sent
    assert err.value.report.busy == ["email:sam@example.com"]
    assert smtp_server.to("sam@example.com") == []
    assert log_rows(session)[("slack", "global")].attempts == 2


def test_deleted_incident_sends_nothing(session, world, smtp_server, slack_server):
    report = send_incident_notification(987654, Event.opened(987654))
    assert report.sent == [] and report.complete
    assert slack_server.posts == [] and smtp_server.messages == []


def test_the_severity_badge_has_the_apps_colours_in_the_stylesheet_and_the_email(app, session):
    """SEV3 was amber in the app and blue in the e-mail: both now read SEVERITY_COLOURS."""
    import re
    from pathlib import Path

    from incidents.incident.models import SEVERITY_COLOURS

    css = (Path(__file__).resolve().parents[2] / "incidents" / "static" / "app.css").read_text()
    for severity, (background, text) in SEVERITY_COLOURS.items():
        rule = re.search(r"\.sev-" + severity.lower() + r" \{([^}]*)\}", css).group(1)
        assert f"background:{background}" in rule and f"color:{text}" in rule, severity

    incident = make_incident(severity="SEV3")
    with app.test_request_context():
        rendered = notify.render_notification(incident, Event.opened(incident.id), app.config)
    background, text = SEVERITY_COLOURS["SEV3"]
    assert f"background-color:{background};color:{text};" in rendered.html
    assert "#0065ff" not in rendered.html


def test_a_status_update_reaches_followers_subscribers_and_every_chat_hook(session, world, smtp_server,
                                                                            slack_server):
    """An update goes to the incident's own audience (who pressed Subscribe, the declarer, role holders) as well as
    the team and severity subscriptions, and to the chat hooks whatever the severity."""
    declarer = make_user(email="dee@example.com", name="Dee Declarer")
    scribe = make_user(email="scribe@example.com", name="Sue Scribe")
    follower = make_user(email="fran@example.com", name="Fran Follower", role="viewer")
    incident = sev1(world, severity="SEV3", created_by=declarer)  # SEV3: no team/severity subscription but sam's
    incidents.set_role(session, incident, "scribe", scribe.id)
    notify.subscribe_to_incident(session, incident, follower)
    notify.subscribe_to_incident(session, incident, follower)  # pressing twice is one subscription
    update = incidents.post_status_update(session, incident, impact="Checkout slow for 5% of users",
                                          actions="Failing over to the standby database")
    session.commit()

    report = send_incident_notification(incident.id, Event.status_update(update.id).as_dict())

    assert sorted(report.sent) == ["email:dee@example.com", "email:fran@example.com", "email:sam@example.com",
                                   "email:scribe@example.com", "slack:global", f"slack:team:{world['team'].id}"]
    post, = slack_server.to(GLOBAL_HOOK)
    assert post["text"].startswith(f"[SEV3] {incident.ref} update: Checkout returns 502")
    fields = [f["text"] for f in post["blocks"][1]["fields"]]
    assert fields[:2] == ["*Impact now*\nCheckout slow for 5% of users",
                          "*What we are doing*\nFailing over to the standby database"]
    mail, = smtp_server.to("fran@example.com")
    assert "Failing over to the standby database" in mail.text and "Next update" in mail.text
    notify.unsubscribe_from_incident(session, incident, follower)
    session.commit()
    assert follower not in notify.followers(session, incident)
