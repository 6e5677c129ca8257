import threading
from datetime import date

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.action_item import services as items
from incidents.auth.models import User
from incidents.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound
from incidents.extensions import db
from incidents.postmortem import presentation
from incidents.postmortem import services as svc
from incidents.postmortem.models import (
    BlamelessPhrase,
    FactorCategory,
    PostmortemSection,
    PostmortemStatus,
    PostmortemTemplate,
    SectionKind,
)
from tests.factories import make_incident, make_service, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident
from tests.seeds import POSTMORTEM_DEFAULTS, revision


def test_defaults_come_from_the_migration_and_never_overwrite_admin_edits(session):
    defaults = revision(POSTMORTEM_DEFAULTS)
    slugs = [t.slug for t in svc.list_templates(session)]
    assert sorted(slugs) == sorted(r["slug"] for r in defaults.template_rows()) == [
        "full-blameless", "lightweight", "pagerduty-style"]
    full = svc.get_template(session, "full-blameless")
    assert [s["key"] for s in full.sections] == [
        "summary", "impact", "timeline", "detection", "response", "factors", "went_well", "went_poorly",
        "lucky", "lessons", "action_items", "participants"]
    assert all(s["guidance"] for s in full.sections)
    cats = [c.slug for c in svc.list_categories(session)]
    assert cats == ["change", "dependency", "capacity", "configuration", "monitoring-gap", "process", "unknown"]
    assert session.scalar(sa.select(sa.func.count(BlamelessPhrase.id))) >= 7
    # An admin retires a category: seeding again (the migration over rows it finds) does not bring it back.
    cat = svc.get_category(session, "unknown")
    svc.update_category(session, cat, name=cat.name, description="", active=False)
    session.commit()
    with db.engine.begin() as conn:
        assert defaults.seed(conn) == 0
    assert "unknown" not in [c.slug for c in svc.list_categories(session)]
    assert session.scalar(sa.select(sa.func.count(FactorCategory.id))) == 7


def test_start_copies_template_seeds_timeline_and_participants(session):
    commander = make_user(name="Carla Commander")
    incident = make_incident(title="Checkout 500s", severity="SEV1", commander_id=commander.id)
    from incidents.incident import services as inc
    inc.add_note(session, incident, "Rolled back **v2.3**\nmore detail", by=commander)
    inc.resolve_incident(session, incident)
    author = make_user(name="Andy Author")
    pm = svc.start_postmortem(session, incident, "full-blameless", by=author)
    session.commit()
    assert pm.status == PostmortemStatus.DRAFT
    assert (pm.template_slug, pm.template_version, pm.title) == ("full-blameless", 1, "Checkout 500s")
    timeline = pm.section("timeline")
    assert timeline.kind == SectionKind.TIMELINE and timeline.version == 1
    lines = timeline.body.splitlines()
    assert "**Detected**" in lines[1] and "Impact started" in lines[0]
    assert any("[note] Note: Rolled back **v2.3**" in line for line in lines)
    assert any("**Mitigated**" in line for line in lines)
    assert [(p.user.name, p.role) for p in pm.participants] == [
        ("Carla Commander", "Incident commander"), ("Andy Author", "Post-mortem author")]
    assert pm.events[0].kind == "started"
    assert [r.version for r in timeline.revisions] == [1]


def test_one_postmortem_per_incident(session):
    pm = make_postmortem()
    with pytest.raises(Conflict, match="already has a post-mortem"):
        svc.start_postmortem(session, pm.incident, "lightweight")
    with pytest.raises(NotFound):
        svc.start_postmortem(session, make_incident(), "no-such-template")


def test_a_postmortem_keeps_the_template_version_it_started_with(session):
    first = make_postmortem(template="lightweight")
    tpl = svc.get_template(session, "lightweight")
    sections = list(tpl.sections) + [{"key": "extra", "title": "Extra", "kind": "markdown", "required": True}]
    svc.update_template(session, tpl, sections=sections)
    session.commit()
    assert tpl.version == 2
    second = make_postmortem(template="lightweight")
    assert (first.template_version, second.template_version) == (1, 2)
    assert first.section("extra") is None and second.section("extra") is not None


def test_template_sections_are_validated(session):
    with pytest.raises(Invalid) as e:
        svc.create_template(session, name="Bad", sections=[
            {"key": "a", "title": "A", "kind": "markdown"}, {"key": "a", "title": "", "kind": "poem"}])
    assert "sections.2" in e.value.fields
    with pytest.raises(Invalid):
        svc.create_template(session, name="Empty", sections=[])
    tpl = svc.create_template(session, name="Tiny review",
                              sections=[{"key": "what", "title": "What", "required": "on"}])
    assert tpl.slug == "tiny-review" and tpl.sections[0]["required"] is True


def test_save_section_bumps_version_and_keeps_every_revision(session):
    pm = make_postmortem()
    ann, bob = make_user(name="Ann"), make_user(name="Bob")
    s = svc.save_section(session, pm, "summary", "First draft", 1, by=ann)
    session.commit()
    assert (s.version, s.body, s.updated_by) == (2, "First draft", ann)
    s = svc.save_section(session, pm, "summary", "Second draft", 2, by=bob)
    session.commit()
    assert s.version == 3
    assert [(r.version, r.body, r.author) for r in s.revisions] == [
        (1, "", None), (2, "First draft", ann), (3, "Second draft", bob)]
    # Saving identical text is not a new version.
    assert svc.save_section(session, pm, "summary", "Second draft", 3, by=bob).version == 3
    assert "second draft" in pm.search_text


def test_stale_save_is_refused_with_the_current_text_and_changes_nothing(session):
    pm = make_postmortem()
    ann, bob = make_user(name="Ann Editor"), make_user(name="Bob Editor")
    svc.save_section(session, pm, "summary", "Ann's text", 1, by=ann)
    session.commit()
    with pytest.raises(svc.SectionConflict) as e:
        svc.save_section(session, pm, "summary", "Bob's text", 1, by=bob)
    session.rollback()
    assert e.value.current["body"] == "Ann's text"
    assert e.value.current["version"] == 2 and e.value.current["author"] == "Ann Editor"
    assert e.value.yours == {"body": "Bob's text", "version": 1}
    assert e.value.status == 409
    section = pm.section("summary")
    assert (section.body, section.version, len(section.revisions)) == ("Ann's text", 2, 2)
    # Bob merges on top of Ann's version: both texts survive in the history.
    svc.save_section(session, pm, "summary", "Ann's text\n\nBob's text", 2, by=bob)
    session.commit()
    assert [r.body for r in section.revisions][1:] == ["Ann's text", "Ann's text\n\nBob's text"]
    history = presentation.section_history(pm, "summary")
    assert history[0]["revision"].version == 3
    assert ("add", "+Bob's text") in history[0]["diff"]


def test_concurrent_saves_of_the_same_version_let_exactly_one_win(app, session):
    pm = make_postmortem()
    pm_id, section_id = pm.id, pm.section("summary").id
    users = [make_user(name="Thread One"), make_user(name="Thread Two")]
    user_ids = [u.id for u in users]
    engine = db.engine
    session.commit()  # the test's own session must not hold SQLite's write lock while the editors run
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def editor(i: int):
        barrier.wait()  # both start together (SQLite then queues them at BEGIN IMMEDIATE; PostgreSQL at the row)
        with Session(engine) as s:
            postmortem = svc.get_postmortem(s, pm_id)
            by = s.get(User, user_ids[i])
            try:
                svc.save_section(s, postmortem, "summary", f"text {i}", 1, by=by)
                s.commit()
                outcomes.append("saved")
            except svc.SectionConflict:
                s.rollback()
                outcomes.append("conflict")

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["conflict", "saved"]
    session.expire_all()
    section = session.get(PostmortemSection, section_id)
    assert section.version == 2 and section.body in ("text 0", "text 1")
    assert [r.version for r in section.revisions] == [1, 2]


def test_save_checks_input(session):
    pm = make_postmortem()
    with pytest.raises(NotFound):
        svc.save_section(session, pm, "nope", "x", 1)
    with pytest.raises(Invalid):
        svc.save_section(session, pm, "summary", "x", "1")
    with pytest.raises(Invalid):
        svc.save_section(session, pm, "summary", 42, 1)
    with pytest.raises(Invalid):
        svc.save_section(session, pm, "summary", "x" * (svc.MAX_BODY + 1), 1)


def test_quality_gates_list_exactly_what_is_missing(session):
    owner = make_user()
    pm = make_postmortem(template="lightweight")
    svc.save_section(session, pm, "timeline", "- 10:00 something happened", 1)
    items.create_action_item(session, pm, title="Add alert on queue depth")
    svc.submit_for_review(session, pm)
    with pytest.raises(svc.QualityGatesFailed) as e:
        svc.publish_postmortem(session, pm)
    assert [(m["gate"], m["message"]) for m in e.value.missing] == [
        ("required_section", "Required section \u201cSummary\u201d is empty."),
        ("contributing_factor", "Add at least one contributing factor."),
        ("action_item_owner", "Action item \u201cAdd alert on queue depth\u201d needs an owner."),
        ("action_item_due_date", "Action item \u201cAdd alert on queue depth\u201d needs a due date."),
        ("action_item_type", "Action item \u201cAdd alert on queue depth\u201d needs a type."),
        ("timeline_detection", "The timeline has no detection entry (a line mentioning detection)."),
        ("timeline_mitigation", "The timeline has no mitigation entry (a line mentioning mitigation)."),
    ]
    assert pm.status == PostmortemStatus.IN_REVIEW
    svc.save_section(session, pm, "summary", "Queue backed up.", 1)
    svc.save_section(session, pm, "timeline", "- 10:00 detected by alert\n- 10:20 mitigated by scaling", 2)
    svc.add_factor(session, pm, "capacity", "Queue workers were at their limit")
    items.update_action_item(session, pm.action_items[0], owner_id=owner.id, due_date="2030-01-31", type="detect")
    assert svc.quality_gates(pm) == []
    svc.publish_postmortem(session, pm, by=owner)
    assert pm.status == PostmortemStatus.PUBLISHED and pm.published_at is not None


def test_publish_needs_review_first_and_published_is_read_only(session):
    admin, responder = make_user(role="admin"), make_user()
    pm = fill_for_publishing(make_postmortem())
    with pytest.raises(InvalidTransition, match="only a post-mortem that is in review"):
        svc.publish_postmortem(session, pm)
    svc.submit_for_review(session, pm, by=responder)
    svc.publish_postmortem(session, pm, by=responder)
    session.commit()
    with pytest.raises(Conflict, match="read-only"):
        svc.save_section(session, pm, "summary", "late edit", pm.section("summary").version)
    with pytest.raises(Conflict):
        svc.add_factor(session, pm, "process")
    with pytest.raises(Conflict):
        items.update_action_item(session, pm.action_items[0], title="changed")
    items.update_action_item(session, pm.action_items[0], status="in_progress")  # tracking goes on
    with pytest.raises(Forbidden):
        svc.reopen_postmortem(session, pm, by=responder)
    svc.reopen_postmortem(session, pm, by=admin, reason="new evidence")
    session.commit()
    assert pm.status == PostmortemStatus.DRAFT and pm.published_at is None
    assert [e.kind for e in pm.events] == ["started", "in_review", "published", "reopened"]
    assert pm.events[-1].author == admin and "new evidence" in pm.events[-1].text


def test_comments_factors_and_participants(session):
    pm = make_postmortem()
    reviewer = make_user(name="Rae Reviewer")
    svc.add_comment(session, pm, "summary", "Can we quantify the impact here?", by=reviewer)
    with pytest.raises(Invalid):
        svc.add_comment(session, pm, "summary", "  ")
    with pytest.raises(NotFound):
        svc.add_comment(session, pm, "nope", "x")
    f1 = svc.add_factor(session, pm, "change", "Config push without canary")
    svc.add_factor(session, pm, "monitoring-gap", "No alert on error budget burn")
    with pytest.raises(Invalid):
        svc.add_factor(session, pm, "")
    with pytest.raises(NotFound):
        svc.add_factor(session, pm, "astrology")
    svc.remove_factor(session, pm, f1.id)
    assert [f.category.slug for f in pm.factors] == ["monitoring-gap"]
    p = svc.add_participant(session, pm, reviewer.id, "Reviewer")
    with pytest.raises(Conflict):
        svc.add_participant(session, pm, reviewer.id)
    svc.remove_participant(session, pm, p.id)
    session.commit()
    assert pm.comments[0].author == reviewer
    assert reviewer.id not in [x.user_id for x in pm.participants]


def test_list_filters_and_full_text_search(session):
    a, b = make_service(name="Search"), make_service(name="Billing")
    pm1 = make_postmortem(make_resolved_incident(title="Search latency", service_id=a.id))
    pm2 = make_postmortem(make_resolved_incident(title="Double charge", service_id=b.id), template="lightweight")
    svc.save_section(session, pm2, "summary", "The idempotency key cache expired early (100% of retries)", 1)
    svc.submit_for_review(session, pm2)
    session.commit()

    def ids(**kw):
        return [p.id for p in svc.list_postmortems(session, svc.PostmortemFilter(**kw)).items]

    assert ids() == [pm2.id, pm1.id]
    assert ids(status=["in_review"]) == [pm2.id]
    assert ids(team=a.team.slug) == [pm1.id]
    assert ids(service=b.slug) == [pm2.id]
    assert ids(q="IDEMPOTENCY") == [pm2.id]
    assert ids(q="100%") == [pm2.id]
    assert ids(q="50%") == []
    assert ids(q=pm1.incident.ref) == [pm1.id]
    assert ids(since=date.today()) == [pm2.id, pm1.id]
    assert ids(until=date(2000, 1, 1)) == []
    with pytest.raises(Invalid):
        ids(status=["sideways"])


def test_impact_durations_and_prompt(session):
    incident = make_resolved_incident(severity="SEV2")
    durations = {d["key"]: d["seconds"] for d in presentation.impact_durations(incident)}
    assert durations["time_to_detect"] == 0 and durations["time_to_resolve"] >= 0
    assert svc.needs_postmortem_prompt(incident, None)
    assert not svc.needs_postmortem_prompt(make_incident(severity="SEV1"), None)  # still open
    assert not svc.needs_postmortem_prompt(make_resolved_incident(severity="SEV3"), None)
    pm = make_postmortem(incident)
    assert presentation.panel_context(session, incident) == {"postmortem": pm, "postmortem_templates": [],
                                                    "postmortem_prompt": False}


def test_markdown_export_holds_every_section(session):
    owner = make_user(name="Olive Owner")
    pm = fill_for_publishing(make_postmortem(), by=owner)
    text = presentation.to_markdown(pm)
    assert text.startswith(f"# Post-mortem: {pm.title}\n")
    for s in pm.sections:
        assert f"## {s.title}" in text
    assert "- **Configuration**: A flag default differed between regions" in text
    assert "| Validate flag defaults in CI | prevent | Olive Owner |" in text
    assert "- Time to resolve:" in text


def test_template_rows_survive_as_json(session):
    session.commit()
    session.expire_all()
    tpl = session.scalar(sa.select(PostmortemTemplate).where(PostmortemTemplate.slug == "pagerduty-style"))
    assert tpl.sections[0]["key"] == "overview" and tpl.builtin
