"""`incidents integrations add|list` and `incidents deliveries replay`: each command owns its transaction."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from incidents import jsonbody
from incidents.alert import services
from incidents.alert.models import Delivery, Outcome, Source
from incidents.alert.sources import SOURCES
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.urls import public_base_url

integrations_cli = AppGroup("integrations", help="Manage webhook integrations of the alert sources.")
deliveries_cli = AppGroup("deliveries", help="Inspect and replay received webhook deliveries.")


@integrations_cli.command("add")
@click.argument("source", type=click.Choice([s.value for s in Source]))
@click.argument("name")
@click.option("--token", help="Use this secret (16+ characters) instead of a generated one.")
@click.option("--secret", help="The key the sender signs its requests with (required by sources that sign).")
@click.option("--site-url", help="The sender's own site (http or https), for links when its body names none.")
@click.option("--severity-label", help="The label that carries the severity (Alertmanager; default: severity).")
@click.option("--resolve-incident", is_flag=True,
              help="Resolve the incident when every one of its alerts is closed or resolved.")
@click.option("--update-incident-severity", is_flag=True,
              help="An alert's priority change (Opsgenie/JSM UpdatePriority) changes its incident's severity too.")
@click.option("--service", help="Default service (slug or id) of incidents opened from these alerts.")
@click.option("--team", help="Default team (slug or id); the service's team when omitted.")
@click.option("--mapping", "mapping_file", type=click.Path(dir_okay=False),
              help="A JSON file of JMESPath expressions: where the generic source finds each field (required).")
def integrations_add(source: str, name: str, token: str | None, secret: str | None, site_url: str | None,
                     severity_label: str | None, resolve_incident: bool, update_incident_severity: bool,
                     service: str | None, team: str | None, mapping_file: str | None):
    """Create an integration and print the webhook URL to paste into the sender (shown once)."""
    options: dict = {"severity_label": severity_label or "", "resolve_incident": resolve_incident,
                     "update_incident_severity": update_incident_severity}
    if mapping_file is not None:
        if not SOURCES[source].option_checks.get("mapping"):
            raise click.ClickException(f"--mapping is for the generic source, not {source}.")
        options["mapping"] = _read_mapping(mapping_file)
    try:
        row, plain = services.create_integration(
            db.session, source=source, name=name, token=token, service=service, team=team, secret=secret,
            site_url=site_url, options=options)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        raise click.ClickException(e.message) from None
    url = services.webhook_url(public_base_url(), source, plain)
    click.echo(f"Created {row.source.label} integration {row.name!r} (id {row.id}).", err=True)
    if not current_app.config.get("BASE_URL"):
        click.echo("INCIDENTS_BASE_URL is not set: replace the address below with the public one.", err=True)
    if row.secret:
        click.echo("The signing secret is stored; it is never shown again.", err=True)
    click.echo(f"{row.source.setup} The URL is shown once:", err=True)
    click.echo(url)


def _read_mapping(path: str):
    """The mapping file's JSON; a missing, unreadable or invalid file is a clean error naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return jsonbody.loads(f.read())
    except OSError as e:
        raise click.ClickException(f"Cannot read the mapping file {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"The mapping file {path} is not UTF-8 text.") from None
    except ValueError as e:
        raise click.ClickException(f"The mapping file {path} is not valid JSON: {e}.") from None


@integrations_cli.command("list")
def integrations_list():
    """One line per integration: id, source, name, token hint, default service, state, secret set or not."""
    for row in services.list_integrations(db.session):
        state = "active" if row.active else "disabled"
        service = row.service.slug if row.service else "-"
        secret = "secret set" if row.secret else "no secret"
        click.echo(f"{row.id}\t{row.source.value}\t{row.name}\t…{row.token_hint}\t{service}\t{state}\t{secret}")


@deliveries_cli.command("replay")
@click.option("--failed", "all_failed", is_flag=True, help="Replay every delivery whose outcome is failed.")
@click.argument("ids", nargs=-1, type=int)
def deliveries_replay(all_failed: bool, ids: tuple[int, ...]):
    """Run stored deliveries through processing again (after a fix), oldest first."""
    if not all_failed and not ids:
        raise click.UsageError("Give delivery ids, or --failed.")
    stmt = sa.select(Delivery).order_by(Delivery.id)
    conditions = []
    if ids:
        conditions.append(Delivery.id.in_(ids))
    if all_failed:
        conditions.append(Delivery.outcome == Outcome.FAILED)
    deliveries = list(db.session.scalars(stmt.where(sa.or_(*conditions))))
    missing = set(ids) - {d.id for d in deliveries}
    if missing:
        raise click.ClickException(f"No delivery {', '.join(map(str, sorted(missing)))}.")
    failures = 0
    for delivery in deliveries:
        try:
            result = services.replay_delivery(db.session, delivery)
        except DomainError as e:
            click.echo(f"{delivery.id}\tskipped\t{e.message}")
            continue
        db.session.commit()  # one delivery per transaction: a later failure never undoes an earlier replay
        failures += result.outcome != Outcome.PROCESSED and result.outcome != Outcome.IGNORED
        click.echo(f"{delivery.id}\t{result.outcome}\t{result.message}".rstrip())
    click.echo(f"Replayed {len(deliveries)} deliveries; {failures} not processed.", err=True)
    if failures:
        raise SystemExit(1)
