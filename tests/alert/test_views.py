"""Alert pages: list and detail with responder actions, the delivery log with replay, integrations admin."""

from __future__ import annotations

import re

import sqlalchemy as sa

from incidents.alert.models import Alert, Delivery, Integration, Outcome
from incidents.alert.services import processing
from incidents.alert.sources import SOURCES
from incidents.extensions import db
from incidents.incident.models import EntryKind, Incident, Severity, TimelineEntry
from tests.alert.conftest import fixture, make_integration, post
from tests.conftest import login, post_form
from tests.factories import make_incident, make_service


def _staging_alert(client) -> Alert:
    _, token = make_integration("rollbar", "pages")
    payload = fixture("rollbar_new_item_production")
    payload["data"]["item"]["environment"] = "staging"  # stays an alert: no incident by default rules
    post(client, "rollbar", payload, token)
    return db.session.scalar(sa.select(Alert))


def test_the_status_filter_offers_each_choice_once(viewer_client):
    html = viewer_client.get("/alerts").get_data(as_text=True)
    assert html.count('<option value="open"') == 1
    assert '<option value="resolved"' in html and '<option value="all"' in html


def test_alerts_list_and_page(viewer_client):
    alert = _staging_alert(viewer_client)
    page = viewer_client.get("/alerts").get_data(as_text=True)
    assert "KeyError: &#39;cart_id&#39;" in page and "https://rollbar.com/acme/shop/items/7/" in page
    assert viewer_client.get("/alerts?status=closed").get_data(as_text=True).count("No alerts match") == 1
    detail = viewer_client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "900000001" in detail and "Open an incident" not in detail  # viewers cannot act
    assert viewer_client.post(f"/alerts/{alert.id}/open-incident").status_code in (400, 403)


def test_responder_opens_an_incident_from_an_alert(responder_client, responder):
    alert = _staging_alert(responder_client)
    page = responder_client.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "Open an incident" in page and "Attach to an existing incident" in page
    response = post_form(responder_client, f"/alerts/{alert.id}/open-incident", {"severity": "SEV2"})
    assert response.status_code == 302
    db.session.expire_all()
    incident = db.session.scalar(sa.select(Incident))
    assert incident.severity == Severity.SEV2 and incident.created_by_id == responder.id
    assert db.session.get(Alert, alert.id).incident_id == incident.id
    again = post_form(responder_client, f"/alerts/{alert.id}/open-incident", {"severity": "SEV2"})
    assert again.status_code == 409 and "already belongs" in again.get_data(as_text=True)


def test_responder_attaches_an_alert(responder_client):
    alert = _staging_alert(responder_client)
    incident = make_incident(title="Cart broken")
    assert post_form(responder_client, f"/alerts/{alert.id}/attach", {"incident": "INC-999999"}).status_code == 404
    assert post_form(responder_client, f"/alerts/{alert.id}/attach", {"incident": incident.ref}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).incident_id == incident.id
    entries = db.session.scalars(sa.select(TimelineEntry).where(TimelineEntry.kind == EntryKind.ALERT))
    assert [e.text for e in entries] == ["Alert attached: KeyError: 'cart_id'"]


def test_delivery_log_shows_redacted_body_and_replays(responder_client, monkeypatch):
    _, token = make_integration("rollbar", "log")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(processing, "_apply", broken)
    post(responder_client, "rollbar", fixture("rollbar_new_item_production"), token)
    monkeypatch.undo()
    delivery = db.session.scalar(sa.select(Delivery))
    log = responder_client.get("/deliveries?outcome=failed").get_data(as_text=True)
    assert f"#{delivery.id}" in log and "RuntimeError: boom" in log
    page = responder_client.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert "[redacted]" in page and "rollbar-post-server-item-token-0000" not in page and "Replay" in page
    assert post_form(responder_client, f"/deliveries/{delivery.id}/replay").status_code == 302
    db.session.expire_all()
    assert db.session.get(Delivery, delivery.id).outcome == Outcome.PROCESSED


def test_viewers_cannot_read_delivery_bodies(viewer_client):
    assert viewer_client.get("/deliveries").status_code == 403


def test_admin_creates_integration_and_sees_token_once(admin_client):
    service = make_service(name="Payments")
    page = admin_client.get("/admin/integrations")
    assert page.status_code == 200
    for source in SOURCES:  # every registered source is named with its URL
        assert f"/webhooks/{source}</code>" in page.get_data(as_text=True)
    response = post_form(admin_client, "/admin/integrations",
                         {"source": "rollbar", "name": "payments-api", "service": service.slug, "rules": ""})
    assert response.status_code == 201
    html = response.get_data(as_text=True)
    assert "Paste this URL into Rollbar: Settings &gt; Notifications &gt; Webhook." in html  # the source's own setup
    url = re.search(r"(http://localhost/webhooks/rollbar\?token=(whk_[\w-]+))", html)
    assert url, html
    token = url.group(2)
    assert "Set-Cookie" not in response.headers or token not in response.headers.get("Set-Cookie", "")
    assert token not in admin_client.get("/admin/integrations").get_data(as_text=True)  # shown once
    row = db.session.scalar(sa.select(Integration))
    assert row.service_id == service.id and row.rules is None
    assert post(admin_client, "rollbar", fixture("rollbar_new_item_production"), token).status_code == 200

    bad = post_form(admin_client, f"/admin/integrations/{row.id}",
                    {"name": "payments-api", "rules.1.incident_severity": "SEV9"})
    assert bad.status_code == 422 and "incident_severity" in bad.get_data(as_text=True)
    ok = post_form(admin_client, f"/admin/integrations/{row.id}",
                   {"name": "payments", "rules.1.events": "new_item", "rules.1.incident_severity": "SEV4",
                    "rules.1.action": "open", "active": "on"})
    assert ok.status_code == 302
    db.session.expire_all()
    row = db.session.get(Integration, row.id)
    assert row.name == "payments"
    assert row.rules == [{"events": ["new_item"], "incident_severity": "SEV4", "action": "open"}]

    rotated = post_form(admin_client, f"/admin/integrations/{row.id}/rotate").get_data(as_text=True)
    new_token = re.search(r"token=(whk_[\w-]+)", rotated).group(1)
    assert new_token != token
    assert post(admin_client, "rollbar", fixture("rollbar_occurrence"), token).status_code == 401
    assert post(admin_client, "rollbar", fixture("rollbar_occurrence"), new_token).status_code == 200


def test_integration_admin_is_admin_only(client, responder):
    login(client, responder)
    assert client.get("/admin/integrations").status_code == 403
    assert post_form(client, "/admin/integrations", {"source": "rollbar", "name": "x"}).status_code == 403
    assert db.session.scalar(sa.select(Integration)) is None


def test_webhooks_need_no_csrf_but_forms_do(admin_client):
    _, token = make_integration("opsgenie", "csrf")
    assert post(admin_client, "opsgenie", fixture("opsgenie_create_p1"), token).status_code == 200
    assert admin_client.post("/admin/integrations", data={"source": "rollbar", "name": "x"}).status_code == 400
