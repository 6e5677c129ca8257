"""A local fake of the Slack Web API: a real HTTP server on 127.0.0.1 that checks every call's method and
arguments against the official spec (slack_web_openapi_v2_without_examples.json), keeps channels, messages and
pins in memory, records calls and injects faults.

    fake = FakeSlack(spec).start()        # fake.url is the API base (…/api/), fake.token the bot token
    fake.users["U1"] = "ann@example.com"  # Slack users, by e-mail
    fake.fail("conversations.create", status=429, retry_after=1)   # the next call is rate limited
    fake.fail("conversations.create", drop=True)   # the next call is done, then the connection is closed
    assert fake.violations == []          # every call matched the spec
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Spec:
    """The methods of the spec and, for each, the arguments it knows and requires (token aside: a header)."""

    def __init__(self, document: dict):
        self.methods: dict[str, tuple[set[str], set[str]]] = {}
        for path, operations in document["paths"].items():
            known, required = set(), set()
            for op in operations.values():
                for p in op.get("parameters", ()):
                    if p["name"] == "token":
                        continue
                    known.add(p["name"])
                    if p.get("required"):
                        required.add(p["name"])
            self.methods[path.lstrip("/")] = (known, required)

    @classmethod
    def load(cls, path: Path) -> Spec:
        return cls(json.loads(path.read_text()))

    def violations(self, method: str, args: dict) -> list[str]:
        if method not in self.methods:
            return [f"{method}: no such method"]
        known, required = self.methods[method]
        problems = [f"{method}: missing {name}" for name in sorted(required - set(args))]
        problems += [f"{method}: unknown argument {name}" for name in sorted(set(args) - known)]
        return problems


@dataclass
class Call:
    method: str
    args: dict


@dataclass
class Fault:
    status: int = 200
    error: str = ""
    retry_after: int | None = None
    drop: bool = False  # do the work, then close the connection without answering
    hold: float = 0  # do the work, then wait this long before answering (a worker caught mid-call)


class FakeSlack:
    token = "xoxb-test-token"
    bot_user = "UBOT"

    def __init__(self, spec: Spec):
        self.spec = spec
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.users: dict[str, str] = {}  # Slack user id -> e-mail
        self.channels: dict[str, dict] = {}  # id -> {name, creator, topic, members}
        self.messages: dict[str, list[dict]] = defaultdict(list)  # channel -> messages
        self.pins: dict[str, set[str]] = defaultdict(set)
        self.views: list[dict] = []
        self.ephemeral: list[dict] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/api/"

    def start(self) -> FakeSlack:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, count: int = 1, **fault) -> None:
        self._faults[method].extend(Fault(**fault) for _ in range(count))

    def called(self, method: str) -> list[dict]:
        return [c.args for c in self.calls if c.method == method]

    def add_channel(self, name: str, creator: str = "USOMEONE") -> str:
        cid = f"C{next(self._ids):06d}"
        self.channels[cid] = {"id": cid, "name": name, "creator": creator, "topic": "", "members": set()}
        return cid

    def post(self, channel: str, text: str, user: str) -> str:
        ts = f"1700000000.{next(self._ids):06d}"
        self.messages[channel].append({"type": "message", "ts": ts, "text": text, "user": user})
        return ts

    # --- HTTP ---

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/response/"):  # a response_url: no token, JSON in, "ok" out
            with self._lock:
                self.ephemeral.append({"response_url": request.url, **(request.get_json(silent=True) or {})})
            return Response("ok", 200, content_type="text/plain")(environ, start_response)
        method = request.path.rsplit("/", 1)[-1]
        args = dict(request.form) if request.form else dict(request.args)
        if request.is_json:
            args = request.get_json()
        with self._lock:
            self.calls.append(Call(method, args))
            if request.method != "POST":
                self.violations.append(f"{method}: sent with {request.method}")
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return Response(json.dumps({"ok": False, "error": "not_authed"}), 200,
                                content_type="application/json")(environ, start_response)
            self.violations += self.spec.violations(method, args)
            fault = self._faults[method].popleft() if self._faults[method] else None
            if fault and fault.status == 429:
                return Response(json.dumps({"ok": False, "error": "ratelimited"}), 429,
                                headers={"Retry-After": str(fault.retry_after or 1)},
                                content_type="application/json")(environ, start_response)
            body = {"ok": False, "error": fault.error} if fault and fault.error else self._handle(method, args)
        if fault and fault.hold:
            time.sleep(fault.hold)
        if fault and fault.drop:
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            return []
        return Response(json.dumps(body), 200, content_type="application/json")(environ, start_response)

    def _handle(self, method: str, a: dict) -> dict:
        ok = {"ok": True}
        if method == "auth.test":
            return {**ok, "user_id": self.bot_user, "team_id": "T111"}
        if method == "users.info":
            email = self.users.get(a.get("user", ""))
            if email is None:
                return {"ok": False, "error": "user_not_found"}
            return {**ok, "user": {"id": a["user"], "profile": {"email": email}}}
        if method == "users.lookupByEmail":
            found = [uid for uid, email in self.users.items() if email == a.get("email")]
            return {**ok, "user": {"id": found[0]}} if found else {"ok": False, "error": "users_not_found"}
        if method == "conversations.create":
            if any(c["name"] == a.get("name") for c in self.channels.values()):
                return {"ok": False, "error": "name_taken"}
            cid = self.add_channel(a["name"], creator=self.bot_user)
            return {**ok, "channel": {"id": cid, "name": a["name"]}}
        if method == "conversations.list":
            return {**ok, "channels": [{k: v for k, v in c.items() if k != "members"}
                                       for c in self.channels.values()], "response_metadata": {"next_cursor": ""}}
        if method in ("conversations.invite", "conversations.setTopic", "chat.postMessage", "pins.add",
                      "conversations.history", "chat.getPermalink", "chat.update", "chat.postEphemeral"):
            channel = a.get("channel", "")
            if channel not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            c = self.channels[channel]
            if method == "conversations.invite":
                new = set(a["users"].split(","))
                if new <= c["members"]:
                    return {"ok": False, "error": "already_in_channel"}
                c["members"] |= new
                return {**ok, "channel": {"id": channel}}
            if method == "conversations.setTopic":
                c["topic"] = a["topic"]
                return {**ok, "channel": {"id": channel}}
            if method == "chat.postMessage":
                ts = self.post(channel, a.get("text", ""), self.bot_user)
                if a.get("blocks"):
                    self.messages[channel][-1]["blocks"] = json.loads(a["blocks"])
                return {**ok, "channel": channel, "ts": ts}
            if method == "chat.update":
                for m in self.messages[channel]:
                    if m["ts"] == a["ts"]:
                        m["text"], m["blocks"] = a.get("text", ""), json.loads(a.get("blocks") or "[]")
                        return {**ok, "channel": channel, "ts": a["ts"]}
                return {"ok": False, "error": "message_not_found"}
            if method == "chat.postEphemeral":
                self.ephemeral.append(a)
                return {**ok, "message_ts": "1.0"}
            if method == "pins.add":
                if a.get("timestamp") in self.pins[channel]:
                    return {"ok": False, "error": "already_pinned"}
                self.pins[channel].add(a.get("timestamp"))
                return ok
            if method == "chat.getPermalink":
                p = a["message_ts"].replace(".", "")
                return {**ok, "channel": channel, "permalink": f"https://example.slack.com/archives/{channel}/p{p}"}
            messages = [m for m in self.messages[channel]
                        if not a.get("latest") or m["ts"] == a["latest"]] if a.get("inclusive") else \
                self.messages[channel]
            return {**ok, "messages": list(reversed(messages))[:int(a.get("limit") or 100)], "has_more": False}
        if method == "views.open":
            self.views.append(json.loads(a["view"]))
            return {**ok, "view": {"id": f"V{next(self._ids)}"}}
        return {"ok": False, "error": "unknown_method"}

    def summary(self, channel: str) -> dict | None:
        """The pinned summary message of a channel (the first pinned message)."""
        for m in self.messages[channel]:
            if m["ts"] in self.pins[channel]:
                return m
        return None
