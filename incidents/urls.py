"""The public base URL of this installation: the one answer every absolute link (pages, API, e-mails, Shortcut
cards, the CLI) is built from.

In order: `BASE_URL` when set (production should set it); inside a request, the address that request came to
(corrected by the trusted proxies' X-Forwarded-Host/-Proto, see `web.trust_proxies`); otherwise (CLI, jobs,
e-mails) the address `incidents serve` listens on, which it hands to its web and job workers as
`INCIDENTS_SERVE_URL`; failing all of these, serve's default address."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from flask import current_app, has_request_context, request

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5000
ANY_ADDRESS = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104  (compared with, never bound)


def public_base_url(config: Mapping | None = None) -> str:
    """Scheme, host and path prefix of every absolute link, without a trailing slash (order in the module doc)."""
    config = current_app.config if config is None else config
    if base := str(config.get("BASE_URL") or "").strip():
        return base.rstrip("/")
    if has_request_context():
        return request.url_root.rstrip("/")
    return str(config.get("SERVE_URL") or serve_url(DEFAULT_HOST, DEFAULT_PORT)).rstrip("/")


def serve_url(host: str, port: int) -> str:
    """The URL a server bound to host:port is reached at; a wildcard bind (0.0.0.0, ::) is named by the host name."""
    if host in ANY_ADDRESS:
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{port}"
