"""Reproducible demo data for `incidents demo`: a dozen incidents over eleven weeks that each tell one true story.

Three teams run six services. Every story is played through the real services in the order it happened: alerts
arrive as the payloads their senders really send, through the webhook's own parse-store-ingest path (so
deliveries are stored raw and the alerts open or join the incident), people acknowledge, take roles, write notes,
deploy and resolve; resolved incidents get the post-mortem their team wrote, with the contributing factors and
action items of that story. Only two incidents are repeats, both real recurrences linked by `repeat_of`: a Sentry
issue that regressed, and a certificate that failed to renew again. Three incidents are still open.

Services stamp "now"; the story's moment is written back where a real user would have acted then (`Scene`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.datastructures import Headers

from incidents import jsonbody
from incidents.action_item import services as items
from incidents.action_item.models import ActionItem
from incidents.alert import services as alerts
from incidents.alert.ingestion import check_signature
from incidents.alert.models import Alert, Integration
from incidents.alert.sources import SOURCES, parse
from incidents.alert.sources.alertmanager import label_fingerprint
from incidents.auth import services as auth
from incidents.auth.models import Role, User
from incidents.catalog import services as catalog
from incidents.catalog.models import Service, Team
from incidents.database import utcnow
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, IncidentRole, Severity, TimelineEntry
from incidents.postmortem import editing, review
from incidents.postmortem.models import Postmortem, PostmortemStatus
from incidents.webhooks import safe_headers

DEMO_PASSWORD = "demo-incidents-2024"  # noqa: S105 - printed on purpose: a shared password for throwaway demo data
DEMO_DOMAIN = "demo.example.com"
DAYS = 76

TEAMS = {
    "payments": ("Payments", "Checkout, card processing and the acquirer integrations."),
    "platform": ("Platform", "The edge, TLS, the main database cluster and the deploy pipeline."),
    "mobile": ("Mobile", "iOS and Android apps, their backend-for-frontend and push notifications."),
}

SERVICES = {  # slug: (name, team slug, description)
    "checkout-api": ("Checkout API", "payments", "Cart, order placement and payment orchestration."),
    "payment-gateway": ("Payment Gateway", "payments", "Talks to the card acquirers; routes traffic between them."),
    "edge-proxy": ("Edge Proxy", "platform", "TLS termination, routing and rate limits for every public host."),
    "postgres-primary": ("Postgres Primary", "platform", "The main OLTP database cluster (pg-main) and PgBouncer."),
    "mobile-bff": ("Mobile BFF", "mobile", "Backend-for-frontend of the mobile apps."),
    "push-notifications": ("Push Notifications", "mobile", "APNs and FCM fan-out."),
}

USERS = [  # key, name, role, team slug (None: cross-team)
    ("admin", "Ada Lovelace", Role.ADMIN, None),
    ("priya", "Priya Natarajan", Role.RESPONDER, "payments"),
    ("marco", "Marco Rossi", Role.RESPONDER, "payments"),
    ("jonas", "Jonas Weber", Role.RESPONDER, "platform"),
    ("aiko", "Aiko Tanaka", Role.RESPONDER, "platform"),
    ("sofia", "Sofia Lindqvist", Role.RESPONDER, "platform"),
    ("lucas", "Lucas Oliveira", Role.RESPONDER, "mobile"),
    ("emma", "Emma Dubois", Role.RESPONDER, "mobile"),
    ("victor", "Victor Viewer", Role.VIEWER, None),
]

SENTRY_SECRET = "demo-sentry-client-secret"  # noqa: S105 - throwaway demo data; the Sentry source requires one


@dataclass(frozen=True)
class IntegrationSpec:
    source: str
    service: str
    rules: list | None = None  # None: the source's default rules
    secret: str | None = None


INTEGRATIONS = {
    "prometheus-edge": ("Prometheus · edge", IntegrationSpec("alertmanager", "edge-proxy")),
    # Several alerts of one database outage belong to one incident: attach them to the open one.
    "prometheus-database": ("Prometheus · database", IntegrationSpec("alertmanager", "postgres-primary", rules=[
        {"events": ["firing"], "severities": ["critical"], "action": "attach", "incident_severity": "SEV1"},
        {"events": ["firing"], "severities": ["error", "high"], "incident_severity": "SEV2"}])),
    "sentry-checkout": ("Sentry · checkout", IntegrationSpec("sentry", "checkout-api", secret=SENTRY_SECRET)),
    "opsgenie-payments": ("OpsGenie · payments", IntegrationSpec("opsgenie", "payment-gateway")),
    "grafana-mobile": ("Grafana · mobile", IntegrationSpec("grafana", "push-notifications", rules=[
        {"events": ["firing"], "severities": ["critical"], "incident_severity": "SEV1"},
        {"events": ["firing"], "severities": ["high"], "incident_severity": "SEV2"},
        {"events": ["firing"], "severities": ["warning"], "incident_severity": "SEV3"}])),
}


@dataclass
class DemoContext:
    """What the steps share: the session, one `now`, and the rows made so far."""

    session: Session
    now: datetime
    password_hash: str = ""
    teams: dict[str, Team] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    integrations: dict[str, Integration] = field(default_factory=dict)
    stories: dict[str, Incident] = field(default_factory=dict)  # story key -> its incident
    items: dict[str, ActionItem] = field(default_factory=dict)  # action item title -> row
    deliveries: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def incidents(self) -> list[Incident]:
        return list(self.stories.values())

    def ref(self, story: str) -> str:
        return self.stories[story].ref


def demo_email(key: str) -> str:
    return f"{key}@{DEMO_DOMAIN}"


# --- catalogue, people, integrations ------------------------------------------------------------------------


def load_catalog(ctx: DemoContext) -> None:
    """Teams and services; rows that already exist under the same slug are reused, not duplicated."""
    for slug, (name, description) in TEAMS.items():
        existing = ctx.session.scalar(sa.select(Team).where(Team.slug == slug))
        ctx.teams[slug] = existing or catalog.create_team(ctx.session, name=name, slug=slug, description=description)
    for slug, (name, team, description) in SERVICES.items():
        existing = ctx.session.scalar(sa.select(Service).where(Service.slug == slug))
        ctx.services[slug] = existing or catalog.create_service(
            ctx.session, name=name, slug=slug, team_id=ctx.teams[team].id, description=description)
    ctx.lines.append(f"Teams: {', '.join(t.name for t in ctx.teams.values())}")
    ctx.lines.append(f"Services: {', '.join(ctx.services)}")


def load_users(ctx: DemoContext) -> None:
    """Demo accounts of every role; Argon2 is slow on purpose, so the shared password is hashed once."""
    ctx.password_hash = auth.hash_password(DEMO_PASSWORD)
    ctx.lines.append(f"Users (password for all: {DEMO_PASSWORD}):")
    for key, name, role, team in USERS:
        user = User(email=demo_email(key), name=name, role=role, password_hash=ctx.password_hash)
        ctx.session.add(user)
        ctx.users[key] = user
        ctx.lines.append(f"  {user.email:<28} {role.value:<10} {TEAMS[team][0] if team else ''}".rstrip())
    ctx.session.flush()


def load_integrations(ctx: DemoContext) -> None:
    """One integration per sender and team, made before the first story; one of the same source and name is reused."""
    for key, (name, spec) in INTEGRATIONS.items():
        row = ctx.session.scalar(sa.select(Integration).where(Integration.source == spec.source,
                                                              Integration.name == name))
        if row is None:
            row, _token = alerts.create_integration(ctx.session, source=spec.source, name=name, service=spec.service,
                                                    rules=spec.rules, secret=spec.secret)
            row.created_at = row.updated_at = ctx.now - timedelta(days=DAYS + 3)
        ctx.integrations[key] = row
    ctx.session.flush()
    ctx.lines.append("Integrations: " + ", ".join(name for name, _ in INTEGRATIONS.values()))


# --- what the senders send --------------------------------------------------------------------------------


def _stable_uuid(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "demo:" + ":".join(map(str, parts))))


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not set"


@dataclass(frozen=True)
class PromAlert:
    """One Prometheus alerting rule's alert: its label set is its identity (fingerprint)."""

    labels: dict
    summary: str
    description: str
    expr: str
    runbook: str = ""

    @property
    def fingerprint(self) -> str:
        return label_fingerprint(self.labels)

    def body(self, status: str, starts: datetime, ends: datetime | None, generator_host: str,
             description: str | None = None) -> dict:
        annotations = {"summary": self.summary, "description": description or self.description}
        if self.runbook:
            annotations["runbook_url"] = self.runbook
        return {"status": status, "labels": self.labels, "annotations": annotations,
                "startsAt": _rfc3339(starts), "endsAt": _rfc3339(ends) if ends else _GO_ZERO_TIME,
                "generatorURL": f"https://{generator_host}/graph?g0.expr={quote(self.expr)}&g0.tab=1",
                "fingerprint": self.fingerprint}


def alertmanager_group(receiver: str, alert_bodies: list[dict]) -> dict:
    """Alertmanager's webhook_config body (version 4), grouped by service and alertname."""
    firing = any(a["status"] == "firing" for a in alert_bodies)
    common = {k: v for k, v in alert_bodies[0]["labels"].items()
              if all(a["labels"].get(k) == v for a in alert_bodies)}
    group = {k: common[k] for k in ("service", "alertname") if k in common}
    return {"receiver": receiver, "status": "firing" if firing else "resolved", "alerts": alert_bodies,
            "groupLabels": group, "commonLabels": common,
            "commonAnnotations": {k: v for k, v in alert_bodies[0]["annotations"].items()
                                  if all(a["annotations"].get(k) == v for a in alert_bodies)},
            "externalURL": "https://alertmanager.example.com", "version": "4",
            "groupKey": "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}", "truncatedAlerts": 0}


def grafana_group(alert: PromAlert, status: str, starts: datetime, ends: datetime | None, values: dict,
                  rule_uid: str, dashboard_uid: str) -> dict:
    """Grafana unified alerting's webhook body (version 1): Alertmanager's envelope plus Grafana's fields."""
    base = "https://grafana.example.com"
    one = alert.body(status, starts, ends, "grafana.example.com")
    one.update({"generatorURL": f"{base}/alerting/grafana/{rule_uid}/view",
                "silenceURL": f"{base}/alerting/silence/new?alertmanager=grafana&matcher=alertname%3D"
                              f"{quote(alert.labels['alertname'])}",
                "dashboardURL": f"{base}/d/{dashboard_uid}", "panelURL": f"{base}/d/{dashboard_uid}?viewPanel=2",
                "values": values,
                "valueString": ", ".join(f"[ var='{k}' labels={{}} value={v} ]" for k, v in values.items())})
    body = alertmanager_group("mobile-oncall", [one])
    word = "FIRING" if status == "firing" else "RESOLVED"
    body.update({"version": "1", "orgId": 1, "state": "alerting" if status == "firing" else "ok",
                 "externalURL": f"{base}/", "title": f"[{word}:1] {alert.labels['alertname']} Mobile",
                 "message": f"**{word.title()}**\n\n{alert.summary}\n{alert.description}"})
    return body


@dataclass(frozen=True)
class SentryIssue:
    id: str
    short_id: str
    title: str
    culprit: str
    project: str
    level: str = "error"
    platform: str = "python"

    @property
    def web_url(self) -> str:
        return f"https://acme.sentry.io/issues/{self.id}/"

    def issue(self, status: str, substatus: str, first_seen: datetime, last_seen: datetime) -> dict:
        return {"id": self.id, "shortId": self.short_id, "title": self.title, "culprit": self.culprit,
                "level": self.level, "platform": self.platform, "status": status, "substatus": substatus,
                "firstSeen": _rfc3339(first_seen), "lastSeen": _rfc3339(last_seen), "type": "error",
                "web_url": self.web_url, "url": f"https://sentry.io/api/0/issues/{self.id}/",
                "project": {"id": "4504", "slug": self.project, "name": self.project, "platform": self.platform}}


def sentry_event_alert(issue: SentryIssue, at: datetime, *, rule: str, release: str) -> dict:
    """Sentry's event_alert.triggered: an issue alert rule fired on an event of the issue."""
    event_id = uuid.UUID(_stable_uuid("sentry-event", issue.id, at.isoformat())).hex
    return {"action": "triggered", "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
            "installation": {"uuid": _stable_uuid("sentry-installation")},
            "data": {"triggered_rule": rule, "issue_alert": {"title": rule, "settings": []},
                     "event": {"event_id": event_id, "issue_id": issue.id, "title": issue.title,
                               "culprit": issue.culprit, "level": issue.level, "platform": issue.platform,
                               "datetime": _rfc3339(at), "timestamp": at.timestamp(), "project": 4504,
                               "environment": "production", "release": release,
                               "issue_url": f"https://sentry.io/api/0/issues/{issue.id}/",
                               "web_url": f"{issue.web_url}events/{event_id}/",
                               "tags": [["environment", "production"], ["level", issue.level],
                                        ["release", release]]}}}


def sentry_issue_event(issue: SentryIssue, action: str, actor: str | None, first_seen: datetime,
                       at: datetime) -> dict:
    """Sentry's issue.resolved / issue.unresolved (a regression, when Sentry sees the resolved issue again)."""
    status, substatus = ("resolved", "") if action == "resolved" else ("unresolved", "regressed")
    data: dict = {"issue": issue.issue(status, substatus, first_seen, at)}
    if action == "resolved":
        data["resolution_type"] = "resolved"
    who = {"type": "user", "id": "1", "name": actor} if actor else {"type": "application", "id": "sentry",
                                                                       "name": "Sentry"}
    return {"action": action, "installation": {"uuid": _stable_uuid("sentry-installation")}, "data": data,
            "actor": who}


def opsgenie_body(action: str, alias: str, message: str, priority: str, created: datetime, at: datetime, *,
                  user: str | None = None, note: str | None = None, description: str = "") -> dict:
    """OpsGenie's outgoing webhook: one alert action (createdAt in ms, updatedAt in ns)."""
    alert = {"alertId": _stable_uuid("opsgenie", alias, created.isoformat()), "message": message, "alias": alias,
             "tinyId": "412", "tags": ["acquirer", "payments"],
             "entity": "payment-gateway", "source": "Pingdom synthetic checks", "priority": priority,
             "createdAt": int(created.timestamp() * 1000), "updatedAt": int(at.timestamp() * 1_000_000_000),
             "description": description, "teams": ["Payments"], "recipients": []}
    if user:
        alert |= {"username": demo_email(user.split()[0].lower()), "userFullName": user}
    if note:
        alert["note"] = note
    return {"action": action, "alert": alert, "source": {"name": user or "Pingdom", "type": "web" if user else "API"},
            "integrationId": _stable_uuid("opsgenie-integration"), "integrationName": "Incidents webhook",
            "integrationType": "Webhook"}


# --- playing a story ----------------------------------------------------------------------------------------


class Scene:
    """One story's incident as it happened: each step is at a minute from the story's start (T0), in order."""

    def __init__(self, ctx: DemoContext, key: str, start: datetime):
        self.ctx, self.key, self.start = ctx, key, start
        self.incident: Incident | None = None
        self.last_alert_id: int | None = None
        self._last = start - timedelta(days=1)

    def at(self, minute: float) -> datetime:
        when = self.start + timedelta(minutes=minute)
        if when > self.ctx.now:
            raise ValueError(f"demo story {self.key} has a step in the future (minute {minute})")
        return when

    def _step(self, minute: float) -> datetime:
        when = self.at(minute)
        if when < self._last:
            raise ValueError(f"demo story {self.key}: minute {minute} is earlier than the step before")
        self._last = when
        return when

    def user(self, key: str | None) -> User | None:
        return self.ctx.users[key] if key else None

    def _last_entry_id(self) -> int:
        return self.ctx.session.scalar(sa.select(sa.func.max(TimelineEntry.id))
                                       .where(TimelineEntry.incident_id == self.incident.id)) or 0

    def _date_entries_after(self, entry_id: int, when: datetime) -> None:
        """Services that take no time (edits, links, updates) stamp now: move what they wrote to the story's moment."""
        for entry in self.ctx.session.scalars(sa.select(TimelineEntry).where(
                TimelineEntry.incident_id == self.incident.id, TimelineEntry.id > entry_id)):
            entry.occurred_at = entry.created_at = when

    def _adopt(self, incident_id: int) -> None:
        if self.incident is None:
            incident = self.ctx.session.get(Incident, incident_id)
            self.ctx.session.refresh(incident)
            incident.created_at = incident.detected_at  # declared when detected, not when this loader ran
            self.incident = self.ctx.stories[self.key] = incident

    # Alerts: the webhook's own path, minus HTTP (check the signature, parse, store raw, ingest).
    def alert(self, integration: str, minute: float, payload: dict, headers: dict | None = None) -> None:
        received = self._step(minute)
        row = self.ctx.integrations[integration]
        info = alerts.integration_info(row)
        spec = SOURCES[info.source]
        raw = json.dumps(payload, ensure_ascii=False).encode()
        sent = Headers({"Content-Type": "application/json", "User-Agent": _USER_AGENTS[info.source],
                        "X-Request-Id": _stable_uuid(self.key, info.source, minute), **(headers or {})})
        if info.source == "sentry":
            sent["Sentry-Hook-Signature"] = hmac.new(SENTRY_SECRET.encode(), raw, hashlib.sha256).hexdigest()
            sent["Sentry-Hook-Timestamp"] = str(int(received.timestamp()))
            sent["Request-ID"] = _stable_uuid(self.key, "sentry-request", minute)
        lowered = {name.lower(): value for name, value in sent.items()}
        refused = check_signature(info, raw, lowered)
        if refused:
            raise ValueError(f"demo story {self.key}: {refused}")
        body_json = jsonbody.loads(raw)
        events = parse(info.source, body_json, lowered, info.options)
        result = alerts.ingest(
            self.ctx.session, info, events, body=alerts.delivery_body(info.source, raw, body_json),
            headers=safe_headers(sent, "203.0.113.24", spec.keep_headers), received_at=received,
            key=alerts.dedup_key(events, raw, by_body=not spec.resends), payload=body_json)
        self.ctx.deliveries += 1
        self.last_alert_id = result.alert_id
        if result.incident_id is not None:
            self._adopt(result.incident_id)

    def open_from_alert(self, minute: float, by: str, severity: Severity) -> None:
        """A responder opens an incident from an alert the rules kept as an alert (a repeat when it had one)."""
        when = self._step(minute)
        alert = self.ctx.session.get(Alert, self.last_alert_id)
        incident = alerts.open_incident_from_alert(self.ctx.session, alert, severity, by=self.user(by))
        self._adopt(incident.id)
        incident.started_at = incident.detected_at = incident.created_at = when
        for entry in self.ctx.session.scalars(sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident.id)):
            entry.occurred_at = entry.created_at = when

    def declare(self, minute: float, by: str, *, title: str, summary: str, severity: Severity,
                tags: tuple[str, ...]) -> None:
        when = self._step(minute)
        incident = incidents.create_incident(
            self.ctx.session, title=title, severity=severity, summary=summary,
            service_id=self.ctx.services[_STORY_SERVICE[self.key]].id, tags=tags, detected_at=when,
            created_by=self.user(by))
        self._adopt(incident.id)

    def edit(self, minute: float, by: str, **changes) -> None:
        """Title, summary, tags or when impact started, as the commander corrects them."""
        when, before = self._step(minute), self._last_entry_id()
        incidents.update_incident(self.ctx.session, self.incident, by=self.user(by), **changes)
        self._date_entries_after(before, when)  # "Impact start corrected: ..."

    def roles(self, minute: float, by: str, *, commander: str | None = None, comms: str | None = None,
              scribe: str | None = None) -> None:
        when = self._step(minute)
        for role, key in ((IncidentRole.COMMANDER, commander), (IncidentRole.COMMS_LEAD, comms),
                          (IncidentRole.SCRIBE, scribe)):
            if key:
                incidents.set_role(self.ctx.session, self.incident, role, self.ctx.users[key].id, by=self.user(by),
                                   at=when)

    def ack(self, minute: float, by: str) -> None:
        incidents.acknowledge_incident(self.ctx.session, self.incident, by=self.user(by), at=self._step(minute))

    def investigate(self, minute: float, by: str) -> None:
        incidents.investigate_incident(self.ctx.session, self.incident, by=self.user(by), at=self._step(minute))

    def mitigate(self, minute: float, by: str) -> None:
        incidents.mitigate_incident(self.ctx.session, self.incident, by=self.user(by), at=self._step(minute))

    def resolve(self, minute: float, by: str, resolution: str) -> None:
        incidents.resolve_incident(self.ctx.session, self.incident, by=self.user(by), at=self._step(minute),
                                   resolution=resolution)

    def close(self, minute: float, by: str) -> None:
        incidents.close_incident(self.ctx.session, self.incident, by=self.user(by), at=self._step(minute))

    def note(self, minute: float, by: str, text: str) -> None:
        incidents.add_note(self.ctx.session, self.incident, text, by=self.user(by), occurred_at=self._step(minute))

    def deploy(self, minute: float, by: str, text: str, service: str) -> None:
        incidents.add_timeline_entry(self.ctx.session, self.incident, EntryKind.DEPLOY, text, author=self.user(by),
                                     occurred_at=self._step(minute), data={"service": service})

    def links(self, minute: float, by: str, **links: str) -> None:
        """The war room: chat channel, call and runbook links (chat_url=, call_url=, runbook_url=)."""
        when, before = self._step(minute), self._last_entry_id()
        incidents.set_links(self.ctx.session, self.incident, by=self.user(by), **links)
        self._date_entries_after(before, when)

    def update(self, minute: float, by: str, *, impact: str, actions: str, next_in: int) -> None:
        """A status update for stakeholders, the next one promised `next_in` minutes later."""
        when, before = self._step(minute), self._last_entry_id()
        update = incidents.post_status_update(self.ctx.session, self.incident, impact=impact, actions=actions,
                                              by=self.user(by))
        due = when + timedelta(minutes=next_in)
        update.created_at, update.next_update_at = when, due
        self.incident.next_update_at = due
        self._date_entries_after(before, when)

    def item_status(self, minute: float, title: str, status: str) -> None:
        """Work on another story's action item, as part of this one."""
        items.update_action_item(self.ctx.session, self.ctx.items[title], status=status, at=self._step(minute))

    def review(self, pm: Review) -> None:
        write_postmortem(self.ctx, self.incident, pm)


_USER_AGENTS = {"alertmanager": "Alertmanager/0.27.0", "grafana": "Grafana", "sentry": "sentry-app",
                "opsgenie": "Opsgenie-Webhook"}


# --- post-mortems -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """An action item: created with the post-mortem; `fate` is (status, days after creation[, won't-do reason])."""

    title: str
    type: str | None
    priority: str
    estimate: int | None
    owner: str | None
    due: int | None  # days after creation
    fate: tuple = ()
    description: str = ""


@dataclass(frozen=True)
class Review:
    template: str
    state: PostmortemStatus
    author: str
    sections: dict[str, str]
    factors: tuple[tuple[str, str], ...]
    items: tuple[Item, ...] = ()
    comments: tuple[tuple[str, str, str], ...] = ()  # (reviewer, section key, text)
    started: float = 1.0  # days after the incident was resolved
    submitted: float = 3.0
    published: float = 4.0


def write_postmortem(ctx: DemoContext, incident: Incident, spec: Review) -> Postmortem:
    """The team's review of the incident, written, reviewed and published through the post-mortem services, then
    dated to when the team did it."""
    s = ctx.session
    author = ctx.users[spec.author]
    started = incident.resolved_at + timedelta(days=spec.started)
    submitted = incident.resolved_at + timedelta(days=spec.submitted)
    published = incident.resolved_at + timedelta(days=spec.published)
    pm = editing.start_postmortem(s, incident, spec.template, by=author)
    refs = {key: story_incident.ref for key, story_incident in ctx.stories.items()}  # "{certificate}" -> INC-3
    for key, text in spec.sections.items():
        section = pm.section(key)
        if section is None:
            raise ValueError(f"template {spec.template} has no section {key!r}")
        editing.save_section(s, pm, key, text.format(**refs), section.version, by=author)
    for slug, text in spec.factors:
        editing.add_factor(s, pm, slug, text.format(**refs), by=author)
    made = started + timedelta(hours=2)
    fates: list[tuple[ActionItem, Item, datetime]] = []
    for n, it in enumerate(spec.items):
        created = made + timedelta(minutes=12 * n)
        fields = {"title": it.title, "priority": it.priority, "estimate": it.estimate, "description": it.description}
        if it.type:
            fields["type"] = it.type
        if it.owner:
            fields["owner_id"] = ctx.users[it.owner].id
        if it.due is not None:
            fields["due_date"] = (created + timedelta(days=it.due)).date()
        row = items.create_action_item(s, pm, by=author, at=created, **fields)
        ctx.items[it.title] = row
        fates.append((row, it, created))
    if spec.state != PostmortemStatus.DRAFT:
        review.submit_for_review(s, pm, by=author)
        for who, key, text in spec.comments:
            editing.add_comment(s, pm, key, text, by=ctx.users[who])
    if spec.state == PostmortemStatus.PUBLISHED:
        review.publish_postmortem(s, pm, by=author)
    for row, it, created in fates:
        if it.fate:
            status, days, *reason = it.fate
            when = created + timedelta(days=days)
            if when > ctx.now:
                raise ValueError(f"action item {it.title!r} changes in the future")
            extra = {"wont_do_reason": reason[0]} if reason else {}
            items.update_action_item(s, row, status=status, at=when, **extra)
    _date_postmortem(pm, started, submitted if spec.state != PostmortemStatus.DRAFT else None,
                     published if spec.state == PostmortemStatus.PUBLISHED else None, ctx.now)
    s.flush()
    return pm


def _date_postmortem(pm: Postmortem, started: datetime, submitted: datetime | None, published: datetime | None,
                     now: datetime) -> None:
    """The services stamp now: move the post-mortem's own history to the days the team worked on it."""
    last = published or submitted or started + timedelta(hours=3)
    if last > now:
        raise ValueError(f"post-mortem of {pm.incident.ref} is dated in the future")
    written = started + timedelta(hours=1)
    pm.created_at, pm.updated_at, pm.published_at = started, last, published
    for event in pm.events:
        event.at = {"started": started, "in_review": submitted, "published": published}.get(event.kind) or last
    for section in pm.sections:
        section.updated_at = written if section.version > 1 else started
        for revision in section.revisions:
            revision.created_at = written if revision.version > 1 else started
    for factor in pm.factors:
        factor.created_at = written
    for n, comment in enumerate(pm.comments):
        comment.created_at = (submitted or written) + timedelta(hours=2 + n)


# --- the stories --------------------------------------------------------------------------------------------
# Each is (start, play). `start` is (days ago, "HH:MM" UTC) for the past, or (minutes ago,) for what is still open.
# Notes say times relative to the story, never clock times, so that "now" can move.

_STORY_SERVICE: dict[str, str] = {}
STORIES: dict[str, tuple[tuple, Callable[[Scene], None]]] = {}


def story(key: str, service: str, start: tuple):
    def register(play: Callable[[Scene], None]):
        _STORY_SERVICE[key] = service
        STORIES[key] = (start, play)
        return play
    return register


CHECKOUT_TIMEOUT = SentryIssue("4412093301", "CHECKOUT-API-3F1", "PaymentIntentTimeout: gateway client timed out "
                               "after 2000 ms", "checkout.payments.gateway in authorise", "checkout-api")
DUPLICATE_CHARGE = SentryIssue("4502981177", "CHECKOUT-API-4K7", "DuplicateChargeDetected: cart charged twice "
                               "within 60 s", "checkout.reconcile in check_duplicate_charges", "checkout-api")
PG_CPU = PromAlert(
    {"alertname": "PostgresCPUSaturated", "cluster": "pg-main", "instance": "pg-main-1:9187",
     "service": "postgres-primary", "severity": "critical", "env": "production"},
    "pg-main-1 CPU above 95 % for 5 minutes", "CPU on the primary is 99 % busy; p99 query latency 4.1 s.",
    'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle",instance="pg-main-1"}[2m])) > 0.95',
    "https://runbooks.example.com/postgres/cpu")
PG_WAL = PromAlert(
    {"alertname": "PostgresWALVolumeFilling", "cluster": "pg-main", "instance": "pg-main-1:9100",
     "service": "postgres-primary", "severity": "high", "env": "production"},
    "pg-main-1 WAL volume full within 6 hours", "The WAL volume is 92 % full and grows 1.5 % an hour.",
    'predict_linear(node_filesystem_avail_bytes{mountpoint="/var/lib/postgresql/wal"}[1h], 6*3600) < 0',
    "https://runbooks.example.com/postgres/disk")
PG_CONNECTIONS = PromAlert(
    {"alertname": "PostgresConnectionsExhausted", "cluster": "pg-main", "instance": "pg-main-1:9187",
     "service": "postgres-primary", "severity": "critical", "env": "production"},
    "pg-main-1: 498 of 500 connections in use", "New connections to the primary are refused.",
    'sum(pg_stat_activity_count{instance="pg-main-1:9187"}) > 480', "https://runbooks.example.com/postgres/connections")
PGBOUNCER_WAITING = PromAlert(
    {"alertname": "PgBouncerClientsWaiting", "cluster": "pg-main", "instance": "pgbouncer-main:9127",
     "service": "postgres-primary", "severity": "critical", "env": "production"},
    "PgBouncer: over 1,000 clients waiting for a server connection",
    "Clients wait 12 s on average for a server connection.",
    'sum(pgbouncer_pools_client_waiting_connections) > 1000', "https://runbooks.example.com/postgres/connections")
API_CERT = PromAlert(
    {"alertname": "TLSCertificateExpiringSoon", "instance": "api.example.com:443", "job": "blackbox-tls",
     "service": "edge-proxy", "severity": "warning", "env": "production"},
    "TLS certificate for api.example.com expires in less than 21 days",
    "The certificate served on api.example.com:443 expires in 20 days.",
    '(probe_ssl_earliest_cert_expiry{instance="api.example.com:443"} - time()) / 86400 < 21',
    "https://runbooks.example.com/edge/certificates")
PUSH_LATENCY = PromAlert(
    {"alertname": "PushDeliveryLatencyHigh", "grafana_folder": "Mobile", "service": "push-notifications",
     "severity": "high", "env": "production"},
    "Push delivery p95 above 10 minutes", "APNs send queue wait p95 is 38 minutes.",
    "histogram_quantile(0.95, sum by (le) (rate(push_queue_wait_seconds_bucket[5m]))) > 600")
FCM_ERRORS = PromAlert(
    {"alertname": "FCMSendErrorsHigh", "grafana_folder": "Mobile", "service": "push-notifications",
     "severity": "warning", "env": "production"},
    "FCM send errors above 2 % for Android", "4.7 % of FCM sends fail over the last 15 minutes.",
    'sum(rate(push_send_errors_total{provider="fcm"}[15m])) / sum(rate(push_sends_total{provider="fcm"}[15m]))'
    " > 0.02")


def _am(scene: Scene, integration: str, minute: float, alerts_: list[PromAlert], status: str, since: float,
        description: str | None = None) -> None:
    """An Alertmanager notification of `alerts_`, firing since minute `since` (resolved just before `minute`)."""
    starts = scene.at(since)
    ends = scene.at(minute) - timedelta(seconds=20) if status == "resolved" else None
    bodies = [a.body(status, starts, ends, "prometheus.example.com", description) for a in alerts_]
    scene.alert(integration, minute, alertmanager_group(integration, bodies))


def _sentry_issue(scene: Scene, minute: float, issue: SentryIssue, action: str, actor: str | None,
                  first_seen: datetime) -> None:
    scene.alert("sentry-checkout", minute, sentry_issue_event(issue, action, actor, first_seen, scene.at(minute)),
                {"Sentry-Hook-Resource": "issue"})


@story("checkout-timeout", "checkout-api", (68, "10:14"))
def _checkout_timeout(s: Scene) -> None:
    s.alert("sentry-checkout", 0, sentry_event_alert(CHECKOUT_TIMEOUT, s.at(-0.5), rule="Checkout errors above "
                                                     "1 %", release="checkout-api@2.41.0"),
            {"Sentry-Hook-Resource": "event_alert"})
    s.ack(3, "priya")
    s.roles(3, "priya", commander="priya", comms="admin", scribe="marco")
    s.edit(4, "priya", title="Checkout fails for 14 % of card payments",
           summary="Customers see **\"Something went wrong\"** after pressing *Pay*.\n\n"
                   "- Error rate on `POST /orders` rose from 0.2 % to 14 %\n- Only card payments; PayPal unaffected",
           started_at=s.at(-9))
    s.investigate(5, "priya")
    s.note(8, "marco", "Sentry: every error is `PaymentIntentTimeout` after exactly 2 s. It started two minutes "
                       "after checkout-api v2.41.0 finished rolling out.")
    s.note(14, "priya", "v2.41.0 moved the gateway client to the new HTTP library, whose default timeout is 2 s; "
                        "ours was 10 s. The acquirer's p95 is 2.4 s. Rolling back.")
    s.deploy(19, "priya", "Rolled back checkout-api v2.41.0 -> v2.40.3", "checkout-api")
    s.mitigate(26, "priya")
    s.note(27, "marco", "Error rate on `POST /orders` back to 0.2 %. About 3,100 payments failed; customers could "
                        "retry.")
    _sentry_issue(s, 58, CHECKOUT_TIMEOUT, "resolved", "Priya Natarajan", s.at(-9))
    s.resolve(62, "priya", "Rolled back to v2.40.3; v2.41.1 sets the gateway timeout to 10 s explicitly.")
    s.review(Review(
        "full-blameless", PostmortemStatus.PUBLISHED, "priya",
        sections={
            "summary": "For 35 minutes, 14 % of card payments failed at checkout with a timeout. Release v2.41.0 "
                       "moved the payment gateway client to a new HTTP library whose default timeout (2 s) is "
                       "shorter than the acquirer's slow responses. Rolling back ended the impact.",
            "impact": "- Payments failed: ~3,100 (14 % of card payments at worst)\n"
                      "- Customers affected: ~2,400; most retried successfully\n- Checkout SLO: 35 % of the "
                      "30-day error budget",
            "detection": "The Sentry rule *Checkout errors above 1 %* fired eleven minutes after the release "
                         "finished. The deploy dashboard did not mark the release, so the link was made by reading "
                         "the error.",
            "response": "The commander compared the first error with the deploy log, confirmed the timeout in the "
                        "diff and rolled back. Recovery was visible two minutes after the rollback completed.",
            "went_well": "- Rollback is one command and was done within 20 minutes.\n- Sentry grouped every error "
                         "into one issue with the release attached.",
            "went_poorly": "- The library's default timeout was invisible in code review.\n- The release went to "
                           "100 % of traffic at once.",
            "lucky": "The release went out on a quiet morning; at the evening peak twice as many payments "
                     "would have failed.",
            "lessons": "A dependency upgrade changes behaviour through its defaults. Every outbound call should "
                       "state its timeout where reviewers can see it.",
        },
        factors=(("change", "v2.41.0 replaced the HTTP library; its default 2 s timeout replaced our 10 s."),
                 ("monitoring-gap", "The deploy dashboard did not show the release next to the error rate.")),
        items=(Item("Set the gateway client timeout explicitly and test it", "prevent", "high", 2, "marco", 7,
                    ("done", 4)),
               Item("Alert on PaymentIntentTimeout rate per release", "detect", "medium", 3, "priya", 14,
                    ("done", 12)),
               Item("Canary checkout releases on 5 % of traffic for 15 minutes", "prevent", "high", 8, "priya", 28,
                    ("done", 25)),
               Item("Mark releases on the checkout dashboard", "detect", "low", 1, "marco", 14, ("done", 9))),
        comments=(("jonas", "detection", "Could we add the time the rollout finished? It makes the eleven minutes "
                                         "obvious."),),
    ))
    s.close(3 * 1440, "priya")


@story("database-cpu", "postgres-primary", (61, "14:32"))
def _database_cpu(s: Scene) -> None:
    _am(s, "prometheus-database", 0, [PG_CPU], "firing", -0.5)
    s.ack(2, "aiko")
    s.roles(2, "aiko", commander="aiko", comms="admin", scribe="sofia")
    s.edit(3, "aiko", title="Primary database CPU at 100 %: every write is slow",
           summary="Every service that writes to pg-main is slow; checkout p99 at 4 s, sign-in p99 at 6 s.",
           started_at=s.at(-6))
    s.investigate(4, "aiko")
    s.note(9, "sofia", "`pg_stat_statements`: one query is 81 % of CPU time, a sequential scan over `orders` from "
                       "the new finance report, run every 30 s.")
    s.note(13, "aiko", "Disabled the finance-report schedule; Finance is told the dashboard is paused.")
    s.mitigate(17, "aiko")
    _am(s, "prometheus-database", 21, [PG_CPU], "resolved", -0.5)
    s.note(24, "sofia", "CPU at 35 %. Creating index `orders(created_at, status)` concurrently before the report "
                        "comes back.")
    s.note(75, "sofia", "Index built in 41 minutes. Report re-enabled: its query now takes 120 ms.")
    s.resolve(80, "aiko", "Finance report paused, index on orders(created_at, status) created, report back on.")
    s.review(Review(
        "full-blameless", PostmortemStatus.PUBLISHED, "aiko",
        sections={
            "summary": "A new finance report ran an unindexed query over `orders` every 30 seconds on the primary "
                       "database. CPU reached 100 % and every write slowed down for 23 minutes until the report "
                       "was paused.",
            "impact": "- Checkout p99 at 4 s, sign-in p99 at 6 s for 23 minutes\n- Failed requests: ~900 "
                      "timeouts\n- No data lost",
            "detection": "The CPU alert fired within a minute of saturation. The query itself was found in "
                         "`pg_stat_statements` five minutes later.",
            "response": "Pausing the schedule was the fastest safe lever; the index was built concurrently "
                        "afterwards so the report could come back.",
            "went_well": "- `pg_stat_statements` pointed straight at the query.\n- Finance accepted a paused "
                         "dashboard without escalation.",
            "went_poorly": "- Reporting jobs run on the primary by default.\n- Nobody on Platform knew the report "
                           "had shipped.",
            "lucky": "The report started at 14:26, not during the evening checkout peak.",
            "lessons": "The primary has no headroom for analytical queries; the default must be the replica.",
        },
        factors=(("change", "A new scheduled report queried `orders` without an index every 30 seconds."),
                 ("capacity", "The primary ran at 70 % CPU before the report; there was no headroom."),
                 ("process", "Scheduled queries ship without review by the database owners.")),
        items=(Item("Run reporting queries on the read replica", "prevent", "high", 5, "sofia", 14, ("done", 9)),
               Item("Add the orders(created_at, status) index to the migrations", "repair", "medium", 1, "sofia", 7,
                    ("done", 2)),
               Item("Review every new scheduled query with Platform", "process", "low", 1, "aiko", 21,
                    ("wont_do", 15, "Reporting moves to the data warehouse next quarter; replica routing already "
                                    "covers the risk.")),
               Item("Alert when one query takes over half the primary's CPU", "detect", "medium", 3, "aiko", 21,
                    ("done", 20))),
        comments=(("jonas", "timeline", "Worth adding when the report was deployed: it explains the 30 s rhythm "
                                        "on the CPU graph."),),
        started=0.8, submitted=2.0, published=3.0,
    ))
    s.close(2 * 1440, "aiko")


@story("certificate", "edge-proxy", (75, "08:40"))
def _certificate(s: Scene) -> None:
    _am(s, "prometheus-edge", 0, [API_CERT], "firing", -0.5)
    s.open_from_alert(25, "jonas", Severity.SEV4)
    s.roles(25, "jonas", commander="jonas")
    s.ack(26, "jonas")
    s.edit(27, "jonas", title="TLS certificate for api.example.com not renewing (expires in 20 days)",
           summary="cert-manager has not renewed the api.example.com certificate; it expires in 20 days. No "
                   "customer impact yet.")
    s.investigate(28, "jonas")
    s.note(50, "jonas", "cert-manager has failed to renew for 10 days: the DNS-01 challenge gets 403 from the DNS "
                        "provider. The API token it uses was revoked in last month's credentials clean-up.")
    s.roles(60, "jonas", scribe="aiko")
    s.note(95, "aiko", "Created a new DNS API token, stored it in Vault and synced it to cert-manager. Renewal "
                       "succeeded; the new certificate is valid for 90 days.")
    s.mitigate(100, "jonas")
    _am(s, "prometheus-edge", 110, [API_CERT], "resolved", -0.5)
    s.resolve(115, "jonas", "New DNS API token installed; certificate renewed for 90 days.")
    s.review(Review(
        "lightweight", PostmortemStatus.PUBLISHED, "jonas",
        sections={
            "summary": "The api.example.com certificate stopped renewing because the DNS provider token "
                       "cert-manager uses had been revoked. The 21-day expiry warning caught it; a new token fixed "
                       "it with 20 days to spare.",
            "impact": "- Customers affected: none\n- Renewal failed silently for 10 days",
        },
        factors=(("configuration", "The DNS token cert-manager uses was revoked in a credentials clean-up; nothing "
                                   "recorded that it was in use."),
                 ("monitoring-gap", "Renewal failures were only logged; the first signal was the expiry warning.")),
        items=(Item("Alert when a cert-manager renewal fails", "detect", "high", 2, "jonas", 14),
               Item("Record the DNS token in the secrets inventory with owner and expiry", "process", "medium", 1,
                    "aiko", 90, ("in_progress", 20)),
               Item("Document manual certificate renewal in the edge runbook", "process", "low", 1, "aiko", 14,
                    ("done", 6))),
        started=1.0, submitted=1.5, published=2.5,
    ))
    s.close(4 * 1440, "jonas")


@story("push-backlog", "push-notifications", (47, "19:20"))
def _push_backlog(s: Scene) -> None:
    s.alert("grafana-mobile", 0, grafana_group(PUSH_LATENCY, "firing", s.at(-0.5), None, {"B": 2310.4, "C": 1},
                                               "pUsh1atncy", "push-overview"))
    s.ack(4, "lucas")
    s.roles(4, "lucas", commander="lucas", comms="admin", scribe="emma")
    s.edit(5, "lucas", title="Push notifications delayed by up to 40 minutes",
           summary="Order-shipped and login-code notifications arrive late on iOS; Android is fine.",
           started_at=s.at(-18))
    s.investigate(6, "lucas")
    s.note(12, "emma", "APNs sender pods log `connection pool exhausted` since the certificate reload 18 minutes "
                       "before the alert.")
    s.note(20, "lucas", "Restarting the senders with an APNs pool of 64 (was 8).")
    s.deploy(22, "lucas", "Deployed push-sender config: APNs pool 8 -> 64", "push-notifications")
    s.mitigate(31, "lucas")
    s.note(55, "emma", "Backlog drained; delivery p95 back to 4 s.")
    s.alert("grafana-mobile", 58, grafana_group(PUSH_LATENCY, "resolved", s.at(-0.5), s.at(57.5), {"B": 3.9, "C": 0},
                                                "pUsh1atncy", "push-overview"))
    s.resolve(65, "lucas", "Senders restarted with a larger APNs pool; backlog drained.")
    s.review(Review(
        "pagerduty-style", PostmortemStatus.PUBLISHED, "lucas",
        sections={
            "overview": "SEV2, 49 minutes. After an APNs certificate reload, the push senders ran out of "
                        "connections and iOS notifications queued for up to 40 minutes.",
            "what_happened": "The daily certificate reload recreates APNs connections one at a time. With a pool "
                             "of 8 and the evening peak, the queue grew faster than connections came back.",
            "resolution": "The senders were restarted with a pool of 64. The fix is permanent; the reload itself "
                          "is still disruptive.",
            "impact": "- iOS notifications delayed: ~410,000\n- Login codes delayed: ~3,200 (users could request "
                      "a new one by SMS)",
            "analysis": "Went well: the latency alert fired early and the pool error was obvious.\n\nDid not go "
                        "well: nothing alerted on the reload itself, and the pool size had not been revisited "
                        "since launch.",
            "messaging": "A status page notice for delayed login codes was posted 15 minutes in and closed at "
                         "resolution.",
        },
        factors=(("change", "The certificate reload recreates APNs connections one at a time while traffic keeps "
                            "coming."),
                 ("capacity", "A pool of 8 connections had no headroom at the evening peak.")),
        items=(Item("Reload APNs certificates without dropping the pool", "prevent", "high", 5, "emma", 21,
                    ("done", 14)),
               Item("Alert on push queue wait, not only on send errors", "detect", "medium", 2, "lucas", 14,
                    ("done", 6)),
               Item("Load-test the senders at twice the evening peak", "prevent", "medium", 3, "lucas", 21,
                    ("wont_do", 18, "The senders move to the managed push service next quarter; its limits are "
                                    "the vendor's."))),
        started=1.0, submitted=2.0, published=3.0,
    ))
    s.close(4 * 1440, "lucas")


@story("acquirer", "payment-gateway", (40, "13:48"))
def _acquirer(s: Scene) -> None:
    created = s.at(-1)
    alias, message = "acquirer-eu-west-latency", "Acquirer EU-West: authorisation p99 above 8 s"
    description = "Synthetic card authorisations against the primary acquirer in EU-West take 8-20 s."
    s.alert("opsgenie-payments", 0, opsgenie_body("Create", alias, message, "P2", created, s.at(0),
                                                  description=description))
    s.alert("opsgenie-payments", 3, opsgenie_body("Acknowledge", alias, message, "P2", created, s.at(3),
                                                  user="Marco Rossi"))
    s.roles(4, "marco", commander="marco", comms="admin", scribe="priya")
    s.investigate(5, "marco")
    s.edit(6, "marco", title="Card authorisations timing out with the EU-West acquirer",
           summary="Authorisation latency p99 above **8 s** for the primary acquirer in EU-West; card checkouts in "
                   "Europe fail or hang.\n\n> The acquirer's status page reports degraded performance in EU-West.",
           started_at=s.at(-7))
    s.alert("opsgenie-payments", 9, opsgenie_body("AddNote", alias, message, "P2", created, s.at(9),
                                                  user="Marco Rossi", note="Acquirer status page: degraded "
                                                  "performance in EU-West. Ticket A-55812 opened."))
    s.note(15, "priya", "Retries make it worse: the gateway client retries each timeout twice, so the acquirer "
                        "gets three times the traffic.")
    s.note(21, "marco", "Shifted 70 % of EU card traffic to the secondary acquirer with the routing rule.")
    s.mitigate(23, "marco")
    s.note(70, "marco", "The acquirer confirms the fault is fixed (ticket A-55812); routing back to 100 % primary.")
    s.alert("opsgenie-payments", 84, opsgenie_body("Close", alias, message, "P2", created, s.at(84),
                                                   user="Marco Rossi"))
    s.resolve(88, "marco", "The acquirer fixed its EU-West fault; traffic is back on the primary acquirer.")
    s.review(Review(
        "full-blameless", PostmortemStatus.PUBLISHED, "marco",
        sections={
            "summary": "Our primary acquirer's EU-West region answered card authorisations in 8-20 s for about 80 "
                       "minutes. Our retries tripled its load. Moving 70 % of traffic to the secondary acquirer "
                       "limited the impact after half an hour.",
            "impact": "- Card payments failed: ~1,900 in Europe\n- Checkouts delayed: ~6,000\n- No duplicate "
                      "charges",
            "detection": "The synthetic check in OpsGenie paged within a minute of the first slow responses.",
            "response": "The traffic split was manual: it took 16 minutes to find and apply the routing rule.",
            "went_well": "- The synthetic check paged before customers complained.\n- The secondary acquirer took "
                         "the extra traffic without trouble.",
            "went_poorly": "- Retries on timeouts made a slow acquirer slower.\n- The traffic split has no runbook.",
            "lucky": "The secondary acquirer had spare capacity that afternoon; it is not contracted for it.",
            "lessons": "Fail-over between acquirers works; it needs to be automatic and rehearsed.",
        },
        factors=(("dependency", "The primary acquirer's EU-West region answered in 8-20 s for 80 minutes."),
                 ("configuration", "The gateway client retried timeouts twice, tripling the load on a struggling "
                                   "acquirer.")),
        items=(Item("Fail over to the secondary acquirer automatically when p99 exceeds 3 s", "mitigate", "high", 8,
                    "marco", 45, ("in_progress", 12)),
               Item("Stop retrying authorisation timeouts", "prevent", "high", 2, "priya", 7, ("done", 5)),
               Item("Subscribe #payments-alerts to the acquirer's status feed", "detect", "low", 1, "priya", 42),
               Item("Runbook: split traffic between acquirers by hand", "process", "medium", 1, "marco", 7,
                    ("done", 3))),
        comments=(("priya", "response", "Should we say the routing rule lives in the gateway's admin UI? That is "
                                        "where the 16 minutes went."),),
        started=1.0, submitted=3.0, published=5.0,
    ))
    s.close(6 * 1440, "marco")


@story("android-crash", "mobile-bff", (33, "07:55"))
def _android_crash(s: Scene) -> None:
    s.declare(0, "emma", title="Android app crashes on launch for version 8.3.0", severity=Severity.SEV2,
              summary="Crash-free sessions on Android 8.3.0 dropped to **91 %** (Crashlytics). iOS is not "
                      "affected.", tags=("android", "crash", "customer-facing"))
    s.ack(3, "emma")
    s.roles(3, "emma", commander="emma", comms="admin", scribe="lucas")
    s.investigate(4, "emma")
    s.note(10, "lucas", "The crash is a NullPointerException parsing `banner.image`: since mobile-bff v1.88.0 "
                        "(deployed yesterday evening) the BFF sends `null` for banners without an image.")
    s.note(18, "emma", "Halted the 8.3.0 staged rollout at 20 %.")
    s.deploy(35, "lucas", "Deployed mobile-bff v1.88.2: banners without an image are omitted", "mobile-bff")
    s.mitigate(41, "emma")
    s.note(120, "emma", "Crash-free sessions back to 99.6 %; staged rollout resumed.")
    s.resolve(125, "emma", "mobile-bff v1.88.2 omits empty banners; the app no longer receives null images.")
    s.review(Review(
        "full-blameless", PostmortemStatus.IN_REVIEW, "emma",
        sections={
            "summary": "mobile-bff v1.88.0 started sending `null` for banner images. Android 8.3.0 does not expect "
                       "that and crashed on launch for about 9 % of sessions until the BFF stopped sending them.",
            "impact": "- Android sessions crashed: ~48,000 over 13 hours\n- Users on 8.3.0 only (20 % staged "
                      "rollout)\n- App store rating dipped from 4.6 to 4.4",
            "detection": "Crashlytics' velocity alert e-mailed the Android team the evening before; it was read "
                         "the next morning. The incident was declared then.",
            "response": "Halting the rollout stopped the spread; the BFF fix removed the crash for everyone.",
            "went_well": "- The staged rollout limited the damage to 20 % of users.",
            "went_poorly": "- The crash alert went to e-mail, not to the on-call.\n- Nothing tests the BFF against "
                           "the app versions in the field.",
            "lucky": "Only banners without images were affected, a handful of campaigns.",
            "lessons": "The BFF's responses are a public API for every app version still installed.",
        },
        factors=(("change", "mobile-bff v1.88.0 sent null for optional banner images instead of omitting them."),
                 ("process", "The BFF's contract is not tested against the app versions in the field."),
                 ("monitoring-gap", "Crashlytics alerts go to e-mail, not to the on-call.")),
        items=(Item("Contract tests between mobile-bff and the supported app versions", "prevent", "high", 5,
                    "lucas", 40),
               Item("Make the Android banner parser null-safe", "repair", "medium", 2, "emma", 40,
                    ("in_progress", 4)),
               Item("Page the on-call when crash-free sessions drop below 99 %", "detect", "medium", 3, "emma", 35),
               Item("Version BFF response changes by app version header", "prevent", "medium", 5, "lucas", 60)),
        comments=(("jonas", "detection", "Thirteen hours between the Crashlytics mail and the incident is the real "
                                         "story here; could the impact figures say how many crashes were after "
                                         "the mail?"),
                  ("admin", "impact", "Is the rating dip from this incident alone? A support figure would help.")),
        started=1.0, submitted=6.0,
    ))


@story("wal-volume", "postgres-primary", (26, "03:10"))
def _wal_volume(s: Scene) -> None:
    _am(s, "prometheus-database", 0, [PG_WAL], "firing", -0.5)
    s.ack(6, "jonas")
    s.roles(6, "jonas", commander="jonas")
    s.investigate(8, "jonas")
    s.edit(9, "jonas", title="WAL volume on the primary database filling up",
           summary="The WAL volume on pg-main-1 is 92 % full and grows 1.5 % an hour; when it is full the primary "
                   "stops accepting writes.")
    s.note(14, "jonas", "`pg_replication_slots`: slot `analytics_cdc` is inactive and retains 410 GB of WAL.")
    s.note(22, "jonas", "The analytics CDC consumer was decommissioned three weeks ago; its slot was never dropped.")
    s.roles(25, "jonas", scribe="aiko")
    s.note(31, "aiko", "Data on-call confirms nothing reads the slot. Dropping it.")
    s.mitigate(33, "jonas")
    s.note(40, "aiko", "Disk at 48 % after the checkpoint.")
    _am(s, "prometheus-database", 52, [PG_WAL], "resolved", -0.5)
    s.resolve(55, "jonas", "Dropped the orphaned replication slot analytics_cdc; WAL volume at 48 %.")
    s.review(Review(
        "pagerduty-style", PostmortemStatus.PUBLISHED, "jonas",
        sections={
            "overview": "SEV2 at night, no customer impact. An inactive replication slot retained 410 GB of WAL "
                        "and the volume was five hours from full when the alert fired.",
            "what_happened": "The analytics CDC consumer was decommissioned without dropping its replication slot. "
                             "The primary kept every WAL segment for it for three weeks.",
            "resolution": "The slot was dropped after the Data team confirmed it was unused; the next checkpoint "
                          "freed the space. Permanent.",
            "impact": "- Customers affected: none\n- Time left before writes would stop: about 5 hours",
            "analysis": "Went well: the predictive disk alert gave hours, not minutes.\n\nDid not go well: the "
                        "decommissioning checklist has no database step.",
            "messaging": "None needed: no customer impact.",
        },
        factors=(("process", "Decommissioning the CDC consumer had no step for its replication slot."),
                 ("monitoring-gap", "We alerted on disk usage, not on WAL retained by inactive slots.")),
        items=(Item("Alert on inactive replication slots retaining over 10 GB", "detect", "high", 2, "aiko", 10,
                    ("done", 5)),
               Item("Add 'drop the replication slot' to the decommissioning checklist", "process", "medium", 1,
                    "jonas", 7, ("done", 3)),
               Item("Cap retained WAL with max_slot_wal_keep_size", "prevent", "medium", 1, "sofia", 14,
                    ("done", 10)),
               Item("Move WAL to a larger dedicated volume", "prevent", "low", 5, "sofia", 30,
                    ("wont_do", 11, "max_slot_wal_keep_size caps the risk; the volume has four times the headroom "
                                    "it needs without orphaned slots."))),
        started=0.5, submitted=1.5, published=2.0,
    ))
    s.close(3 * 1440, "jonas")


@story("duplicate-charges", "checkout-api", (19, "16:05"))
def _duplicate_charges(s: Scene) -> None:
    s.alert("sentry-checkout", 0, sentry_event_alert(DUPLICATE_CHARGE, s.at(-0.5), rule="Duplicate charges",
                                                     release="checkout-api@2.47.0"),
            {"Sentry-Hook-Resource": "event_alert"})
    s.ack(5, "priya")
    s.roles(5, "priya", commander="priya", comms="admin", scribe="marco")
    s.investigate(6, "priya")
    s.edit(7, "priya", title="Duplicate orders and charges on retry",
           summary="Some customers are charged twice for one cart. Checkout receives the same order twice without "
                   "an `Idempotency-Key`.", started_at=s.at(-45))
    s.note(12, "marco", "Every duplicate comes from web client v5.12.0, released 45 minutes before the alert: it no "
                        "longer sends the `Idempotency-Key` header when it retries.")
    s.note(20, "priya", "About 230 orders affected so far; Support is refunding them from the list in the channel.")
    s.deploy(34, "priya", "Deployed web client v5.12.1 (sends Idempotency-Key on retries again)", "web-client")
    s.mitigate(40, "priya")
    s.note(95, "marco", "No duplicates for an hour; 231 orders refunded.")
    _sentry_issue(s, 100, DUPLICATE_CHARGE, "resolved", "Marco Rossi", s.at(-45))
    s.resolve(110, "priya", "Web client v5.12.1 sends the Idempotency-Key again; duplicates refunded.")
    s.review(Review(
        "full-blameless", PostmortemStatus.PUBLISHED, "priya",
        sections={
            "summary": "Web client v5.12.0 stopped sending the `Idempotency-Key` header on retries. Checkout accepts "
                       "orders without one, so 231 carts were charged twice over 85 minutes.",
            "impact": "- Customers charged twice: 231, all refunded within a day\n- Support contacts: 140",
            "detection": "The Sentry rule on the reconciliation check fired 45 minutes after the release: the check "
                         "runs every 30 minutes.",
            "response": "The client team shipped a hotfix; Support refunded from a list the scribe kept in the "
                        "channel.",
            "went_well": "- The reconciliation check exists and named the carts.\n- Refunds were done the same day.",
            "went_poorly": "- The server trusts every client to send the key.",
            "lucky": "Retries only happen on slow responses; on a bad network day far more carts would have been "
                     "charged twice.",
            "lessons": "Idempotency is a server guarantee, not a client courtesy.",
        },
        factors=(("change", "Web client v5.12.0 replaced its HTTP library and dropped Idempotency-Key on retries."),
                 ("configuration", "Checkout accepts POST /orders without an Idempotency-Key, so any client bug "
                                   "becomes a double charge.")),
        items=(Item("Contract test: every client sends Idempotency-Key on POST /orders", "prevent", "high", 3,
                    "marco", 14, ("done", 6)),
               Item("Reject POST /orders without an Idempotency-Key", "prevent", "urgent", 3, "priya", 21),
               Item("Alert on duplicate charges per client version", "detect", "medium", 2, "marco", 14,
                    ("done", 8))),
        comments=(("aiko", "summary", "Clear. Could the summary say the fix on our side is still open?"),),
        started=1.0, submitted=2.0, published=3.0,
    ))
    s.close(4 * 1440, "priya")


@story("certificate-again", "edge-proxy", (5, "09:05"))
def _certificate_again(s: Scene) -> None:
    _am(s, "prometheus-edge", 0, [API_CERT], "firing", -0.5)
    s.open_from_alert(12, "aiko", Severity.SEV3)  # the same alert as before: the incident is a repeat of it
    s.roles(12, "aiko", commander="aiko", scribe="jonas")
    s.ack(13, "aiko")
    s.edit(14, "aiko", title="TLS certificate for api.example.com not renewing again",
           summary=f"Same alert as {s.ctx.ref('certificate')}: cert-manager cannot renew api.example.com; 20 days "
                   "left.")
    s.investigate(15, "aiko")
    s.note(30, "aiko", f"Same failure as {s.ctx.ref('certificate')}: the DNS-01 challenge is refused. The token "
                       "installed then was a personal token, and it expired after 60 days.")
    s.note(45, "jonas", f"The action item from {s.ctx.ref('certificate')}, *Alert when a cert-manager renewal "
                        "fails*, is still open and overdue: nothing told us for 10 days.")
    s.note(80, "aiko", "Created a service-account token scoped to the `_acme-challenge` records, without expiry. "
                       "Renewal succeeded.")
    s.mitigate(82, "aiko")
    _am(s, "prometheus-edge", 95, [API_CERT], "resolved", -0.5)
    s.resolve(100, "aiko", "Service-account DNS token installed; certificate renewed.")
    s.review(Review(
        "lightweight", PostmortemStatus.DRAFT, "aiko",
        sections={
            "summary": "A repeat of {certificate}: the certificate stopped renewing because the DNS token installed "
                       "then expired. The follow-up that would have caught it sooner was still open.",
        },
        factors=(("process", "The alert on failed renewals from {certificate} was overdue; the token installed "
                             "then was a personal one with a 60-day expiry."),),
        items=(Item("Replace personal tokens in cert-manager with service accounts", "repair", "high", 2, None,
                    None),),
        started=1.0,
    ))


@story("duplicate-charges-again", "checkout-api", (190,))
def _duplicate_charges_again(s: Scene) -> None:
    # Sentry reopens the resolved issue: the alert path links the new incident to the old one (repeat_of).
    _sentry_issue(s, 0, DUPLICATE_CHARGE, "unresolved", None, s.ctx.stories["duplicate-charges"].started_at)
    s.ack(4, "marco")
    s.roles(4, "marco", commander="marco", comms="admin", scribe="priya")
    s.investigate(5, "marco")
    s.links(5, "marco", chat_url="https://chat.example.com/archives/inc-duplicate-charges",
            runbook_url="https://runbooks.example.com/checkout/duplicate-charges")
    s.edit(6, "marco", title="Duplicate charges again, from iOS 6.2.0",
           summary="Customers on iOS 6.2.0 are charged twice for one cart: the app drops `Idempotency-Key` when "
                   f"it retries. Same failure as {s.ctx.ref('duplicate-charges')}, a different client.")
    s.update(9, "admin", impact="Some customers paying in the iOS app are charged twice for one order.",
             actions="We know which app version causes it and are changing checkout to refuse orders it cannot "
                     "de-duplicate. Every duplicate charge will be refunded.", next_in=30)
    s.note(11, "priya", "Every duplicate is from iOS 6.2.0, the release that went out just before the alert: its new "
                        "networking layer drops `Idempotency-Key` on retry.")
    s.note(16, "marco", f"The server-side fix from {s.ctx.ref('duplicate-charges')} (reject POST /orders without a "
                        "key) is still open. Shipping it now behind the flag `orders.require_idempotency_key`.")
    s.item_status(16, "Reject POST /orders without an Idempotency-Key", "in_progress")
    s.deploy(38, "marco", "Enabled orders.require_idempotency_key in production", "checkout-api")
    s.mitigate(41, "marco")
    s.update(44, "admin", impact="No new double charges since the fix went live. Customers on iOS 6.2.0 may see "
                                 "\"Try again\" at checkout; trying again works.",
             actions="Refunding the duplicate charges; a fixed iOS app is in App Store review.", next_in=180)
    s.note(60, "priya", "No new duplicates since the flag. iOS 6.2.0 gets 428 without a key and asks the user to "
                        "try again; 6.2.1 is in App Store review.")


@story("connections", "postgres-primary", (38,))
def _connections(s: Scene) -> None:
    _am(s, "prometheus-database", 0, [PG_CONNECTIONS, PGBOUNCER_WAITING], "firing", -0.5)
    s.ack(2, "aiko")
    s.roles(2, "aiko", commander="aiko", comms="admin", scribe="sofia")
    s.investigate(3, "aiko")
    s.links(3, "aiko", chat_url="https://chat.example.com/archives/inc-pg-connections",
            call_url="https://meet.example.com/pg-main-war-room",
            runbook_url="https://runbooks.example.com/postgres/connections")
    s.edit(4, "aiko", title="Checkout and sign-in failing: primary database out of connections",
           summary="pg-main-1 refuses new connections; checkout and sign-in fail for about a third of requests.",
           started_at=s.at(-4))
    s.update(6, "admin", impact="Checkout and sign-in fail for about a third of requests.",
             actions="We are investigating errors connecting to our main database.", next_in=20)
    s.note(9, "sofia", "430 of the 498 connections are `idle in transaction`, all from the `orders-export` worker.")
    s.note(15, "aiko", "orders-export v3.2.0, deployed an hour ago, opens a transaction per batch and holds it while "
                       "it uploads to object storage.")
    s.deploy(22, "aiko", "Scaled orders-export to 0 replicas", "postgres-primary")
    s.note(24, "sofia", "Terminating sessions idle in transaction for over 5 minutes.")
    s.update(26, "admin", impact="Checkout and sign-in still fail for about 1 in 10 requests, and it is improving.",
             actions="We stopped the background job that held database connections and are closing the ones it "
                     "left open.", next_in=20)
    s.note(30, "aiko", "Connections down to 310 of 500; checkout errors falling, still 6 %.")


@story("fcm-errors", "push-notifications", (85,))
def _fcm_errors(s: Scene) -> None:
    s.alert("grafana-mobile", 0, grafana_group(FCM_ERRORS, "firing", s.at(-0.5), None, {"B": 0.047, "C": 1},
                                               "fcmErr0rs", "push-overview"))
    s.ack(9, "emma")
    s.roles(9, "emma", commander="emma")
    s.note(20, "emma", "Most errors are `UNREGISTERED` tokens from devices that reinstalled the app; not a delivery "
                       "failure. Checking whether the token clean-up job is keeping up.")
    s.update(22, "emma", impact="None found so far: the failed sends are to devices that reinstalled the app.",
             actions="Checking that the clean-up of old device tokens keeps up.", next_in=90)


# --- loading ------------------------------------------------------------------------------------------------


def _start(ctx: DemoContext, when: tuple) -> datetime:
    if len(when) == 1:  # minutes ago
        return (ctx.now - timedelta(minutes=when[0])).replace(microsecond=0)
    days, clock = when
    hour, minute = map(int, clock.split(":"))
    return (ctx.now - timedelta(days=days)).replace(hour=hour, minute=minute, second=0, microsecond=0)


def load_stories(ctx: DemoContext) -> None:
    """Every story, oldest first, so ids grow with time as in a real installation."""
    for key, (when, play) in sorted(STORIES.items(), key=lambda kv: _start(ctx, kv[1][0])):
        scene = Scene(ctx, key, _start(ctx, when))
        play(scene)
        ctx.session.flush()
    _settle(ctx)
    open_ = [i for i in ctx.incidents if i.is_open]
    repeats = [i for i in ctx.incidents if i.repeat_of_id]
    ctx.lines.append(f"Incidents: {len(ctx.incidents)} over the last {DAYS} days, {len(open_)} still open ("
                     + ", ".join(f"{i.ref} {i.severity} {i.status.value}" for i in open_) + "); repeats: "
                     + ", ".join(f"{i.ref} of {i.repeat_of.ref}" for i in repeats) + ".")
    alerted = set(ctx.session.scalars(sa.select(Alert.incident_id).where(Alert.incident_id.is_not(None))))
    ctx.lines.append(f"Alerts: {ctx.deliveries} deliveries through the webhook path; {len(alerted)} incidents "
                     "opened from or joined by alerts.")
    pms = ctx.session.scalars(sa.select(Postmortem)).all()
    ctx.lines.append("Post-mortems: " + ", ".join(
        f"{sum(pm.status == st for pm in pms)} {st.label}" for st in PostmortemStatus)
        + f"; {len(ctx.items)} action items.")


def _settle(ctx: DemoContext) -> None:
    """Each incident was last touched at its last timeline entry, not when this loader ran."""
    last = dict(ctx.session.execute(sa.select(TimelineEntry.incident_id, sa.func.max(TimelineEntry.occurred_at))
                                    .group_by(TimelineEntry.incident_id)).all())
    for incident in ctx.incidents:
        incident.updated_at = last[incident.id]
    ctx.session.flush()


STEPS: list[Callable[[DemoContext], None]] = [load_catalog, load_users, load_integrations, load_stories]


def load_demo(session: Session, *, now: datetime | None = None) -> str:
    """Load the demo data once (the caller commits); a second run changes nothing and says so."""
    marker = demo_email(USERS[0][0])
    if auth.get_user_by_email(session, marker) is not None:
        return (f"Demo data is already loaded (found {marker}); nothing changed.\n"
                f"Sign in as any {DEMO_DOMAIN} user with the password {DEMO_PASSWORD}.")
    ctx = DemoContext(session=session, now=(now or utcnow()).replace(microsecond=0))
    for step in STEPS:
        step(ctx)
    session.flush()
    return "Demo data loaded.\n" + "\n".join(ctx.lines)

