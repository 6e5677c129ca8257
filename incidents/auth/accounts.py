"""Password reset and invitations by e-mail: the request and accept pages, and the admins' invite form.

The links are signed and short-lived (services: a reset link 1 hour and dead once the password changed, an
invitation 7 days and once); the e-mails go out through jobs after the commit (incidents/auth/jobs.py)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from incidents.auth import jobs, services
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.auth.sso import settings as sso_settings
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.forms import form_errors
from incidents.jobs import enqueue_after_commit
from incidents.responses import no_store

bp = Blueprint("account", __name__)

SENT = "If an account with that e-mail exists, a link to choose a new password is on its way. It works for an hour."


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


@bp.route("/password/reset", methods=["GET", "POST"])
def reset_request():
    """Ask for a reset link; the answer is the same whether or not the account exists (no enumeration)."""
    if request.method == "GET":
        return render_template("auth/reset_request.html", errors={}, sent=False)
    email = request.form.get("email", "")
    try:
        user = services.request_password_reset(db.session, email, request.remote_addr or "unknown",
                                               services.LoginLimits.from_config(current_app.config))
    except services.LoginThrottled as e:
        db.session.rollback()
        return render_template("auth/reset_request.html", errors={"_": [e.message]}, sent=False), 429, {
            "Retry-After": str(e.retry_after)}
    if user is not None and sso_settings().password_allowed(user.email):  # SSO-only: no password to reset
        enqueue_after_commit(jobs.send_password_reset, user.id)
    db.session.commit()
    return render_template("auth/reset_request.html", errors={}, sent=True)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset(token: str):
    if services.user_for_reset(db.session, token, _secret()) is None:
        return no_store(render_template("auth/reset.html", errors={}, valid=False)), 404
    errors: dict = {}
    if request.method == "POST":
        if request.form.get("password") != request.form.get("password2"):
            errors = {"password2": ["The two passwords differ."]}
        else:
            try:
                user = services.reset_password(db.session, token, request.form.get("password", ""), _secret())
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                errors = form_errors(e)
            else:
                flash(f"Your password is changed; sign in with it, {user.name}.", "success")
                return redirect(url_for("auth.login"))
    return no_store(render_template("auth/reset.html", errors=errors, valid=True)), (422 if errors else 200)


@bp.post("/admin/invitations")
@require(Role.ADMIN)
def invite():
    form = request.form
    try:
        invitation = services.invite(db.session, email=form.get("email", ""), role=form.get("role", ""), by=actor())
    except DomainError as e:
        db.session.rollback()
        from incidents.auth.views import _users_page

        return _users_page(form_errors(e), {}, 422, invite_form=form)
    enqueue_after_commit(jobs.send_invitation, invitation.id)
    db.session.commit()
    flash(f"Invited {invitation.email} as {invitation.role.value}; the link works for 7 days.", "success")
    return redirect(url_for("auth.users"))


@bp.route("/invitation/<token>", methods=["GET", "POST"])
def accept(token: str):
    """The invited person chooses a name and a password; the account exists from then on, signed in."""
    invitation = services.find_invitation(db.session, token, _secret())
    if invitation is None:
        return no_store(render_template("auth/accept.html", errors={}, invitation=None, form={})), 404
    errors: dict = {}
    form = request.form
    if request.method == "POST":
        if form.get("password") != form.get("password2"):
            errors = {"password2": ["The two passwords differ."]}
        else:
            try:
                user = services.accept_invitation(db.session, token, _secret(), name=form.get("name", ""),
                                                  password=form.get("password", ""))
                db.session.commit()
            except DomainError as e:
                db.session.rollback()
                errors = form_errors(e)
            else:
                from incidents.auth.views import _start_session

                _start_session(user)
                flash(f"Welcome, {user.name}! Your account is ready.", "success")
                return redirect(url_for("incident.index"))
    return no_store(render_template("auth/accept.html", errors=errors, invitation=invitation, form=form)), (
        422 if errors else 200)
