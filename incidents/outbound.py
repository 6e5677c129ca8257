"""Requests to URLs that users store (team chat webhooks, and anything like them later).

Such a URL must be https and lead to a public address: checked when it is saved (`check_user_url`: scheme, host,
IP literals) and again each time it is used (`post`): every address its host resolves to must be public before
any connection is made, and so must the address the connection actually reaches (DNS that changes in between
cannot slip a private target past the first check). Redirects are never followed. Private, loopback,
link-local, reserved and multicast addresses are refused, so a stored URL cannot make the worker probe the
internal network or a cloud metadata service (169.254.169.254). `OUTBOUND_ALLOW_PRIVATE=true` lifts the address
rule and allows plain http (on-premise chat servers, tests with local receivers).

URLs from INCIDENTS_* settings (Shortcut, Slack API, OpenID issuer) are the operator's choice and do not pass here."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app, has_app_context
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from incidents.errors import Invalid

MAX_LENGTH = 500


class RefusedURL(Exception):
    """The URL may not be requested. Messages name the host at most, never the URL (its path is a secret);
    `temporary` when a later try can succeed (the name did not resolve)."""

    def __init__(self, message: str, *, temporary: bool = False):
        super().__init__(message)
        self.temporary = temporary


def private_allowed(config: Any = None) -> bool:
    """OUTBOUND_ALLOW_PRIVATE of `config`, or of the current app."""
    if config is None:
        config = current_app.config if has_app_context() else {}
    return config.get("OUTBOUND_ALLOW_PRIVATE") in (True, "true", "1", 1)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


def check_user_url(url: str | None, field: str, *, allow_private: bool | None = None) -> str | None:
    """At save time: the stripped URL (None when empty), or Invalid naming `field`. https with a host (http too
    when private targets are allowed); a literal address or a local name must be public."""
    url = (url or "").strip()
    if not url:
        return None
    allow = private_allowed() if allow_private is None else allow_private
    parts = urlsplit(url)
    schemes = ("https", "http") if allow else ("https",)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host = None
    if parts.scheme not in schemes or not host or len(url) > MAX_LENGTH or any(c.isspace() for c in url):
        raise Invalid("The URL must be an https:// URL.", {field: ["Not an https:// URL."]})
    if not allow and _literal_or_local(host):
        raise Invalid("The URL must lead to a public address, not a private, loopback or link-local one.",
                      {field: ["Not a public address."]})
    return url


def _literal_or_local(host: str) -> bool:
    """True for an address literal that is not public, or a name that can only be local."""
    try:
        return not _public(host)
    except ValueError:
        name = host.rstrip(".").lower()
        return name == "localhost" or name.endswith((".localhost", ".local", ".internal")) or "." not in name


def check_target(url: str, *, allow_private: bool | None = None) -> None:
    """At send time, before any connection: refuse (RefusedURL) unless every address of the host is public."""
    allow = private_allowed() if allow_private is None else allow_private
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow else ("https",)) or not parts.hostname:
        raise RefusedURL("only https:// URLs are allowed")
    if allow:
        return
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedURL(f"the host {host} does not resolve", temporary=True) from None
    bad = sorted({info[4][0] for info in infos if not _public(info[4][0])})
    if bad or not infos:
        raise RefusedURL(f"the host {host} resolves to a private, loopback or link-local address")


def _check_peer(conn: HTTPConnection, sock: socket.socket) -> socket.socket:
    # Behind a proxy the peer is the proxy, chosen by the operator; the target was checked before.
    if getattr(conn, "proxy", None) is None:
        try:
            address = sock.getpeername()[0]
        except OSError:
            address = None
        if address is not None and not _public(address):
            sock.close()
            raise RefusedURL(f"the host {conn.host} now resolves to a private address")
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _check_peer(self, super()._new_conn())


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _check_peer(self, super()._new_conn())


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def _refusal(exc: BaseException) -> RefusedURL | None:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cause = stack.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, RefusedURL):
            return cause
        stack += [cause.__cause__, cause.__context__, getattr(cause, "reason", None),
                  *(a for a in cause.args if isinstance(a, BaseException))]
    return None


def post(url: str, *, allow_private: bool | None = None, **kwargs) -> requests.Response:
    """POST to a user-stored URL: checked before connecting and on the connected address, redirects not
    followed. Raises RefusedURL, or requests' own exceptions for network failures."""
    allow = private_allowed() if allow_private is None else allow_private
    check_target(url, allow_private=allow)
    kwargs["allow_redirects"] = False
    with requests.Session() as http:
        http.trust_env = True
        if not allow:
            guarded = _GuardedAdapter()
            http.mount("https://", guarded)
            http.mount("http://", guarded)
        try:
            return http.post(url, **kwargs)
        except requests.RequestException as e:
            refused = _refusal(e)
            if refused is not None:
                raise RefusedURL(str(refused)) from None
            raise
