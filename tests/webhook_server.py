"""A local HTTP server that plays an outbound webhook receiver (Slack): records JSON, can answer errors."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Post:
    path: str
    json: dict
    content_type: str


class WebhookServer:
    """Answers 200 "ok" and records every POST, unless told to fail the next ones with `fail_next`.

    `hold()` makes the next POST (only) wait after it is recorded, until `release()`: a sender caught mid-send."""

    def __init__(self):
        self.posts: list[Post] = []
        self._failures: list[tuple[int, str, dict]] = []
        self._lock = threading.Lock()
        self._hold: threading.Event | None = None  # armed for the next POST
        self._held: threading.Event | None = None  # the one a POST waits on now
        self.arrived = threading.Event()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/services/T000/B000/secret") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int = 1, status: int = 500, body: str = "internal_error",
                  headers: dict | None = None) -> None:
        with self._lock:
            self._failures.extend([(status, body, headers or {})] * count)

    def hold(self) -> None:
        self._hold = self._held = threading.Event()
        self.arrived.clear()

    def release(self) -> None:
        if self._held:
            self._held.set()

    def to(self, path: str) -> list[dict]:
        return [p.json for p in self.posts if p.path == path]

    def reset(self) -> None:
        self.release()
        with self._lock:
            self.posts.clear()
            self._failures.clear()
        self._hold = self._held = None
        self.arrived.clear()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._thread.join()

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.method != "POST":
            return Response("method_not_allowed", 405)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            status, body, headers = failure
            return Response(body, status, headers=headers, content_type="text/plain")
        try:
            payload = json.loads(request.get_data(as_text=True))
        except ValueError:
            return Response("invalid_payload", 400, content_type="text/plain")
        with self._lock:
            self.posts.append(Post(request.path, payload, request.content_type or ""))
            hold, self._hold = self._hold, None  # only the next POST waits
        self.arrived.set()
        if hold is not None:
            hold.wait(120)
        return Response("ok", 200, content_type="text/plain")


class Listener:
    """A TCP listener on loopback that only counts the connections it accepts and the bytes they send."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(1)
            try:
                while chunk := conn.recv(4096):
                    self.received += chunk
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()
