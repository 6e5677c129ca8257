"""Tech-debt pages: the dashboard, the items behind each figure, the weekly report preview and its settings."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.catalog import services as catalog
from incidents.database import utcnow
from incidents.errors import DomainError, Invalid, NotFound
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.report import charts, services
from incidents.report.queries import AGE_BUCKETS, Week, build_ledger, repeat_flags

bp = Blueprint("report", __name__)

PERIODS = (4, 8, 12, 26, 52)
FIGURE_TITLES = {"opened": "Opened", "repaid": "Repaid", "written_off": "Written off", "balance": "Open balance",
                 "open": "Open balance", "overdue": "Overdue"}
# The e-mail preview is the e-mail itself: inline styles (as mail clients need), never scripts, framed only here.
EMAIL_PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'"


class Filters:
    """The dashboard's filters from the query string; unknown teams or services are a 404, bad values a 422."""

    def __init__(self, args):
        self.team = catalog.get_team(db.session, args["team"]) if args.get("team") else None
        self.service = catalog.get_service(db.session, args["service"]) if args.get("service") else None
        raw_weeks = args.get("weeks") or str(current_app.config["DEBT_WEEKS"])
        if not raw_weeks.isdigit() or not 1 <= int(raw_weeks) <= 104:
            raise Invalid("Weeks must be a whole number from 1 to 104.", {"weeks": ["1 to 104."]})
        self.weeks = int(raw_weeks)
        self.tz = services.report_tz(current_app.config)
        try:
            self.until = Week.parse(args["until"], self.tz) if args.get("until") else None
        except ValueError:
            raise Invalid("The week is written YYYY-Www, e.g. 2026-W47.", {"until": ["YYYY-Www."]}) from None

    def args(self, **extra) -> dict:
        out = {"team": self.team.slug if self.team else None, "service": self.service.slug if self.service else None,
               "weeks": self.weeks, "until": self.until.label if self.until else None} | extra
        return {k: v for k, v in out.items() if v not in (None, "")}

    def ledger(self, now):
        return build_ledger(db.session, now=now, tz=self.tz, weeks=self.weeks, until=self.until,
                            team_id=self.team.id if self.team else None,
                            service_id=self.service.id if self.service else None)


def _charts(ledger, link) -> list[charts.Chart]:
    weekly = [(w.week.label[-3:], [("opened", len(w.opened), link("opened", w.week.label)),
                                   ("repaid", len(w.repaid), link("repaid", w.week.label))]) for w in ledger.weeks]
    balance = [(w.week.label[-3:], len(w.balance), link("balance", w.week.label)) for w in ledger.weeks]
    aging = [(label, len(rows), link(f"age:{n}")) for n, (label, rows) in enumerate(ledger.aging())]
    owners = [(o.name, len(o.items), link(f"owner:{o.owner_id or 'none'}")) for o in ledger.overdue_by_owner()]
    return [charts.columns("Opened vs repaid per week", weekly), charts.line("Open balance over time", balance),
            charts.bars("Open items by age", aging, series="age"),
            charts.bars("Overdue by owner", owners, series="overdue")]


@bp.get("/debt")
@require(Role.VIEWER)
def dashboard():
    try:
        f = Filters(request.args)
    except Invalid as e:
        return render_template("report/dashboard.html", errors=form_errors(e), f=None, ledger=None,
                               teams=catalog.list_teams(db.session), periods=PERIODS), 422
    ledger = f.ledger(utcnow())

    def link(figure: str, week: str | None = None) -> str:
        return url_for("report.items", **f.args(figure=figure, week=week))

    names = {t.id: t.name for t in catalog.list_teams(db.session)}
    service_names = {s.id: s.name for s in catalog.list_services(db.session)}
    return render_template(
        "report/dashboard.html", f=f, ledger=ledger, link=link, charts=_charts(ledger, link), errors={},
        teams=catalog.list_teams(db.session), periods=PERIODS, age_buckets=AGE_BUCKETS,
        by_team=sorted(ledger.by("team_id").items(), key=lambda kv: names.get(kv[0], "")),
        by_service=sorted(ledger.by("service_id").items(), key=lambda kv: service_names.get(kv[0], "")),
        team_names=names, service_names=service_names)


@bp.get("/debt/items")
@require(Role.VIEWER)
def items():
    """The items behind one figure of the dashboard (same filters, plus figure and week)."""
    f = Filters(request.args)
    figure, week = request.args.get("figure", "balance"), request.args.get("week") or None
    ledger = f.ledger(utcnow())
    rows = ledger.figure(figure, week)
    kind, _, arg = figure.partition(":")
    title = FIGURE_TITLES.get(figure) or {"age": "Open items aged", "owner": "Overdue items of"}.get(kind, figure)
    if kind == "age" and arg.isdigit() and int(arg) < len(AGE_BUCKETS):
        title += " " + AGE_BUCKETS[int(arg)][0]
    elif kind == "owner":
        title += " " + (rows[0].owner_name if rows and rows[0].owner_name else "nobody")
    return render_template("report/items.html", f=f, rows=rows, title=title, week=week, ledger=ledger,
                           back=url_for("report.dashboard", **f.args()))


def _report_args():
    config = current_app.config
    tz = services.report_tz(config)
    try:
        week = Week.parse(request.args["week"], tz) if request.args.get("week") else services.due_week(utcnow(), config)
    except ValueError:
        raise NotFound(f"No week {request.args.get('week')!r}: write it YYYY-Www.") from None
    team = catalog.get_team(db.session, request.args["team"]) if request.args.get("team") else None
    return week, team


@bp.get("/debt/report")
@require(Role.VIEWER)
def preview():
    """The weekly report exactly as recipients get it: the HTML part framed, the text part below."""
    week, team = _report_args()
    report = services.build_weekly_report(db.session, current_app.config, week=week, team=team, now=utcnow())
    rendered = services.render_weekly_report(report)
    args = {"week": week.label, "team": team.slug if team else None}
    return render_template("report/preview.html", report=report, rendered=rendered, args=args,
                           teams=catalog.list_teams(db.session),
                           recipients=services.recipients_for(db.session, current_app.config, team),
                           email_url=url_for("report.preview_email", **{k: v for k, v in args.items() if v}),
                           previous=week.previous().label, next=week.next().label)


@bp.get("/debt/report/email")
@require(Role.VIEWER)
def preview_email():
    week, team = _report_args()
    report = services.build_weekly_report(db.session, current_app.config, week=week, team=team, now=utcnow())
    html = services.render_weekly_report(report).html
    return html, 200, {"Content-Security-Policy": EMAIL_PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN",
                       "Content-Type": "text/html; charset=utf-8"}


def _settings_page(errors: dict, form: dict | None = None, status: int = 200):
    teams = catalog.list_teams(db.session)
    config = current_app.config
    stored = {t.id: ", ".join(services.stored_recipients(db.session, t.id)) for t in teams}
    stored[None] = ", ".join(services.stored_recipients(db.session, None))
    weekday, at, tz = services.report_schedule(config)
    return render_template("report/settings.html", teams=teams, stored=stored, form=form or {}, errors=errors,
                           configured=services.configured_recipients(config), log=services.delivery_log(db.session),
                           schedule=f"{services.WEEKDAYS[weekday].capitalize()} {at:%H:%M} {tz.key}"), status


@bp.get("/debt/settings")
@require(Role.ADMIN)
def settings():
    return _settings_page({})


@bp.post("/debt/settings")
@require(Role.ADMIN)
def save_settings():
    form = {k: v for k, v in request.form.items() if k.startswith("recipients_")}
    try:
        services.set_recipients(db.session, None, form.get("recipients_global", ""))
        for team in catalog.list_teams(db.session):
            key = f"recipients_{team.id}"
            if key in form:
                try:
                    services.set_recipients(db.session, team.id, form[key])
                except Invalid as e:
                    raise Invalid(f"{team.name}: {e.message}", {key: [e.message]}) from None
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _settings_page(form_errors(e) | {"message": e.message}, form, 422)
    flash("Report recipients saved.", "success")
    return redirect(url_for("report.settings"))


REPEAT_CHIP_LIMIT = 100  # an incident page counts earlier repeats up to here ("more than 100" past it)


@bp.app_template_global()
def repeat_flags_for(incident) -> dict:
    """Repeat-incident flags of one incident page (the incident domain does not import the report): the flags,
    newest first, at most REPEAT_CHIP_LIMIT, and whether there are more."""
    flags = repeat_flags(db.session, [incident], limit=REPEAT_CHIP_LIMIT).get(incident.id, [])
    return {"flags": flags[:REPEAT_CHIP_LIMIT], "more": len(flags) > REPEAT_CHIP_LIMIT}
