"""`incidents integrations add|list` and `incidents deliveries replay`."""

from __future__ import annotations

import sqlalchemy as sa

from incidents.alert import services
from incidents.alert.models import Alert, Delivery, Integration, Outcome
from incidents.alert.services import processing
from incidents.extensions import db
from tests.alert.conftest import fixture, make_integration, post
from tests.factories import make_service


def test_integrations_add_prints_a_working_webhook_url(app, client):
    service = make_service(name="Shop")
    result = app.test_cli_runner().invoke(
        args=["integrations", "add", "rollbar", "shop-web", "--service", service.slug])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("http://localhost/webhooks/rollbar?token=whk_")
    token = url.split("token=", 1)[1]
    row = db.session.scalar(sa.select(Integration))
    assert row.token_hash == services.hash_token(token) and token not in (row.token_hint * 3)
    assert row.service_id == service.id and row.team_id == service.team_id
    assert post(client, "rollbar", fixture("rollbar_new_item_production"), token, via="query").status_code == 200


def test_integrations_add_with_own_token_and_errors(app, client):
    runner = app.test_cli_runner()
    token = "opsgenie-shared-secret-1234"
    result = runner.invoke(args=["integrations", "add", "opsgenie", "ops", "--token", token])
    assert result.exit_code == 0 and result.stdout.strip().endswith(f"token={token}")
    assert post(client, "opsgenie", fixture("opsgenie_create_p1"), token).status_code == 200
    again = runner.invoke(args=["integrations", "add", "opsgenie", "ops"])
    assert again.exit_code != 0 and "exists" in again.output
    short = runner.invoke(args=["integrations", "add", "rollbar", "x", "--token", "short"])
    assert short.exit_code != 0 and "16" in short.output
    listing = runner.invoke(args=["integrations", "list"])
    assert "opsgenie\tops\t…1234\t-\tactive" in listing.output and token not in listing.output


def test_deliveries_replay(app, client, monkeypatch):
    _, token = make_integration("rollbar", "replay")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(processing, "_apply", broken)
    assert post(client, "rollbar", fixture("rollbar_new_item_production"), token).status_code == 202
    assert post(client, "rollbar", fixture("rollbar_occurrence"), token).status_code == 202
    runner = app.test_cli_runner()
    still_broken = runner.invoke(args=["deliveries", "replay", "--failed"])
    assert still_broken.exit_code == 1 and "failed\tRuntimeError: boom" in still_broken.stdout
    monkeypatch.undo()

    first, second = db.session.scalars(sa.select(Delivery).order_by(Delivery.id))
    one = runner.invoke(args=["deliveries", "replay", str(first.id)])
    assert one.exit_code == 0 and f"{first.id}\tprocessed" in one.stdout
    rest = runner.invoke(args=["deliveries", "replay", "--failed"])
    assert rest.exit_code == 0 and f"{second.id}\tprocessed" in rest.stdout
    db.session.expire_all()
    assert [d.outcome for d in db.session.scalars(sa.select(Delivery))] == [Outcome.PROCESSED] * 2
    assert db.session.scalar(sa.select(Alert)).occurrence_count == 2
    skipped = runner.invoke(args=["deliveries", "replay", str(first.id)])
    assert "skipped" in skipped.stdout  # processed deliveries are never applied twice
    assert runner.invoke(args=["deliveries", "replay"]).exit_code == 2
    assert "No delivery 999999" in runner.invoke(args=["deliveries", "replay", "999999"]).output
