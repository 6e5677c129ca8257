"""`incidents report weekly|overdue`: render or send the weekly report, run the overdue reminders now."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.report import services
from incidents.report.queries import Week

report_cli = AppGroup("report", help="The tech-debt weekly report.")


@report_cli.command("weekly")
@click.option("--week", "week_text", metavar="YYYY-Www", help="ISO week to report on (default: the last one due).")
@click.option("--team", "team_slug", metavar="SLUG", help="One team's report (default: all teams).")
@click.option("--send", is_flag=True, help="Send it (once per recipient, as the scheduled job does).")
@click.option("--to", "to", multiple=True, metavar="EMAIL", help="Send to these addresses instead of the lists.")
@click.option("--html", is_flag=True, help="Print the HTML part instead of the text part.")
def weekly(week_text: str | None, team_slug: str | None, send: bool, to: tuple[str, ...], html: bool):
    """Render the weekly report (text to stdout), or --send it."""
    config = current_app.config
    now = utcnow()
    try:
        tz = services.report_tz(config)
        week = Week.parse(week_text, tz) if week_text else services.due_week(now, config)
        team = catalog.get_team(db.session, team_slug) if team_slug else None
    except (ValueError, DomainError) as e:
        raise click.UsageError(str(e)) from None
    if not send:
        if to:
            raise click.UsageError("--to needs --send.")
        rendered = services.render_weekly_report(
            services.build_weekly_report(db.session, config, week=week, team=team, now=now))
        click.echo(f"Subject: {rendered.subject}\n")
        click.echo(rendered.html if html else rendered.text)
        return
    try:
        result = services.send_weekly_report(db.session, config, week=week, team=team, now=now, to=list(to) or None)
    except DomainError as e:
        raise click.UsageError(e.message) from None
    if not (result.sent or result.skipped or result.failed or result.rejected or result.busy):
        click.echo(f"No recipients for {team.name if team else 'the global list'}: nothing sent.")
        return
    for label, names in (("sent", result.sent), ("already sent", result.skipped), ("failed, will retry", result.failed),
                         ("refused", result.rejected), ("in progress elsewhere", result.busy)):
        for name in names:
            click.echo(f"{week.label} {name.removeprefix('email:')}: {label}")
    if not result.complete or result.rejected:
        raise SystemExit(1)


@report_cli.command("overdue")
def overdue():
    """Queue the overdue reminders now (the daily job does this at 06:00 UTC)."""
    from incidents.notify.jobs import queue_overdue_reminders

    click.echo(f"Queued {queue_overdue_reminders()} overdue reminder(s).")
