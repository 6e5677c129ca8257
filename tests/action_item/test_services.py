import pytest

from incidents.action_item import services as items
from incidents.action_item.models import ItemStatus, ItemType, Priority
from incidents.errors import Invalid, NotFound
from tests.factories import make_service, make_user
from tests.postmortem.factories import make_postmortem, make_resolved_incident


def test_create_with_every_field_and_defaults(session):
    owner = make_user()
    pm = make_postmortem()
    item = items.create_action_item(session, pm, title="  Add canary stage ", description="For config pushes",
                                    owner_id=owner.id, due_date="2030-02-01", type="prevent", priority="high",
                                    estimate="3")
    assert (item.title, item.owner, item.type, item.priority, item.estimate, item.status) == (
        "Add canary stage", owner, ItemType.PREVENT, Priority.HIGH, 3, ItemStatus.OPEN)
    assert item.due_date.isoformat() == "2030-02-01"
    bare = items.create_action_item(session, pm, title="Think about retries")
    assert (bare.priority, bare.owner, bare.type, bare.due_date) == (Priority.MEDIUM, None, None, None)
    assert "add canary stage" in pm.search_text


@pytest.mark.parametrize("fields, field", [
    ({"title": ""}, "title"),
    ({"title": "x", "type": "blame"}, "type"),
    ({"title": "x", "priority": "whenever"}, "priority"),
    ({"title": "x", "due_date": "next week"}, "due_date"),
    ({"title": "x", "estimate": "lots"}, "estimate"),
    ({"title": "x", "estimate": 1000}, "estimate"),
    ({"title": "x", "owner_id": 999999}, "owner_id"),
    ({"title": "x", "colour": "red"}, "colour"),
])
def test_bad_fields_are_named(session, fields, field):
    pm = make_postmortem()
    with pytest.raises(Invalid) as e:
        items.create_action_item(session, pm, **fields)
    assert field in e.value.fields


def test_wont_do_needs_a_reason(session):
    item = items.create_action_item(session, make_postmortem(), title="Rewrite the scheduler")
    with pytest.raises(Invalid, match="why"):
        items.update_action_item(session, item, status="wont_do")
    items.update_action_item(session, item, status="wont_do", wont_do_reason="Scheduler is being retired in Q3")
    assert item.status == ItemStatus.WONT_DO
    items.update_action_item(session, item, status="in_progress")
    assert item.wont_do_reason == ""


def test_list_filters_by_status_owner_and_team(session):
    ann, bob = make_user(email="ann@example.com"), make_user()
    service = make_service()
    pm1 = make_postmortem(make_resolved_incident(service_id=service.id))
    pm2 = make_postmortem()
    a = items.create_action_item(session, pm1, title="A", owner_id=ann.id, due_date="2030-01-02")
    b = items.create_action_item(session, pm2, title="B", owner_id=bob.id, due_date="2030-01-01")
    c = items.create_action_item(session, pm2, title="C")
    items.update_action_item(session, c, status="done")
    session.commit()

    def ids(**kw):
        return [i.id for i in items.list_action_items(session, items.ActionItemFilter(**kw)).items]

    assert ids() == [b.id, a.id, c.id]
    assert ids(status=["done"]) == [c.id]
    assert ids(owner="ann@example.com") == [a.id]
    assert ids(owner=str(bob.id)) == [b.id]
    assert ids(team=service.team.slug) == [a.id]
    assert ids(postmortem_id=pm2.id) == [b.id, c.id]
    with pytest.raises(Invalid):
        ids(status=["later"])
    with pytest.raises(NotFound):
        items.get_action_item(session, 999999)


def test_delete_only_while_editable(session):
    pm = make_postmortem()
    item = items.create_action_item(session, pm, title="Temporary")
    items.delete_action_item(session, item)
    assert pm.action_items == []
