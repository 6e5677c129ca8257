"""A local fake of Shortcut's REST API v3 for tests: a real HTTP server on 127.0.0.1 that checks every request
against the official OpenAPI spec, keeps stories in memory, records requests and injects faults.

    fake = FakeShortcut(spec).start()          # fake.url is the API base URL (…/api/v3), fake.token the token
    fake.inject("createStory", Fault.process_then_drop())   # the next createStory creates, then hangs up
    ...
    assert fake.nonconforming() == []          # every body and answer matched the spec
    fake.stop()

Operations are named by the spec's operationId: createStory, getStory, queryStories, listWorkflows,
getCurrentMemberInfo, listMembers.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import threading
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# --- the spec -------------------------------------------------------------------------------------------------


def _allow_null(schema: Any) -> Any:
    """Swagger 2.0 says `x-nullable: true`; JSON Schema says type [..., "null"]."""
    if isinstance(schema, list):
        return [_allow_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _allow_null(value) for key, value in schema.items()}
    if schema.pop("x-nullable", False):
        if "$ref" in schema:
            return {"anyOf": [{"$ref": schema.pop("$ref")}, {"type": "null"}], **schema}
        if "type" in schema:
            schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


class Spec:
    """Validates instances against the spec's `definitions` (refs resolved within them)."""

    def __init__(self, document: dict):
        self.document = document
        self.definitions = _allow_null(document["definitions"])
        self._validators: dict[str, jsonschema.Draft4Validator] = {}

    @classmethod
    def load(cls, path: Path) -> Spec:
        return cls(json.loads(path.read_text()))

    def errors(self, definition: str, instance: Any, *, many: bool = False) -> list[str]:
        key = f"{definition}[]" if many else definition
        if key not in self._validators:
            ref = {"$ref": f"#/definitions/{definition}"}
            schema = {"type": "array", "items": ref} if many else ref
            self._validators[key] = jsonschema.Draft4Validator(
                {**schema, "definitions": self.definitions}, format_checker=jsonschema.FormatChecker())
        return [f"{definition}{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
                for e in self._validators[key].iter_errors(instance)]

    def operation(self, method: str, path: str) -> dict:
        return self.document["paths"][path][method.lower()]


# --- faults ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of (or besides) answering it normally."""

    kind: str
    status: int = 500
    headers: dict = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def status_code(cls, status: int, **headers) -> Fault:
        """Answer `status` without processing the request."""
        return cls("status", status=status, headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: int | None = None) -> Fault:
        return cls("status", status=429, headers={"Retry-After": str(retry_after)} if retry_after is not None else {})

    @classmethod
    def drop(cls) -> Fault:
        """Hang up without processing or answering."""
        return cls("drop")

    @classmethod
    def process_then_drop(cls) -> Fault:
        """Process the request (a create creates), then hang up without an answer."""
        return cls("process_then_drop")

    @classmethod
    def process_then_status(cls, status: int = 500) -> Fault:
        """Process the request, then answer `status` as if it had failed."""
        return cls("process_then_status", status=status)

    @classmethod
    def process_then_delay(cls, seconds: float) -> Fault:
        """Process the request, then wait `seconds` before answering (past the client's timeout)."""
        return cls("process_then_delay", delay=seconds)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Wait `seconds`, then process and answer normally."""
        return cls("delay", delay=seconds)


@dataclass
class Recorded:
    method: str
    path: str
    operation: str | None
    headers: dict
    query: dict
    body: Any
    problems: list[str]
    status: int | None = None


# --- the server ------------------------------------------------------------------------------------------------

ROUTES = Map([
    Rule("/api/v3/stories", methods=["POST"], endpoint="createStory"),
    Rule("/api/v3/stories/search", methods=["POST"], endpoint="queryStories"),
    Rule("/api/v3/stories/<int:story_id>", methods=["GET"], endpoint="getStory"),
    Rule("/api/v3/workflows", methods=["GET"], endpoint="listWorkflows"),
    Rule("/api/v3/member", methods=["GET"], endpoint="getCurrentMemberInfo"),
    Rule("/api/v3/members", methods=["GET"], endpoint="listMembers"),
])
BODY_SCHEMAS = {"createStory": "CreateStoryParams", "queryStories": "SearchStories"}
ANSWER_SCHEMAS = {"createStory": ("Story", False), "getStory": ("Story", False), "queryStories": ("StorySlim", True),
                  "listWorkflows": ("Workflow", True), "getCurrentMemberInfo": ("MemberInfo", False),
                  "listMembers": ("Member", True)}
SLIM_ONLY = {"task_ids": [], "file_ids": [], "num_tasks_completed": 0, "linked_file_ids": [], "comment_ids": []}
STORY_ONLY = ("comments", "tasks", "files", "linked_files", "branches", "commits", "pull_requests")
SEARCH_FILTERS = ("external_id", "workflow_state_id", "story_type", "archived", "group_id", "epic_id")


class _Hangup(Exception):
    """Close the socket without an answer."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeShortcut:
    """See the module docstring. Thread-safe; one instance per test."""

    WORKSPACE = "fake-workspace"

    def __init__(self, spec: Spec, token: str = "fake-token"):  # noqa: S107
        self.spec = spec
        self.token = token
        self.stories: dict[int, dict] = {}
        self.requests: list[Recorded] = []
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._ids = itertools.count(1001)
        self._label_ids = itertools.count(5001)
        self._labels: dict[str, dict] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.member_id = str(uuid.uuid4())
        created = _now()
        self.workflows = [self._workflow(500, "Engineering", [
            (500001, "Backlog", "backlog"), (500002, "To Do", "unstarted"),
            (500003, "In Progress", "started"), (500004, "Done", "done")], created)]
        self.members = [
            self._member(self.member_id, "Ada Admin", "ada", "ada@example.com", created),
            self._member(str(uuid.uuid4()), "Rita Responder", "rita", "Rita@Example.com", created),
            self._member(str(uuid.uuid4()), "Gone Person", "gone", "gone@example.com", created, disabled=True),
        ]
        self._server = None
        self._thread: threading.Thread | None = None

    # Lifecycle.

    def start(self) -> FakeShortcut:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-shortcut",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # cut injected delays short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/api/v3"

    # Test controls.

    def inject(self, operation: str, *faults: Fault) -> None:
        """Apply `faults` to the next requests of `operation`, one per request, in order."""
        with self._lock:
            self.faults[operation].extend(faults)

    def calls(self, operation: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if operation is None or r.operation == operation]

    def nonconforming(self) -> list[str]:
        """Every spec violation seen, in requests we received or answers we gave."""
        with self._lock:
            return [f"{r.method} {r.path}: {p}" for r in self.requests for p in r.problems]

    def stories_with_external_id(self, external_id: str) -> list[dict]:
        with self._lock:
            return [s for s in self.stories.values() if s["external_id"] == external_id]

    def state_id(self, state_type: str) -> int:
        return next(s["id"] for w in self.workflows for s in w["states"] if s["type"] == state_type)

    def move_story(self, story_id: int, state_type: str) -> dict:
        """Move a story as a user would in Shortcut (sets started/completed and their times)."""
        with self._lock:
            story = self.stories[story_id]
            now = _now()
            story.update(workflow_state_id=self.state_id(state_type), moved_at=now, updated_at=now)
            story["started"] = state_type in ("started", "done")
            story["started_at"] = story["started_at"] or (now if story["started"] else None)
            story["completed"] = state_type == "done"
            story["completed_at"] = now if story["completed"] else None
            return copy.deepcopy(story)

    # WSGI.

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self._handle(request)
        except _Hangup:
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            response = Response(b"", status=500)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        adapter = ROUTES.bind_to_environ(request.environ)
        try:
            operation, args = adapter.match()
        except Exception:
            operation, args = None, {}
        body = request.get_json(silent=True) if request.data else None
        record = Recorded(request.method, request.path, operation, dict(request.headers), request.args.to_dict(),
                          body, [])
        with self._lock:
            self.requests.append(record)
            fault = self.faults[operation].popleft() if operation and self.faults[operation] else None

        response = self._respond(request, record, operation, args, fault)
        record.status = response.status_code
        return response

    def _respond(self, request, record, operation, args, fault) -> Response:
        if operation is None:
            return _json({"message": "Resource does not exist"}, 404)
        if request.headers.get("Shortcut-Token") != self.token:
            return _json({"message": "Unauthorized"}, 401)
        if fault is not None and fault.kind == "status":
            return _json({"message": f"injected {fault.status}"}, fault.status, fault.headers)
        if fault is not None and fault.kind == "drop":
            raise _Hangup
        if fault is not None and fault.kind == "delay":
            self._stopping.wait(fault.delay)

        problems = self._check_request(request, record, operation)
        record.problems.extend(problems)
        if problems:
            return _json({"message": "Schema mismatch", "errors": problems}, 400)
        status, answer = getattr(self, f"_op_{operation}")(record.body, **args)
        if status < 300:
            schema, many = ANSWER_SCHEMAS[operation]
            record.problems.extend(f"answer: {p}" for p in self.spec.errors(schema, answer, many=many))

        if fault is not None and fault.kind == "process_then_drop":
            raise _Hangup
        if fault is not None and fault.kind == "process_then_status":
            return _json({"message": f"injected {fault.status}"}, fault.status)
        if fault is not None and fault.kind == "process_then_delay":
            self._stopping.wait(fault.delay)
        return _json(answer, status)

    def _check_request(self, request, record, operation) -> list[str]:
        problems = []
        if operation in BODY_SCHEMAS:
            if request.mimetype != "application/json":
                problems.append(f"Content-Type is {request.mimetype!r}, not application/json")
            if record.body is None:
                problems.append("body is not JSON")
            else:
                problems.extend(self.spec.errors(BODY_SCHEMAS[operation], record.body))
        elif request.data:
            problems.append("unexpected body on a GET")
        spec_path = {"createStory": "/api/v3/stories", "queryStories": "/api/v3/stories/search",
                     "getStory": "/api/v3/stories/{story-public-id}", "listWorkflows": "/api/v3/workflows",
                     "getCurrentMemberInfo": "/api/v3/member", "listMembers": "/api/v3/members"}[operation]
        allowed = {p["name"] for p in self.spec.operation(request.method, spec_path).get("parameters", ())
                   if p.get("in") == "query"}
        problems.extend(f"unknown query parameter {name!r}" for name in record.query if name not in allowed)
        return problems

    # Operations: (status, answer).

    def _op_createStory(self, params: dict):
        if ("workflow_state_id" in params) == ("project_id" in params):
            return 422, {"message": "Exactly one of workflow_state_id or project_id must be given."}
        state_id = params.get("workflow_state_id")
        workflow = next((w for w in self.workflows for s in w["states"] if s["id"] == state_id), None)
        if workflow is None:
            return 422, {"message": f"Unknown workflow state {state_id}."}
        owners = params.get("owner_ids", [])
        known = {m["id"] for m in self.members}
        if any(owner not in known for owner in owners):
            return 422, {"message": "Unknown owner."}
        with self._lock:
            story_id = next(self._ids)
            now = _now()
            labels = [self._label(label, now) for label in params.get("labels", ())]
            story = {
                "id": story_id, "entity_type": "story", "global_id": f"v2:s:{story_id}",
                "app_url": f"https://app.shortcut.com/{self.WORKSPACE}/story/{story_id}",
                "name": params["name"], "description": params.get("description", ""),
                "story_type": params.get("story_type", "feature"),
                "workflow_id": workflow["id"], "workflow_state_id": state_id, "project_id": None,
                "archived": False, "started": False, "started_at": None, "completed": False,
                "completed_at": None, "completed_at_override": None, "started_at_override": None,
                "moved_at": None, "created_at": now, "updated_at": now,
                "labels": labels, "label_ids": [label["id"] for label in labels],
                "external_links": params.get("external_links", []), "external_id": params.get("external_id"),
                "owner_ids": owners, "follower_ids": [], "requested_by_id": self.member_id,
                "deadline": params.get("deadline"), "estimate": params.get("estimate"),
                "epic_id": params.get("epic_id"), "group_id": params.get("group_id"), "iteration_id": None,
                "story_template_id": None, "position": story_id * 1000,
                "blocked": False, "blocker": False, "mention_ids": [], "member_mention_ids": [],
                "group_mention_ids": [], "previous_iteration_ids": [], "story_links": [],
                "stats": {"num_related_documents": 0},
                **{key: [] for key in STORY_ONLY},
            }
            self.stories[story_id] = story
            return 201, copy.deepcopy(story)

    def _op_getStory(self, _body, story_id: int):
        with self._lock:
            story = self.stories.get(story_id)
            return (200, copy.deepcopy(story)) if story else (404, {"message": "Resource does not exist"})

    def _op_queryStories(self, filters: dict):
        with self._lock:
            found = [self._slim(s) for s in self.stories.values()
                     if all(s.get(key) == filters[key] for key in SEARCH_FILTERS if key in filters)]
        return 201, found  # the spec answers 201 here

    def _op_listWorkflows(self, _body):
        return 200, copy.deepcopy(self.workflows)

    def _op_getCurrentMemberInfo(self, _body):
        me = next(m for m in self.members if m["id"] == self.member_id)
        return 200, {"id": me["id"], "is_owner": True, "mention_name": me["profile"]["mention_name"],
                     "name": me["profile"]["name"], "role": "admin",
                     "workspace2": {"id": str(uuid.UUID(int=1)), "created_at": me["created_at"],
                                    "default_workflow_id": self.workflows[0]["id"], "estimate_scale": [1, 2, 4, 8],
                                    "name": "Fake", "url_slug": self.WORKSPACE, "utc_offset": "+00:00"},
                     "organization2": {"id": str(uuid.UUID(int=2))}}

    def _op_listMembers(self, _body):
        return 200, copy.deepcopy(self.members)

    # Builders.

    def _slim(self, story: dict) -> dict:
        slim = {k: copy.deepcopy(v) for k, v in story.items() if k not in STORY_ONLY}
        return slim | SLIM_ONLY

    def _label(self, params: dict, now: str) -> dict:
        name = params["name"]
        if name not in self._labels:
            label_id = next(self._label_ids)
            self._labels[name] = {
                "id": label_id, "entity_type": "label", "global_id": f"v2:l:{label_id}", "name": name,
                "app_url": f"https://app.shortcut.com/{self.WORKSPACE}/label/{label_id}",
                "description": params.get("description"), "color": params.get("color"),
                "external_id": params.get("external_id"), "archived": False, "created_at": now, "updated_at": now}
        return copy.deepcopy(self._labels[name])

    @staticmethod
    def _workflow(workflow_id: int, name: str, states: list[tuple[int, str, str]], now: str) -> dict:
        return {
            "id": workflow_id, "entity_type": "workflow", "name": name, "description": "",
            "default_state_id": states[1][0], "team_id": 1, "project_ids": [], "auto_assign_owner": False,
            "created_at": now, "updated_at": now,
            "states": [{"id": state_id, "entity_type": "workflow-state", "name": state_name, "type": state_type,
                        "description": "", "verb": None, "color": "#aabbcc", "position": n, "num_stories": 0,
                        "num_story_templates": 0, "global_id": f"v2:ws:{state_id}", "created_at": now,
                        "updated_at": now} for n, (state_id, state_name, state_type) in enumerate(states)],
        }

    @staticmethod
    def _member(member_id: str, name: str, mention: str, email: str, now: str, disabled: bool = False) -> dict:
        return {
            "id": member_id, "entity_type": "member", "global_id": f"v2:m:{member_id}", "role": "member",
            "disabled": disabled, "state": "disabled" if disabled else "full", "created_without_invite": False,
            "group_ids": [], "created_at": now, "updated_at": now,
            "profile": {"id": str(uuid.uuid4()), "entity_type": "profile", "name": name, "mention_name": mention,
                        "email_address": email, "deactivated": disabled, "is_owner": False,
                        "gravatar_hash": None, "display_icon": None},
        }


def _json(data: Any, status: int, headers: dict | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers or {},
                    content_type="application/json;charset=utf-8")
