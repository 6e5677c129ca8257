"""The one mail sender: SMTP settings from a URL, multipart messages, and typed delivery errors."""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from incidents import metrics
from incidents.settings import with_defaults
from incidents.singleline import one_line

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


class MailError(Exception):
    """Delivery failed; `temporary` says whether trying again later can succeed (4xx, network) or not (5xx)."""

    def __init__(self, message: str, *, temporary: bool, code: int | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.code = code


class MailNotConfigured(MailError):
    def __init__(self):
        super().__init__("No SMTP server is configured (INCIDENTS_SMTP_URL).", temporary=False)


@dataclass(frozen=True)
class SMTPSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in reprs, logs or errors
    implicit_tls: bool = False  # smtps://: TLS from the first byte
    starttls: bool = False  # smtp://...?starttls=true: upgrade the plain connection before AUTH
    timeout: float = 10.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str, *, timeout: float = 10.0) -> SMTPSettings:
    """`smtp://user:pass@host:port`, `smtps://...` (implicit TLS) or `smtp://...?starttls=true`.

    Default ports: 465 for smtps, 587 for STARTTLS, 25 otherwise. Credentials are URL-decoded, so a
    password containing `@` or `:` is written `%40` / `%3A`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("SMTP URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit_tls = parts.scheme == "smtps"
    starttls = not implicit_tls and query.get("starttls", "").lower() in _TRUE
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP URL has an invalid port") from None
    return SMTPSettings(
        host=parts.hostname,
        port=port or (465 if implicit_tls else 587 if starttls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        implicit_tls=implicit_tls, starttls=starttls, timeout=timeout,
    )


def smtp_settings(config: Mapping) -> SMTPSettings:
    """The SMTP server of this installation; MailNotConfigured when SMTP_URL is empty."""
    config = with_defaults(config)
    url = config.get("SMTP_URL") or ""
    if not url:
        raise MailNotConfigured()
    return parse_smtp_url(url, timeout=float(config["SMTP_TIMEOUT"]))


def message_id_for(key: str, sender: str) -> str:
    """A Message-ID derived from `key`, so a retried send of the same mail carries the same id."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{_domain(sender)}>"


def build_message(to: str | list[str], subject: str, text: str, html: str | None = None,
                  headers: Mapping[str, str] | None = None, *, sender: str | None = None,
                  message_id: str | None = None) -> EmailMessage:
    """A plain-text message, multipart/alternative when `html` is given; From and Message-ID default at send time.

    Header values are folded onto one line (`one_line`): they carry stored data (titles, names), and a CR or LF
    there would make the message impossible to build, so the notification would never go out."""
    msg = EmailMessage()
    msg["To"] = one_line(", ".join(to) if isinstance(to, list) else to)
    msg["Subject"] = one_line(subject)
    if sender:
        msg["From"] = one_line(sender)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    if message_id:
        msg["Message-ID"] = one_line(message_id)
    for name, value in (headers or {}).items():
        msg[name] = one_line(value)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def _domain(sender: str | None) -> str:
    return (sender or "").rpartition("@")[2].strip(" >") or "localhost"


def send_message(config: Mapping, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
    """Deliver `message` through the configured server; return recipients refused while others were accepted.

    Raises MailError: `temporary` for 4xx replies and network trouble, permanent for 5xx and bad settings."""
    settings = smtp_settings(config)
    if "From" not in message:
        message["From"] = config.get("MAIL_FROM") or "incidents@localhost"
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=_domain(message["From"]))
    try:
        return _deliver(settings, message)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as e:
        codes = [code for code, _ in e.recipients.values()]
        raise _failed(settings, "every recipient was refused", min(codes) if codes else None,
                      all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPResponseException as e:  # sender refused, data refused, auth failed, ...
        raise _failed(settings, _reply_text(e), e.smtp_code, 400 <= e.smtp_code < 500) from None
    except smtplib.SMTPNotSupportedError as e:
        raise _failed(settings, f"server does not support {e}", None, False) from None
    except (smtplib.SMTPException, OSError) as e:  # disconnects, refused connections, timeouts, TLS errors
        raise _failed(settings, type(e).__name__, None, True) from None


def _deliver(settings: SMTPSettings, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
    context = ssl.create_default_context()
    cls = smtplib.SMTP_SSL if settings.implicit_tls else smtplib.SMTP
    kwargs = {"context": context} if settings.implicit_tls else {}
    with cls(settings.host, settings.port, timeout=settings.timeout, **kwargs) as smtp:
        smtp.ehlo()
        if settings.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        refused = smtp.send_message(message)
    log.info("mail %s sent via %s", message["Message-ID"], settings.address)
    metrics.outbound_call("smtp", "ok")
    return refused


def _reply_text(e: smtplib.SMTPResponseException) -> str:
    text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
    return f"{e.smtp_code} {text}"[:300]


def _failed(settings: SMTPSettings, reason: str, code: int | None, temporary: bool) -> MailError:
    message = f"SMTP delivery via {settings.address} failed: {reason}"
    metrics.outbound_call("smtp", "error" if temporary else "rejected")
    log.warning("%s (%s)", message, "temporary" if temporary else "permanent")
    return MailError(message, temporary=temporary, code=code)

