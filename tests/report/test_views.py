"""The dashboard, the items behind its figures, the report preview and settings, the API and the CLI."""

from __future__ import annotations

import re

from tests.conftest import post_form
from tests.factories import make_token

PAST = {"team": "payments", "weeks": "4", "until": "2026-W47"}  # a finished week: the same figures whenever run


def test_dashboard_shows_the_figures_and_charts_of_a_team(viewer_client, history):
    response = viewer_client.get("/debt", query_string=PAST)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    numbers = dict((label.strip(), n) for n, label in re.findall(
        r'<span class="n">([^<]+)</span>\s*([a-z ]+)', page))
    assert numbers["opened"] == "4" and numbers["repaid"] == "1" and numbers["written off"] == "1"
    assert numbers["overdue"] == "1" and numbers["repayment rate"] == "25%"
    assert '<span class="n">2</span> open · 13 pts' in page
    assert page.count("<svg viewBox") == 4 and "style=" not in page.split("<main")[1]  # CSP: no inline styles
    assert "Opened vs repaid per week" in page and "Overdue by owner" in page
    assert f"repeat, 2 items still open from {history['source'].ref}" in page
    assert "Replaced by the platform rewrite" in page
    assert 'href="/debt/items?' in page


def test_each_figure_links_to_its_items(viewer_client, history):
    page = viewer_client.get("/debt", query_string=PAST).get_data(as_text=True)
    link = re.search(r'<a class="figure bad" href="([^"]+)"', page).group(1).replace("&amp;", "&")
    listing = viewer_client.get(link).get_data(as_text=True)
    assert "<h1>Overdue</h1>" in listing and "Item b" in listing and "Item d" not in listing
    week = viewer_client.get("/debt/items", query_string=PAST | {"figure": "opened", "week": "2026-W46"})
    assert "Item c" in week.get_data(as_text=True) and "Item a" not in week.get_data(as_text=True)
    owner = viewer_client.get("/debt/items", query_string=PAST | {"figure": f"owner:{history['rita'].id}"})
    assert "Overdue items of Rita Responder" in owner.get_data(as_text=True)


def test_bad_filters_are_refused(viewer_client, history):
    assert viewer_client.get("/debt?weeks=0").status_code == 422
    assert viewer_client.get("/debt?until=last-week").status_code == 422
    assert viewer_client.get("/debt?team=nope").status_code == 404


def test_incident_page_flags_a_repeat(viewer_client, history):
    page = viewer_client.get(f"/incidents/{history['repeat'].ref}").get_data(as_text=True)
    assert page.count('class="repeat-flag"') == 1
    assert re.search(rf"<strong>Repeat</strong>:\s*2 items still open from\s*"
                     rf"<a href=\"/incidents/{history['source'].ref}\">", page)
    assert "repeat-flag" not in viewer_client.get(f"/incidents/{history['source'].ref}").get_data(as_text=True)


def test_two_earlier_incidents_make_one_repeat_chip_with_a_count(viewer_client, history):
    """INC-fp repeats the indexer's earlier incident (same service) and INC-x (same alert fingerprint)."""
    page = viewer_client.get(f"/incidents/{history['by_fp'].ref}").get_data(as_text=True)
    assert page.count('class="repeat-flag"') == 1
    chip = page[page.index('class="repeat-flag"'):]
    chip = chip[:chip.index("</p>")]
    assert "<strong>Repeat ×2</strong>" in chip
    other, source = history["other"].ref, history["source"].ref
    assert re.search(rf"1 item still open from\s*<a href=\"/incidents/{other}\">{other}</a>\s*"
                     rf"<span class=\"repeat-why\">\(same service\)</span>; ", chip)  # the most recent first
    assert re.search(rf"2 items still open from\s*<a href=\"/incidents/{source}\">{source}</a>\s*"
                     rf"<span class=\"repeat-why\">\(same alert fingerprint\)</span>", chip)


def test_report_preview_frames_the_email_it_sends(viewer_client, history):
    page = viewer_client.get("/debt/report?week=2026-W47&team=payments").get_data(as_text=True)
    assert "Weekly report · Payments · 2026-W47" in page
    assert 'src="/debt/report/email?week=2026-W47&amp;team=payments"' in page
    # Sized to the whole e-mail by a static script (same-origin frame, still no scripts inside it).
    assert re.search(r'<iframe class="email-preview" [^>]*sandbox="allow-same-origin" data-fit-content>', page)
    assert '<script src="/static/email-preview.js' in page and "<script>" not in page
    script = viewer_client.get("/static/email-preview.js").get_data(as_text=True)
    assert "iframe[data-fit-content]" in script and "scrollHeight" in script
    assert "- Item b [" in page  # the text part
    email = viewer_client.get("/debt/report/email?week=2026-W47&team=payments")
    assert email.status_code == 200 and "Tech-debt report · Payments" in email.get_data(as_text=True)
    assert "frame-ancestors 'self'" in email.headers["Content-Security-Policy"]
    assert "script-src" not in email.headers["Content-Security-Policy"]  # default-src 'none' forbids scripts
    assert email.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_settings_are_for_admins_and_save_the_lists(admin_client, history, session):
    from incidents.report import services

    response = post_form(admin_client, "/debt/settings", {"recipients_global": "cto@example.com",
                                                          f"recipients_{history['payments'].id}": "a@x.org, b@x.org"})
    assert response.status_code == 302
    assert services.stored_recipients(session, history["payments"].id) == ["a@x.org", "b@x.org"]
    bad = post_form(admin_client, "/debt/settings", {"recipients_global": "nope"})
    assert bad.status_code == 422 and "Not an e-mail address: nope" in bad.get_data(as_text=True)


def test_viewers_cannot_change_settings(viewer_client, history):
    assert viewer_client.get("/debt/settings").status_code == 403


def test_api_gives_the_ledger(client, viewer, history):
    headers = {"Authorization": f"Bearer {make_token(viewer)}"}
    body = client.get("/api/v1/debt", query_string=PAST, headers=headers).get_json()
    assert (body["team"], body["opened"], body["repaid"], body["written_off"]) == ("payments", 4, 1, 1)
    assert (body["open_items"], body["open_points"], body["overdue"], body["repayment_rate"]) == (2, 13, 1, 0.25)
    assert [(w["week"], w["opened"], w["repaid"], w["balance"], w["overdue"]) for w in body["weeks"]] == [
        ("2026-W44", 0, 0, 0, 0), ("2026-W45", 2, 0, 2, 0), ("2026-W46", 1, 1, 2, 1), ("2026-W47", 1, 0, 2, 1)]
    assert body["repeats"][0]["text"] == f"repeat, 2 items still open from {history['source'].ref}"
    assert body["written_off_reasons"][0]["reason"] == "Replaced by the platform rewrite"
    assert client.get("/api/v1/debt?weeks=0", headers=headers).status_code == 422
    assert client.get("/api/v1/debt?team=nope", headers=headers).status_code == 422
    assert client.get("/api/v1/debt").status_code == 401


def test_cli_renders_text_and_sends_once(app, history, smtp_server):
    app.config.update(SMTP_URL=smtp_server.url, MAIL_FROM="Incidents <incidents@example.org>")
    try:
        runner = app.test_cli_runner()
        shown = runner.invoke(args=["report", "weekly", "--week", "2026-W47", "--team", "payments"])
        assert shown.exit_code == 0, shown.output
        assert "Subject: Tech-debt report 2026-W47 · Payments: 2 open, 0 repaid, 1 overdue" in shown.output
        assert "- Item b [" in shown.output and smtp_server.messages == []
        args = ["report", "weekly", "--week", "2026-W47", "--team", "payments", "--send", "--to", "me@example.com"]
        sent = runner.invoke(args=args)
        assert sent.exit_code == 0 and "2026-W47 me@example.com: sent" in sent.output
        again = runner.invoke(args=args)
        assert "2026-W47 me@example.com: already sent" in again.output
        assert [m.rcpt_tos for m in smtp_server.messages] == [["me@example.com"]]
        assert runner.invoke(args=["report", "weekly", "--week", "47"]).exit_code == 2
    finally:
        app.config.update(SMTP_URL="", MAIL_FROM="Incidents <incidents@localhost>")


def _earlier_on_one_service(session, n: int, closed_early: tuple[int, ...] = ()):
    """`n` incidents on a new service, an hour apart from ten days ago, each with a post-mortem and one action
    item (closed ten minutes after it was made for the indexes in `closed_early`), then the target on the same
    service now. Returns (the earlier incidents, oldest first; the target)."""
    from datetime import timedelta

    from incidents.action_item import services as items
    from incidents.database import utcnow
    from tests.factories import make_incident, make_service
    from tests.postmortem.factories import make_postmortem

    service = make_service()
    start = utcnow() - timedelta(days=10)
    earlier = []
    for k in range(n):
        incident = make_incident(service_id=service.id)
        incident.created_at = start + timedelta(hours=k)
        item = items.create_action_item(session, make_postmortem(incident), title=f"Fix {k}")
        item.created_at = start + timedelta(hours=k, minutes=30)
        if k in closed_early:
            item.closed_at = start + timedelta(hours=k, minutes=40)
        session.commit()
        earlier.append(incident)
    return earlier, make_incident(service_id=service.id)


def _chip(client, target) -> str:
    page = client.get(f"/incidents/{target.ref}").get_data(as_text=True)
    chip = page[page.index('class="repeat-flag"'):]
    return chip[:chip.index("</p>")]


def test_a_repeat_chip_names_the_five_most_recent_and_counts_the_rest(viewer_client, session):
    """A busy service can have hundreds of earlier incidents with open items: the chip stays one readable line."""
    earlier, target = _earlier_on_one_service(session, 7)
    chip = _chip(viewer_client, target)
    assert "<strong>Repeat ×7</strong>" in chip
    named = re.findall(r'<a href="/incidents/(INC-\d+)">', chip)
    assert named == [i.ref for i in reversed(earlier)][:5]  # the most recent five
    assert "and 2 earlier incidents" in chip


def test_a_repeat_chip_stops_counting_at_its_limit(viewer_client, session, monkeypatch):
    """The page walks the service's earlier incidents newest first and stops past REPEAT_CHIP_LIMIT ("more than"),
    naming the same most recent ones the full count would."""
    from incidents.report import views as report_views
    from incidents.report.queries import repeat_flags

    _, target = _earlier_on_one_service(session, 8, closed_early=(3,))  # closed before the target: not a repeat
    everything = repeat_flags(session, [target])[target.id]
    assert len(everything) == 7
    assert repeat_flags(session, [target], limit=4)[target.id] == everything[:5]
    assert repeat_flags(session, [target], limit=10)[target.id] == everything

    monkeypatch.setattr(report_views, "REPEAT_CHIP_LIMIT", 6)
    chip = _chip(viewer_client, target)
    assert "<strong>Repeat ×6+</strong>" in chip
    assert "and more than 1 earlier incidents" in chip
    assert re.findall(r'<a href="/incidents/(INC-\d+)">', chip) == [f.source_ref for f in everything[:5]]
