from incidents.action_item.demo import load_demo_postmortems
from incidents.incident import services as incidents
from incidents.postmortem import services as svc
from incidents.postmortem.models import PostmortemStatus
from tests.factories import make_incident, make_service, make_user
from tests.postmortem.factories import make_resolved_incident


def test_demo_postmortems_cover_every_state_and_run_twice_safely(session):
    assert "skipped" in load_demo_postmortems(session)
    make_user(name="Dana Demo", role="admin")
    make_user(name="Eli Example")
    service = make_service(name="Checkout")
    resolved = [make_resolved_incident(severity=sev, service_id=service.id) for sev in ("SEV1", "SEV2", "SEV3", "SEV1")]
    closed = make_resolved_incident(severity="SEV2")
    incidents.close_incident(session, closed)
    open_one = make_incident()
    summary = load_demo_postmortems(session)
    session.commit()
    assert summary == "Post-mortems: 2 published, 2 in review, 1 draft (on resolved and closed incidents)."
    made = {i.id: svc.postmortem_for(session, i) for i in resolved + [closed]}
    assert all(made.values()) and svc.postmortem_for(session, open_one) is None
    published = [pm for pm in made.values() if pm.status == PostmortemStatus.PUBLISHED]
    assert all(svc.quality_gates(pm) == [] for pm in published)
    assert any(item.status.value == "in_progress" for pm in published for item in pm.action_items)
    drafts = [pm for pm in made.values() if pm.status == PostmortemStatus.DRAFT]
    assert svc.quality_gates(drafts[0])  # a draft is realistically unfinished
    assert all(pm.comments for pm in made.values() if pm.status != PostmortemStatus.DRAFT)
    assert load_demo_postmortems(session).startswith("Post-mortems: nothing to add")
