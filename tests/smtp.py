"""A real SMTP server on loopback (aiosmtpd) that records every message it accepts.

Reusable by every test that sends mail: it parses what arrives with the `email` stdlib, can refuse
the next N deliveries with a chosen reply, can require a login, and can be stopped to play "SMTP down"."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the AUTH user name of the session, None when it did not authenticate
    raw: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    @property
    def html(self) -> str | None:
        part = self.message.get_body(("html",))
        return part.get_content().replace("\r\n", "\n") if part is not None else None


class _Handler:
    def __init__(self, server: SMTPTestServer):
        self.server = server

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.server.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.server._take_failure()
        if reply:
            return reply
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.server._record(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login, envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPTestServer:
    """One loopback SMTP server; `reset()` between tests, `stop()`/`start()` to simulate an outage."""

    def __init__(self):
        self.port = free_port()
        self.messages: list[Received] = []
        self.credentials: tuple[str, str] | None = None  # when set, MAIL needs AUTH with exactly these
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(
                _Handler(self), hostname="127.0.0.1", port=self.port,
                authenticator=self._authenticate, auth_require_tls=False,
            )
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def reset(self) -> None:
        self.start()
        with self._lock:
            self.messages.clear()
            self._failures.clear()
        self.credentials = None

    def fail_next(self, count: int = 1, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next `count` DATA commands with `reply` (a 4xx is temporary, a 5xx permanent)."""
        with self._lock:
            self._failures.extend([reply] * count)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _record(self, received: Received) -> None:
        with self._lock:
            self.messages.append(received)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (self.credentials is not None and isinstance(auth_data, LoginPassword)
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
