from incidents.action_item import services as items
from incidents.extensions import db
from tests.factories import make_user
from tests.postmortem.factories import make_postmortem


def test_action_items_page_lists_open_work_by_default_and_filters(viewer_client):
    owner = make_user(name="Olive Owner")
    pm = make_postmortem()
    items.create_action_item(db.session, pm, title="Open thing", owner_id=owner.id)
    done = items.create_action_item(db.session, pm, title="Finished thing")
    items.update_action_item(db.session, done, status="done")
    db.session.commit()
    page = viewer_client.get("/action-items").get_data(as_text=True)
    assert "Open thing" in page and "Finished thing" not in page
    done_page = viewer_client.get("/action-items?status=done").get_data(as_text=True)
    assert "Finished thing" in done_page and "Open thing" not in done_page
    mine = viewer_client.get(f"/action-items?status=&owner={owner.id}").get_data(as_text=True)
    assert "Open thing" in mine and "Finished thing" not in mine
    assert viewer_client.get("/action-items?status=later").status_code == 422
    assert viewer_client.get("/action-items?team=nope").status_code == 404
