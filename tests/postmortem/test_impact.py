"""The post-mortem's impact figures: one definition of every duration (the page, the Markdown, the API and the
weekly e-mail agree), the impact section's correction of the incident's milestones, and the timeline pre-fill."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from incidents.database import utcnow
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.incident.durations import durations
from incidents.incident.models import EntryKind
from incidents.markdown import render_markdown
from incidents.postmortem import presentation
from incidents.report import services as report
from incidents.report.queries import Week
from tests.conftest import post_form
from tests.factories import make_incident
from tests.postmortem.factories import make_postmortem


def text(response) -> str:
    return response.get_data(as_text=True)


def incident_with_milestones():
    """Impact and detection 2 h ago, mitigated 1 h ago, resolved 30 min ago (whole minutes)."""
    now = utcnow().replace(second=0, microsecond=0)
    start = now - timedelta(hours=2)
    incident = make_incident(title="Checkout 500s", severity="SEV1", started_at=start, detected_at=start)
    incidents.acknowledge_incident(db.session, incident, at=start + timedelta(minutes=5))
    incidents.mitigate_incident(db.session, incident, at=now - timedelta(hours=1))
    incidents.resolve_incident(db.session, incident, at=now - timedelta(minutes=30))
    db.session.commit()
    return incident, start


def page_figures(page: str) -> dict[str, str]:
    """The durations table of a post-mortem page: key -> shown duration."""
    return dict(re.findall(r'<tr data-duration="(\w+)"><th>[^<]*</th><td>([^<]*)</td>', page))


def email_line(incident) -> str:
    """The incident's line in the plain-text weekly e-mail of this week."""
    now = utcnow()
    built = report.build_weekly_report(db.session, {"BASE_URL": "https://incidents.example.org"},
                                       week=Week.containing(now, UTC), team=None, now=now)
    mail = report.render_weekly_report(built)
    return next(line for line in mail.text.splitlines() if line.startswith(f"- {incident.ref} "))


def test_every_figure_comes_from_the_one_definition(api):
    incident, _start = incident_with_milestones()
    pm = make_postmortem(incident)
    rows = durations(incident).rows()
    assert presentation.impact_durations(incident) == rows
    assert [r["key"] for r in rows][-1] == "impact"
    got = api.get(f"/api/v1/postmortems/{pm.id}").get_json()["impact"]
    assert got == [{"key": r["key"], "label": r["label"], "from": r["from"], "to": r["to"],
                    "seconds": r["seconds"]} for r in rows]
    assert {r["key"]: r["seconds"] for r in got} == {
        "time_to_detect": 0, "time_to_acknowledge": 300, "time_to_mitigate": 3600, "time_to_resolve": 5400,
        "impact": 3600}
    md = presentation.to_markdown(pm)
    for line in ("- Time to detect: 0s", "- Time to acknowledge: 5m", "- Time to mitigate: 1h 00m",
                 "- Time to resolve: 1h 30m", "- Impact lasted: 1h 00m"):
        assert line in md
    assert "acknowledged in 5m, resolved in 1h 30m" in email_line(incident)


def test_correcting_impact_start_in_the_postmortem_moves_every_figure(responder_client, responder):
    incident, start = incident_with_milestones()
    pm = make_postmortem(incident)
    url = f"/postmortems/{pm.id}/sections/impact"
    page = text(responder_client.get(url))
    assert 'id="impact-times"' in page and 'name="csrf_token"' in page.split('id="impact-times"')[1][:400]
    assert f'name="started_at" step="60" required value="{start:%Y-%m-%dT%H:%M}"' in page
    assert '<label for="started_at">Impact started</label>' in page
    assert '<label for="detected_at">Detected</label>' in page
    before = page_figures(page)
    assert (before["time_to_detect"], before["time_to_mitigate"], before["time_to_resolve"]) == (
        "0s", "1h 00m", "1h 30m")

    earlier = start - timedelta(minutes=20)
    r = post_form(responder_client, f"/postmortems/{pm.id}/impact-times", {
        "section": "impact", "started_at": f"{earlier:%Y-%m-%dT%H:%M}", "detected_at": f"{start:%Y-%m-%dT%H:%M}"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/sections/impact#impact-times")

    db.session.expire_all()
    assert incident.started_at == earlier and incident.detected_at == start
    [entry] = [e for e in incident.timeline if e.kind == EntryKind.EDIT]
    assert entry.text == f"Impact start corrected: {start:%Y-%m-%d %H:%M} -> {earlier:%Y-%m-%d %H:%M} UTC"
    assert entry.author.id == responder.id
    after = page_figures(text(responder_client.get(url)))
    assert (after["time_to_detect"], after["time_to_mitigate"], after["time_to_resolve"]) == (
        "20m", "1h 20m", "1h 50m")
    read = page_figures(text(responder_client.get(f"/postmortems/{pm.id}")))
    assert read == after
    assert "acknowledged in 5m, resolved in 1h 50m" in email_line(incident)

    # Saving the same times again changes nothing and writes nothing.
    post_form(responder_client, f"/postmortems/{pm.id}/impact-times", {
        "section": "impact", "started_at": f"{earlier:%Y-%m-%dT%H:%M}", "detected_at": f"{start:%Y-%m-%dT%H:%M}"})
    db.session.expire_all()
    assert len([e for e in incident.timeline if e.kind == EntryKind.EDIT]) == 1


def test_bad_impact_times_come_back_as_field_errors_with_what_was_typed(responder_client):
    incident, start = incident_with_milestones()
    pm = make_postmortem(incident)
    later = f"{start + timedelta(hours=3):%Y-%m-%dT%H:%M}"
    r = post_form(responder_client, f"/postmortems/{pm.id}/impact-times",
                  {"section": "impact", "started_at": later, "detected_at": f"{start:%Y-%m-%dT%H:%M}"})
    page = text(r)
    assert r.status_code == 422
    assert "Detection cannot come before the impact started." in page
    assert f'name="started_at" step="60" required value="{later}"' in page  # what was typed stays
    r = post_form(responder_client, f"/postmortems/{pm.id}/impact-times",
                  {"section": "impact", "started_at": "yesterday", "detected_at": "2026-13-45T99:00"})
    page = text(r)
    assert r.status_code == 422 and page.count("Enter a date and time, YYYY-MM-DDTHH:MM (UTC).") == 2
    assert 'value="yesterday"' in page
    # The incident's own rules answer the same way: detection after the acknowledgement is refused.
    late = f"{start + timedelta(minutes=10):%Y-%m-%dT%H:%M}"
    r = post_form(responder_client, f"/postmortems/{pm.id}/impact-times",
                  {"section": "impact", "started_at": f"{start:%Y-%m-%dT%H:%M}", "detected_at": late})
    page = text(r)
    assert r.status_code == 422 and "After it was acknowledged." in page
    assert f'name="detected_at" step="60" required value="{late}"' in page
    db.session.expire_all()
    assert incident.started_at == start
    assert not [e for e in incident.timeline if e.kind == EntryKind.EDIT]


def test_only_responders_with_the_csrf_token_move_the_milestones(client, viewer_client, responder):
    incident, start = incident_with_milestones()
    pm = make_postmortem(incident)
    form = {"section": "impact", "started_at": "2020-01-01T00:00", "detected_at": f"{start:%Y-%m-%dT%H:%M}"}
    assert post_form(viewer_client, f"/postmortems/{pm.id}/impact-times", form).status_code == 403
    from tests.conftest import login
    login(client, responder)
    assert client.post(f"/postmortems/{pm.id}/impact-times", data=form).status_code == 400  # no CSRF token
    db.session.expire_all()
    assert incident.started_at == start


def test_timeline_prefill_keeps_a_multi_line_note_whole_inside_its_bullet(session):
    incident = make_incident(title="Search down", started_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
                             detected_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC))
    incidents.add_note(session, incident, "Rolled back **v2.3**\n\nError rate fell to 0.1%\n- watching the queue",
                       occurred_at=datetime(2026, 3, 1, 10, 10, tzinfo=UTC))
    incidents.mitigate_incident(session, incident, at=datetime(2026, 3, 1, 10, 20, tzinfo=UTC))
    session.commit()
    seeded = presentation.seed_timeline(incident)
    lines = seeded.splitlines()
    at = lines.index("- 2026-03-01 10:10 UTC — [note] Note: Rolled back **v2.3**")
    assert lines[at + 1:at + 3] == ["    Error rate fell to 0.1%", "    - watching the queue"]
    assert lines[at + 3].startswith("- 2026-03-01 10:20 UTC — ")  # the next bullet
    items = top_level_items(str(render_markdown(seeded)))
    assert len(items) == len([line for line in lines if line.startswith("- ")])  # the list stays one list
    assert "Rolled back v2.3 Error rate fell to 0.1% watching the queue" in items[at]  # the whole note, one item


class _Items(HTMLParser):
    """The text of each item of the outermost list (nested lists' text counts for their parent item)."""

    def __init__(self):
        super().__init__()
        self.depth, self.items = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in ("ul", "ol"):
            self.depth += 1
        elif tag == "li" and self.depth == 1:
            self.items.append("")

    def handle_endtag(self, tag):
        if tag in ("ul", "ol"):
            self.depth -= 1

    def handle_data(self, data):
        if self.depth >= 1 and self.items:
            self.items[-1] = " ".join((self.items[-1] + " " + data).split())


def top_level_items(html: str) -> list[str]:
    parser = _Items()
    parser.feed(html)
    return parser.items


def test_one_incident_shows_the_same_durations_on_the_list_the_page_the_postmortem_and_the_email(responder_client):
    """Each surface reads durations.py: the figures agree before and after impact start is corrected."""
    incident, start = incident_with_milestones()
    pm = make_postmortem(incident)

    def shown() -> dict[str, str]:
        db.session.expire_all()
        page = text(responder_client.get(f"/incidents/{incident.ref}"))
        on_page = dict(re.findall(r'<dd data-duration="(\w+)">([^<]*)</dd>', page))
        listed = text(responder_client.get("/?show=all"))
        row = listed[listed.index(f">{incident.ref}<"):]
        lasted = re.search(r'data-label="Age / duration">lasted ([^<]*)</td>', row).group(1)
        on_pm = page_figures(text(responder_client.get(f"/postmortems/{pm.id}")))
        mail = re.search(r"acknowledged in (\S+), resolved in ([^,;)\n]+)", email_line(incident))
        assert on_page == on_pm, (on_page, on_pm)
        assert lasted == on_page["time_to_resolve"] == mail.group(2)
        assert mail.group(1) == on_page["time_to_acknowledge"]
        return on_page

    assert shown()["time_to_resolve"] == "1h 30m"
    earlier = start - timedelta(minutes=20)
    post_form(responder_client, f"/postmortems/{pm.id}/impact-times", {
        "section": "impact", "started_at": f"{earlier:%Y-%m-%dT%H:%M}", "detected_at": f"{start:%Y-%m-%dT%H:%M}"})
    after = shown()
    assert (after["time_to_detect"], after["time_to_mitigate"], after["time_to_resolve"], after["impact"]) == (
        "20m", "1h 20m", "1h 50m", "1h 20m")
