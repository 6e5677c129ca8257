"""A reverse proxy on loopback that does what deploy/nginx.conf does: it appends the peer's address to
X-Forwarded-For (keeping whatever the client sent, as `$proxy_add_x_forwarded_for` does) and sets X-Forwarded-Proto
and X-Forwarded-Host. Clients look distinct to it by binding distinct loopback addresses (127.0.0.2, ...)."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer",
              "content-length"}


class ReverseProxy:
    def __init__(self, upstream: str, proto: str = "http"):
        self.upstream = urlsplit(upstream)
        self.proto = proto  # what the proxy tells the app (https: as if it terminated TLS)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.proxy = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ReverseProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def _forward(self) -> None:
        proxy: ReverseProxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-forwarded-")]
        prior = self.headers.get("X-Forwarded-For")
        peer = self.client_address[0]
        headers += [("X-Forwarded-For", f"{prior}, {peer}" if prior else peer),
                    ("X-Forwarded-Proto", proxy.proto), ("X-Forwarded-Host", self.headers.get("Host", ""))]
        upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                upstream.putheader(name, value)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    """A browser whose connections come from `address` (any 127.x.y.z works on Linux loopback)."""
    http = requests.Session()
    for scheme in ("http://", "https://"):
        http.mount(scheme, _FromAddress(address))
    return http
