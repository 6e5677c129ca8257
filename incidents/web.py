"""Wires blueprints, login, request hooks, security headers and template helpers into the app."""

from __future__ import annotations

from flask import Flask, g, has_request_context, redirect, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from incidents import fastpath
from incidents.bounds import IdConverter
from incidents.database import sqlite_begin_mode
from incidents.extensions import db, login_manager
from incidents.formatting import format_datetime, format_duration
from incidents.markdown import image_hosts, render_markdown
from incidents.singleline import reject_nul

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SETUP_EXEMPT = {"auth.setup", "static", "health.healthz", "health.readyz", "metrics.metrics", "status.view"}

CSP = (
    "default-src 'self'; img-src 'self' data:{image_hosts}; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def content_security_policy(image_hosts) -> str:
    """The CSP header: images only from this site, data: URIs and the hosts Markdown may show images from."""
    return CSP.format(image_hosts="".join(f" https://{host}" for host in image_hosts))


def secure_cookies_over_https(wsgi_app):
    """Mark every cookie of an https response Secure: Flask's and Flask-Login's flags follow BASE_URL alone, and a
    TLS-terminating proxy (X-Forwarded-Proto, when trusted) may serve https before BASE_URL says so."""

    def app(environ, start_response):
        if environ.get("wsgi.url_scheme") != "https":
            return wsgi_app(environ, start_response)

        def start(status, headers, exc_info=None):
            return start_response(status, [_secure_cookie(h) for h in headers], exc_info)

        return wsgi_app(environ, start)

    return app


def _secure_cookie(header: tuple[str, str]) -> tuple[str, str]:
    name, value = header
    if name.lower() != "set-cookie" or any(a.strip().lower() == "secure" for a in value.split(";")[1:]):
        return header
    return name, value + "; Secure"


def trust_proxies(app: Flask) -> None:
    """Believe X-Forwarded-For/-Proto/-Host from the last TRUSTED_PROXIES hops only (werkzeug's ProxyFix), so that
    `request.remote_addr` (sign-in throttle, stored deliveries, gunicorn's access log), `request.is_secure` and the
    request's host (links, urls.public_base_url) are the client's; with 0, a client could forge them all."""
    app.wsgi_app = secure_cookies_over_https(app.wsgi_app)
    if (hops := int(app.config.get("TRUSTED_PROXIES") or 0)) > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def register(app: Flask) -> None:
    fastpath.init_app(app)
    app.url_map.converters["int"] = IdConverter  # before any route: ids beyond the columns are a 404
    trust_proxies(app)
    from incidents.action_item.views import bp as action_item_bp
    from incidents.alert.cli import deliveries_cli, integrations_cli
    from incidents.alert.views import bp as alert_bp
    from incidents.api import bp as api_bp
    from incidents.audit.views import audit_cli
    from incidents.audit.views import bp as audit_bp
    from incidents.auth.accounts import bp as account_bp
    from incidents.auth.services import count_users, user_for_session
    from incidents.auth.sso import bp as sso_bp
    from incidents.auth.views import bp as auth_bp
    from incidents.auth.views import users_cli
    from incidents.backup import backup_command, restore_command
    from incidents.catalog.views import bp as catalog_bp
    from incidents.health import bp as health_bp
    from incidents.incident.views import bp as incident_bp
    from incidents.incident.views import status_bp
    from incidents.insights.views import bp as insights_bp
    from incidents.insights.views import insights_cli
    from incidents.notify.views import bp as notify_bp
    from incidents.postmortem.views import bp as postmortem_bp
    from incidents.report.cli import report_cli
    from incidents.report.views import bp as report_bp
    from incidents.search.views import bp as search_bp
    from incidents.search.views import search_cli
    from incidents.slack.views import bp as slack_bp
    from incidents.tracker.views import bp as tracker_bp
    from incidents.webhooks import hooks as webhooks_bp  # after alert.views and tracker.views added their routes

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def _load_user(user_id: str):
        return user_for_session(db.session, user_id)

    for bp in (health_bp, auth_bp, sso_bp, account_bp, incident_bp, status_bp, catalog_bp, api_bp, notify_bp,
               webhooks_bp, alert_bp, postmortem_bp, action_item_bp, report_bp, insights_bp, tracker_bp, slack_bp,
               search_bp, audit_bp):
        app.register_blueprint(bp)
    app.cli.add_command(users_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(integrations_cli)
    app.cli.add_command(deliveries_cli)
    app.cli.add_command(report_cli)
    app.cli.add_command(search_cli)
    app.cli.add_command(insights_cli)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)

    @app.before_request
    def _begin_mode():
        # Read-only requests (GET, and POST views marked @reads_only) never take SQLite's write lock; writes take
        # it up front (see sqlite.py).
        reads = request.method in _SAFE_METHODS or getattr(app.view_functions.get(request.endpoint), "reads_only",
                                                           False)
        g._begin_token = sqlite_begin_mode.set("DEFERRED" if reads else "IMMEDIATE")

    @app.before_request
    def _no_nul_in_query():
        # No stored text holds a NUL and PostgreSQL cannot even compare one: an API query string carrying one is a
        # 422 naming the parameter, here once, rather than a 500 from whichever lookup meets it first. (Pages keep
        # their own handling, e.g. a login `next` with a NUL falls back to the home page.)
        if "api" not in request.blueprints:
            return None
        bad = [key for key, value in request.args.items(multi=True) if "\x00" in key or "\x00" in value]
        if bad:
            reject_nul(**{key.replace("\x00", "") or "query": "\x00" for key in bad})
        return None

    @app.teardown_request
    def _reset_begin_mode(_exc):
        token = g.pop("_begin_token", None)
        if token is not None:
            sqlite_begin_mode.reset(token)

    @app.before_request
    def _first_run_setup():
        # Until the first admin exists, every page leads to the setup form.
        if app.extensions.get("incidents.has_users") or request.endpoint in _SETUP_EXEMPT or (
                request.blueprint in ("webhooks", "slack")):  # senders must be able to deliver before anyone signs in
            return None
        if count_users(db.session):
            app.extensions["incidents.has_users"] = True
            return None
        if "api" in request.blueprints:
            return None
        return redirect(url_for("auth.setup"))

    csp = content_security_policy(image_hosts(app.config))

    security = [("Content-Security-Policy", csp), ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                ("Referrer-Policy", "same-origin")]
    with_hsts = [*security, ("Strict-Transport-Security", "max-age=31536000")]

    @app.after_request
    def _security_headers(response):
        # Each unless the view set its own: one pass over the headers, not a scan per name (every webhook delivery
        # comes through here).
        present = {name.lower() for name, _value in response.headers.items()}
        wanted = with_hsts if app.config["SESSION_COOKIE_SECURE"] or request.is_secure else security
        response.headers.extend([h for h in wanted if h[0].lower() not in present])
        return response

    from incidents import metrics
    from incidents.incident.services import count_open_by_severity

    metrics.add_scrape_gauge(app, "incidents_open_incidents", "Open incidents by severity.", "severity",
                             lambda: count_open_by_severity(db.session))

    app.jinja_env.filters["markdown"] = render_markdown
    app.jinja_env.filters["dt"] = format_datetime
    app.jinja_env.filters["duration"] = format_duration

    from incidents.auth.models import Role
    from incidents.auth.permissions import actor
    from incidents.incident.models import SEVERITY_COLOURS

    @app.context_processor
    def _globals():
        # Jobs render templates (e-mails) outside any request: there is no actor there.
        return {"actor": actor() if has_request_context() else None, "Role": Role,
                "severity_colours": SEVERITY_COLOURS}
