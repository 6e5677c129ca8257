"""Account e-mails: a password reset link and an invitation, each sent by a job after the commit."""

from __future__ import annotations

from flask import current_app, render_template
from huey.exceptions import CancelExecution

from incidents.auth import services
from incidents.auth.models import Invitation, User
from incidents.extensions import db
from incidents.jobs import job
from incidents.mail import MailError, build_message, send_message
from incidents.urls import public_base_url


def _send(to: str, subject: str, template: str, **context) -> None:
    """One plain-text e-mail; a permanent failure (no SMTP configured, a 5xx) is not retried."""
    config = current_app.config
    text = render_template(template, base_url=public_base_url(config), **context)
    try:
        send_message(config, build_message(to, subject, text))
    except MailError as e:
        if not e.temporary:
            raise CancelExecution(retry=False) from None
        raise


@job(retries=5, retry_delay=30, backoff=2)
def send_password_reset(user_id: int) -> None:
    """E-mail a fresh reset link (made here: a retried job still sends one that works)."""
    user = db.session.get(User, int(user_id))
    if user is None or not user.active:
        return
    link = f"{public_base_url(current_app.config)}/password/reset/" + services.password_reset_token(
        user, current_app.config["SECRET_KEY"])
    _send(user.email, "Choose a new password", "email/password_reset.txt", user=user, link=link)


@job(retries=5, retry_delay=30, backoff=2)
def send_invitation(invitation_id: int) -> None:
    invitation = db.session.get(Invitation, int(invitation_id))
    if invitation is None or invitation.closed_at is not None:
        return
    inviter = db.session.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
    link = f"{public_base_url(current_app.config)}/invitation/" + services.invitation_token(
        invitation, current_app.config["SECRET_KEY"])
    _send(invitation.email, "You are invited to Incidents", "email/invitation.txt", invitation=invitation,
          inviter=inviter, link=link)
