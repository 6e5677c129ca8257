"""Sign-in, first-run setup, user administration, API tokens; and the `incidents users` commands."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask.cli import AppGroup
from flask_login import login_user, logout_user

from incidents.auth import services
from incidents.auth.models import Role, TokenScope, User
from incidents.auth.permissions import actor, require
from incidents.auth.sso import settings as sso_settings
from incidents.database import utcnow
from incidents.errors import DomainError, Invalid
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.responses import no_store, safe_next

bp = Blueprint("auth", __name__)


def _next_page() -> str:
    return safe_next(request.args.get("next"), url_for("incident.index"))


def _start_session(user: User, *, remember: bool = False) -> None:
    """A signed-in session that keeps nothing of the one before it (no fixation: a planted cookie's contents,
    its CSRF token included, are gone), carrying the user's session version."""
    had_remember_cookie = current_app.config["REMEMBER_COOKIE_NAME"] in request.cookies
    session.clear()
    login_user(user, remember=remember)
    if not remember and had_remember_cookie:
        session["_remember"] = "clear"  # Flask-Login deletes an earlier sign-in's remember cookie


def _end_session() -> None:
    session.clear()
    logout_user()  # after clear(): it leaves the order to delete the remember cookie in the session


@bp.route("/login", methods=["GET", "POST"])
def login():
    if actor() is not None:
        return redirect(_next_page())
    errors: dict = {}
    status = 200
    headers = {}
    sso = sso_settings()
    if request.method == "POST" and not _password_sign_in_allowed(sso, request.form.get("email", "")):
        services.record_sign_in_failure(db.session, email=request.form.get("email", ""),
                                        address=request.remote_addr or "unknown", reason="sso_only")
        db.session.commit()
        errors, status = {"_": ["Password sign-in is off: use single sign-on."]}, 403
    elif request.method == "POST":
        try:
            sign_in = services.begin_sign_in(
                db.session, request.form.get("email", ""), request.remote_addr or "unknown",
                services.LoginLimits.from_config(current_app.config),
            )
        except services.LoginThrottled as e:
            db.session.rollback()
            errors, status, headers = {"_": [e.message]}, 429, {"Retry-After": str(e.retry_after)}
        else:
            db.session.commit()  # the attempt is recorded; no transaction is open while Argon2 runs
            new_hash = services.check_password(sign_in, request.form.get("password", ""))
            user = services.finish_sign_in(db.session, sign_in, new_hash)
            db.session.commit()
            if user is not None:
                _start_session(user, remember=bool(request.form.get("remember")))
                return redirect(_next_page())
            errors, status = {"_": ["Wrong e-mail or password."]}, 401
    return render_template("auth/login.html", errors=errors, email=request.form.get("email", ""), sso=sso), status, \
        headers


def _password_sign_in_allowed(sso, email: str) -> bool:
    """With SSO_ONLY, only the break-glass admins may use a password (an admin listed there, nobody else)."""
    if not sso.only:
        return True
    user = services.get_user_by_email(db.session, email) if sso.password_allowed(email) else None
    return user is not None and user.role == Role.ADMIN


@bp.post("/logout")
def logout():
    _end_session()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.post("/logout/everywhere")
@require(Role.VIEWER)
def logout_everywhere():
    """Ends every session and remember cookie of this user, in every browser (a lost laptop, a shared PC)."""
    services.revoke_sessions(db.session, actor())
    db.session.commit()
    _end_session()
    flash("You are signed out everywhere: every browser has to sign in again.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Create the first admin; this page exists only while there is no user at all."""
    if services.count_users(db.session):
        return redirect(url_for("auth.login"))
    errors: dict = {}
    if request.method == "POST":
        form = request.form
        if form.get("password") != form.get("password2"):
            errors = {"password2": ["The two passwords differ."]}
        else:
            try:
                user = services.create_first_admin(db.session, email=form.get("email", ""),
                                                   name=form.get("name", ""), password=form.get("password", ""))
                db.session.commit()
            except services.AlreadySetUp:
                db.session.rollback()
                return redirect(url_for("auth.login"))
            except DomainError as e:
                db.session.rollback()
                errors = form_errors(e)
            else:
                _start_session(user)
                flash("Welcome! You are the first admin. Add teams and services next.", "success")
                return redirect(url_for("catalog.teams"))
    return render_template("auth/setup.html", errors=errors, form=request.form), (422 if errors else 200)


@bp.get("/admin/users")
@require(Role.ADMIN)
def users():
    return _users_page({}, {})


def _users_page(errors: dict, form, status: int = 200, *, invite_form=None):
    """The users page; `errors` go to the add form, or to the invite form when `invite_form` is given."""
    rows = db.session.scalars(sa.select(User).order_by(User.name)).all()
    inviting = invite_form is not None
    return render_template("auth/users.html", users=rows, roles=list(Role), errors={} if inviting else errors,
                           form=form, invite_errors=errors if inviting else {}, invite_form=invite_form or {},
                           invitations=services.open_invitations(db.session)), status


@bp.post("/admin/users")
@require(Role.ADMIN)
def create_user():
    form = request.form
    try:
        user = services.create_user(db.session, email=form.get("email", ""), name=form.get("name", ""),
                                    role=form.get("role", ""), password=form.get("password", ""))
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _users_page(form_errors(e), form, 422)
    flash(f"Created {user.email} ({user.role.value}).", "success")
    return redirect(url_for("auth.users"))


def _no_such_user():
    return render_template("error.html", status=404, message="No such user."), 404


@bp.post("/admin/users/<int:user_id>")
@require(Role.ADMIN)
def update_user(user_id: int):
    user = db.session.get(User, user_id)
    if user is None:
        return _no_such_user()
    form = request.form
    version = user.session_version
    try:
        services.update_user(db.session, user, name=form.get("name"), role=form.get("role") or None,
                             active=form.get("active") == "on", password=form.get("password") or None)
        db.session.commit()
        _keep_own_session(user)
        flash(f"Saved {user.email}." + (" Every session of the user has ended."
                                        if user.session_version != version else ""), "success")
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
    return redirect(url_for("auth.users"))


@bp.post("/admin/users/<int:user_id>/sign-out")
@require(Role.ADMIN)
def revoke_user_sessions(user_id: int):
    user = db.session.get(User, user_id)
    if user is None:
        return _no_such_user()
    services.revoke_sessions(db.session, user)
    db.session.commit()
    _keep_own_session(user)
    flash(f"Signed {user.email} out everywhere.", "success")
    return redirect(url_for("auth.users"))


def _keep_own_session(user: User) -> None:
    """An admin who ended their own sessions (a new password, say) stays signed in in this browser (call it
    before flashing: the new session starts empty)."""
    if user.id == actor().id and user.active and session.get("_user_id") != user.get_id():
        _start_session(user)


def _tokens_page(new_token: str | None = None, errors: dict | None = None, status: int = 200):
    user = actor()
    scopes = [s for s in TokenScope if s.ceiling.rank <= user.role.rank]
    return no_store(render_template("auth/tokens.html", tokens=user.tokens, new_token=new_token, scopes=scopes,
                                    default_scope=TokenScope.of_role(user.role), errors=errors or {},
                                    form=request.form)), status


@bp.get("/account/tokens")
@require(Role.VIEWER)
def tokens():
    return _tokens_page()


@bp.post("/account/tokens")
@require(Role.VIEWER)
def create_token():
    form = request.form
    days = form.get("expires", "").strip()
    try:
        if days and not (days.isascii() and days.isdigit()):
            raise Invalid("Expiry must be a whole number of days.", {"expires": ["A number of days."]})
        _, plain = services.create_token(db.session, actor(), form.get("name", ""), scope=form.get("scope") or None,
                                         expires_in_days=int(days) if days else None)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _tokens_page(errors=form_errors(e), status=422)
    return _tokens_page(new_token=plain)


@bp.get("/admin/tokens")
@require(Role.ADMIN)
def all_tokens():
    """Everyone's API tokens, with revoke."""
    return render_template("auth/all_tokens.html", tokens=services.list_tokens(db.session), now=utcnow())


@bp.post("/account/tokens/<int:token_id>/revoke")
@require(Role.VIEWER)
def revoke_token(token_id: int):
    services.revoke_token(db.session, token_id, by=actor())
    db.session.commit()
    flash("Token revoked: it no longer works.", "success")
    return redirect(safe_next(request.form.get("back"), url_for("auth.tokens")))


# --- command line --------------------------------------------------------------------------------

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--name", required=True, help="Display name.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.RESPONDER.value, show_default=True)
@click.option("--password", help="Prompted for (hidden) when omitted.")
def users_create(email: str, name: str, role: str, password: str | None):
    """Create a user account."""
    if not password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = services.create_user(db.session, email=email, name=name, role=role, password=password, via="cli")
        db.session.commit()
    except DomainError as e:
        raise click.ClickException(e.message) from None
    click.echo(f"Created {user.email} ({user.role.value}).")


@users_cli.command("token")
@click.argument("email")
@click.option("--name", default="cli", show_default=True, help="A label to recognise the token by.")
@click.option("--scope", type=click.Choice([s.value for s in TokenScope]),
              help="At most what the token may do (default: the owner's role).")
@click.option("--expires", type=click.IntRange(1, services.MAX_TOKEN_DAYS), metavar="DAYS",
              help="Days until the token stops working (default: never).")
def users_token(email: str, name: str, scope: str | None, expires: int | None):
    """Create an API token for EMAIL and print it (the last line is the token alone)."""
    user = services.get_user_by_email(db.session, email)
    if user is None:
        raise click.ClickException(f"No user {email}.")
    try:
        token, plain = services.create_token(db.session, user, name, scope=scope, expires_in_days=expires)
        db.session.commit()
    except DomainError as e:
        raise click.ClickException(e.message) from None
    expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
    click.echo(f"API token for {user.email}, scope {token.scope.value}{expiry} (shown once; revoke it under "
               "Account > API tokens):", err=True)
    click.echo(plain)
