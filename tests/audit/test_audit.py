"""The audit log: a scripted tour writes exactly the expected rows, through the real pages and API; the chain
verifies, and `incidents audit verify` names the row a direct edit or delete broke; the page, CSV and API."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
import sqlalchemy as sa

from incidents.audit import services as audit
from incidents.audit.models import AuditEntry
from incidents.auth import services as auth
from incidents.extensions import db
from incidents.postmortem import services as pm_services
from tests.alert.conftest import fixture as alert_fixture
from tests.alert.conftest import make_integration
from tests.alert.conftest import post as post_webhook
from tests.conftest import login, post_form
from tests.factories import ApiClient, make_incident, make_token, make_user
from tests.postmortem.factories import fill_for_publishing, make_postmortem, make_resolved_incident


def rows_after(last_id: int) -> list[AuditEntry]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id)))


def last_id() -> int:
    return db.session.scalar(sa.select(sa.func.max(AuditEntry.id))) or 0


def summary(row: AuditEntry) -> tuple:
    return (row.kind, row.actor_kind, row.actor_id, row.object_type, row.object_id, row.changes, row.address,
            row.request_id)


def verify(app):
    return app.test_cli_runner().invoke(args=["audit", "verify"])


def test_the_scripted_tour_writes_exactly_the_expected_rows(app, client, admin, session):
    victor = make_user(role="responder", name="Victor", email="victor@example.com")
    incident = make_incident(title="Checkout slow")
    pm = fill_for_publishing(make_postmortem(make_resolved_incident(title="Search down")))
    pm_services.submit_for_review(session, pm)
    integration, _token = make_integration("rollbar", "shop")
    hint = integration.token_hint
    admin_token = auth.create_token(session, admin, "tour")[0]
    session.commit()
    admin_api = ApiClient(client, make_token(admin))
    token_id = max(t.id for t in admin.tokens)
    start = last_id()
    login(client, admin)
    env = {"REMOTE_ADDR": "192.0.2.10"}

    # 1. an admin changes a role (web form)
    r = post_form(client, f"/admin/users/{victor.id}", {"name": "Victor", "role": "viewer", "active": "on"},
                  headers={"X-Request-ID": "tour-1"}, environ_base=env)
    assert r.status_code == 302
    # 2. an API token edits an incident's title
    r = client.patch(f"/api/v1/incidents/{incident.id}", json={"title": "Checkout down"},
                     headers=admin_api.headers | {"X-Request-ID": "tour-2"}, environ_base=env)
    assert r.status_code == 200, r.get_json()
    # 3. the admin publishes a post-mortem (web)
    r = post_form(client, f"/postmortems/{pm.id}/publish", headers={"X-Request-ID": "tour-3"}, environ_base=env)
    assert r.status_code == 302, r.get_data(as_text=True)[-3000:]
    # 4. the admin rotates an integration's token (web)
    r = post_form(client, f"/admin/integrations/{integration.id}/rotate", headers={"X-Request-ID": "tour-4"},
                  environ_base=env)
    assert r.status_code == 200
    session.expire_all()
    new_hint = session.get(type(integration), integration.id).token_hint

    got = [summary(row) for row in rows_after(start)]
    assert got == [
        ("auth.user_updated", "user", admin.id, "user", victor.id, {"role": ["responder", "viewer"]},
         "192.0.2.10", "tour-1"),
        ("incident.updated", "token", token_id, "incident", incident.id, {"title": ["Checkout slow", "Checkout down"]},
         "192.0.2.10", "tour-2"),
        ("postmortem.published", "user", admin.id, "postmortem", pm.id, {"status": ["in_review", "published"]},
         "192.0.2.10", "tour-3"),
        ("alert.integration_token_rotated", "user", admin.id, "integration", integration.id,
         {"token_hint": [hint, new_hint]}, "192.0.2.10", "tour-4"),
    ]
    assert hint != new_hint
    labels = [(row.actor_label, row.object_label) for row in rows_after(start)]
    assert labels[0] == ("Ada Admin <admin@example.com>", "Victor <victor@example.com>")
    assert labels[1][0].startswith("token ") and labels[1][0].endswith("of Ada Admin <admin@example.com>")
    assert labels[3][1] == "rollbar shop"
    assert admin_token.id != token_id  # the row names the token that acted, not just its owner

    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "holds" in result.output


def _some_rows(session, n: int = 5) -> list[int]:
    user = make_user(role="responder")
    make_user(role="admin")
    for i in range(n):
        auth.update_user(session, user, name=f"Name {i}")
        session.commit()
    ids = [row.id for row in rows_after(0)]
    session.commit()  # no transaction of ours holds SQLite's write lock while the test edits behind our back
    return ids


def test_an_edited_row_is_named_by_verify(app, session):
    ids = _some_rows(session)
    assert verify(app).exit_code == 0
    with db.engine.begin() as conn:
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == ids[2]).values(actor_label="someone else"))
    result = verify(app)
    assert result.exit_code == 1
    assert f"row {ids[2]}: its content does not match its hash" in result.output


def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(app, session):
    ids = _some_rows(session)
    row = session.get(AuditEntry, ids[1])
    content = {c: getattr(row, c) for c in audit.CONTENT} | {"changes": {"name": ["x", "y"]}}
    forged = audit.row_hash(content, row.prev_hash)
    session.commit()
    with db.engine.begin() as conn:
        conn.execute(sa.update(AuditEntry).where(AuditEntry.id == ids[1])
                     .values(changes={"name": ["x", "y"]}, hash=forged))
    result = verify(app)
    assert result.exit_code == 1
    assert f"row {ids[2]}: its previous hash does not match row {ids[1]}" in result.output


def test_a_deleted_row_is_named_by_verify(app, session):
    ids = _some_rows(session)
    with db.engine.begin() as conn:
        conn.execute(sa.delete(AuditEntry).where(AuditEntry.id == ids[3]))
    result = verify(app)
    assert result.exit_code == 1
    assert f"row {ids[4]}: its previous hash does not match row {ids[2]}" in result.output


def test_verify_reads_in_batches(app, session):
    ids = _some_rows(session, 7)
    assert audit.verify(session, batch=2) == audit.Verdict(True, len(ids))


def test_a_rolled_back_change_leaves_no_row_and_the_chain_holds(app, session):
    user = make_user(role="responder")
    make_user(role="admin")
    start = last_id()
    auth.update_user(session, user, name="Rolled back")
    session.rollback()
    savepoint_user = session.get(type(user), user.id)
    auth.update_user(session, savepoint_user, name="Kept")
    nested = session.begin_nested()
    auth.update_user(session, savepoint_user, name="Dropped")
    nested.rollback()
    auth.update_user(session, savepoint_user, name="Kept too")
    session.commit()
    assert [r.changes["name"][1] for r in rows_after(start)] == ["Kept", "Kept too"]
    assert audit.verify(session).ok


def test_concurrent_writers_keep_one_chain(app, session):
    """Appends from several connections at once (the advisory lock on PostgreSQL, the write lock on SQLite)."""
    users = [make_user(role="responder") for _ in range(3)]
    make_user(role="admin")
    errors = []

    def work(user_id: int):
        try:
            with app.app_context():
                for i in range(8):
                    u = db.session.get(type(users[0]), user_id)
                    auth.update_user(db.session, u, name=f"{user_id}-{i}")
                    db.session.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ids = [u.id for u in users]
    session.commit()
    threads = [threading.Thread(target=work, args=(user_id,)) for user_id in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert audit.verify(session) == audit.Verdict(True, 24)


def test_a_webhook_that_opens_an_incident_is_audited_as_the_integration(app, client, session):
    row, token = make_integration("rollbar", "shop")
    start = last_id()
    r = post_webhook(client, "rollbar", alert_fixture("rollbar_new_item_production"), token,
                     environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert r.status_code == 200, r.get_json()
    got = rows_after(start)
    assert [(e.kind, e.actor_kind, e.actor_id, e.actor_label, e.address) for e in got] == [
        ("incident.declared", "integration", row.id, "rollbar integration shop", "198.51.100.4")]
    # A repeat delivery of the same alert changes no incident: nothing audited.
    start = last_id()
    post_webhook(client, "rollbar", alert_fixture("rollbar_new_item_production") | {"occurrence": 2}, token)
    assert rows_after(start) == []


def test_sign_ins_are_audited(app, client, session):
    user = make_user(email="sam@example.com", name="Sam")
    start = last_id()
    limits = auth.LoginLimits()
    assert auth.authenticate(session, "sam@example.com", "not the password", "192.0.2.1", limits) is None
    session.commit()
    assert auth.authenticate(session, "sam@example.com", "correct horse battery", "192.0.2.1", limits) is not None
    session.commit()
    got = [(e.kind, e.actor_kind, e.actor_id, e.actor_label, e.object_label, e.changes) for e in rows_after(start)]
    assert got == [
        ("auth.sign_in_failed", "anonymous", None, "sam@example.com", "sam@example.com",
         {"reason": [None, "bad_password"]}),
        ("auth.signed_in", "user", user.id, "Sam <sam@example.com>", "Sam <sam@example.com>",
         {"method": [None, "password"]}),
    ]


def test_cli_changes_are_audited_as_the_command_line(app, session):
    start = last_id()
    result = app.test_cli_runner().invoke(args=["users", "create", "new@example.com", "--name", "New", "--role",
                                                "viewer", "--password", "a long enough password"])
    assert result.exit_code == 0, result.output
    (row,) = rows_after(start)
    assert (row.kind, row.actor_kind, row.actor_label, row.changes, row.address) == (
        "auth.user_created", "system", "cli", {"role": [None, "viewer"]}, None)


# --- the page, the CSV, the API ---------------------------------------------------------------------------------


def _tour_rows(session):
    user = make_user(role="responder", name="=SUM(1)")
    make_user(role="admin")
    auth.update_user(session, user, role="viewer")
    token, _ = auth.create_token(session, user, "ci")
    session.commit()
    return user, token


def test_the_page_filters_and_only_admins_see_it(app, admin_client, session):
    user, token = _tour_rows(session)
    page = admin_client.get("/admin/audit?kind=auth.user_updated").get_data(as_text=True)
    assert '"responder" &rarr; "viewer"' in page and "auth.token_created</code>" not in page
    page = admin_client.get(f"/admin/audit?object_type=api_token&object_id={token.id}").get_data(as_text=True)
    assert "auth.token_created</code>" in page and "auth.user_updated</code>" not in page
    page = admin_client.get("/admin/audit?kind=auth").get_data(as_text=True)
    assert "auth.token_created</code>" in page and "auth.user_updated</code>" in page
    assert admin_client.get("/admin/audit?since=2999-01-01").get_data(as_text=True).count("<code>auth.") == 0
    bad = admin_client.get("/admin/audit?object_id=abc&since=yesterday")
    assert bad.status_code == 422 and "Not a valid integer" in bad.get_data(as_text=True)


def test_responders_cannot_see_the_audit_page(responder_client):
    assert responder_client.get("/admin/audit").status_code == 403
    assert responder_client.get("/admin/audit.csv").status_code == 403


def test_csv_export_guards_formulas(app, admin_client, session):
    user, _ = _tour_rows(session)
    r = admin_client.get(f"/admin/audit.csv?object_type=user&object_id={user.id}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [row["kind"] for row in rows] == ["auth.user_updated"]
    assert rows[0]["object_label"].startswith("'=SUM(1)")
    assert json.loads(rows[0]["changes"]) == {"role": ["responder", "viewer"]}


def test_the_api_needs_the_admin_scope(app, client, admin, session):
    _tour_rows(session)
    write_token = auth.create_token(session, admin, "w", scope="write")[1]
    admin_token = auth.create_token(session, admin, "a")[1]
    session.commit()
    r = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {write_token}"})
    assert r.status_code == 403
    assert r.get_json()["error"]["message"] == ("This token's scope is write; this needs a token of scope admin "
                                                "(the admin role).")
    r = client.get("/api/v1/audit?kind=auth.user_updated", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["total"] == 1
    item = body["items"][0]
    assert item["kind"] == "auth.user_updated" and item["changes"] == {"role": ["responder", "viewer"]}
    assert item["actor"]["kind"] == "system" and item["object"]["type"] == "user"
    r = client.get("/api/v1/audit?actor_kind=robot", headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 422 and "actor_kind" in r.get_json()["error"]["fields"]


@pytest.mark.parametrize("actor_filter", ["actor=Ada", "actor_kind=user"])
def test_the_api_filters_by_actor(app, client, admin, session, actor_filter):
    login(client, admin)
    victim = make_user(role="responder")
    post_form(client, f"/admin/users/{victim.id}", {"name": "Renamed", "role": "responder", "active": "on"})
    _tour_rows(session)  # rows by the system
    admin_token = auth.create_token(session, admin, "a")[1]
    session.commit()
    r = client.get(f"/api/v1/audit?{actor_filter}&kind=auth.user_updated",
                   headers={"Authorization": f"Bearer {admin_token}"})
    assert [i["object"]["id"] for i in r.get_json()["items"]] == [victim.id]


def test_deliveries_committed_together_each_keep_their_integration_and_one_chain(app, session, monkeypatch):
    """The webhook writer applies several deliveries in one transaction: each row names its own sender and
    address, the chain's last hash is read once and carried along, and the chain verifies."""
    import copy

    from incidents.actor import Actor
    from incidents.alert import batching
    from incidents.alert import services as alert_services
    from incidents.alert.sources import parse
    from incidents.database import utcnow

    batcher = batching.Batcher(app)
    monkeypatch.setitem(app.extensions, batching.EXTENSION, batcher)
    shop, shop_token = make_integration("rollbar", "shop")
    api, api_token = make_integration("rollbar", "api")
    works = []
    for n, (row, token) in enumerate([(shop, shop_token), (api, api_token), (shop, shop_token)], 1):
        info = alert_services.integration_for_token(session, "rollbar", token)
        payload = copy.deepcopy(alert_fixture("rollbar_new_item_production"))
        payload["data"]["item"]["id"] = 900000100 + n
        payload["data"]["item"]["counter"] = 100 + n
        raw = json.dumps(payload)
        parsed = parse("rollbar", json.loads(raw))[0]
        work = batching.Work(info, parsed, raw, {}, utcnow(), alert_services.dedup_key(parsed, raw.encode()))
        work.acting = (Actor("integration", row.id, f"rollbar integration {row.name}"), f"192.0.2.{n}")
        works.append(work)
    start = last_id()
    session.rollback()
    for work in works:
        batcher._queue.put(work)
    batcher._ensure_running()
    for work in works:
        assert work.done.wait(30) and work.alone is None
    assert batcher.batches == 1 and batcher.batched == 3
    # in the order the writer applied them (its lock order: by integration, then alert)
    applied = sorted(works, key=batching.lock_order)
    assert [(e.kind, e.actor_id, e.address) for e in rows_after(start)] == [
        ("incident.declared", w.acting[0].id, w.acting[1]) for w in applied]
    assert audit.verify(session).ok


def test_a_role_handover_records_who_held_it_before(app, session):
    from incidents.incident import services as incidents

    first, second = make_user(role="responder"), make_user(role="responder")
    incident = make_incident()
    start = last_id()
    incidents.set_role(session, incident, "commander", first.id)
    incidents.set_role(session, incident, "commander", second.id)
    incidents.set_role(session, incident, "commander", None)
    session.commit()
    assert [(r.kind, r.object_id, r.changes) for r in rows_after(start)] == [
        ("incident.role_assigned", incident.id, {"commander": [None, first.id]}),
        ("incident.role_assigned", incident.id, {"commander": [first.id, second.id]}),
        ("incident.role_assigned", incident.id, {"commander": [second.id, None]})]
