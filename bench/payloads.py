"""Realistic webhook bodies, written from the documented shapes: OpsGenie and Rollbar (CONTRACTS.md parts A and B),
and Alertmanager, Grafana, Sentry, PagerDuty and Jira Service Management (../shared/contracts/more/).

Deterministic for a given seed. A pool of alerts/items is reused so that, as in real life, most deliveries are
follow-ups (acknowledge, note, occurrence, a group re-sent) of something already seen rather than brand-new alerts.
The OpsGenie/Rollbar mix draws from its own random stream, so adding sources never changes today's bodies.
Signed sources (Sentry, PagerDuty, Grafana) are signed with `secret` as each sender documents.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import uuid
from pathlib import Path

SERVICES = ["checkout-api", "payment-gateway", "search-indexer", "auth", "mobile-bff", "edge-proxy"]
MESSAGES = [
    "High error rate on {svc}", "{svc} p99 latency above 2s", "{svc} pods crash looping",
    "Disk usage above 90% on {svc}-db-1", "{svc} queue depth above 10000", "Synthetic check failing for {svc}",
]
EXCEPTIONS = [
    ("TypeError", "unsupported operand type(s) for +=: 'int' and 'str'"),
    ("KeyError", "'payment_intent'"),
    ("psycopg.OperationalError", "connection to server at \"10.0.3.7\", port 5432 failed: timeout expired"),
    ("requests.exceptions.ReadTimeout", "HTTPSConnectionPool(host='acquirer.example', port=443): Read timed out."),
    ("ValueError", "invalid literal for int() with base 10: ''"),
]
OPSGENIE_ACTIONS = [("Create", 35), ("Acknowledge", 20), ("AddNote", 15), ("Close", 15), ("AddTags", 5),
                    ("UnAcknowledge", 3), ("TakeOwnership", 2), ("Escalate", 5)]
ROLLBAR_EVENTS = [("occurrence", 50), ("new_item", 12), ("exp_repeat_item", 8), ("item_velocity", 5),
                  ("resolved_item", 8), ("reactivated_item", 5), ("reopened_item", 2), ("deploy", 8), ("test", 2)]
LEVELS = {40: "error", 50: "critical"}
# Sources the mixes know; the first two are today's mix (`mixed`), the rest come from `mix`.
SOURCES = ("opsgenie", "rollbar", "jsm", "alertmanager", "grafana", "sentry", "pagerduty")
DEFAULT_SOURCES = ("opsgenie", "rollbar")
SIGNED = ("grafana", "sentry", "pagerduty")  # created with --secret; their bodies carry a signature header
ALERTNAMES = [("NodeDown", "critical", "{instance} has not answered scrapes for 5 minutes."),
              ("HighErrorRate", "critical", "5xx ratio on {instance} above 5% for 10 minutes."),
              ("DiskWillFillIn4Hours", "warning", "Filesystem on {instance} fills up within 4 hours."),
              ("PodCrashLooping", "error", "A pod on {instance} restarted 5 times in 10 minutes."),
              ("HighLatencyP99", "warning", "p99 latency on {instance} above 2 s.")]
NOT_SET = "0001-01-01T00:00:00Z"  # Go's zero time: Alertmanager's endsAt of a firing alert

# A delivery: (source, body) or (source, body, extra request headers).
Body = tuple[str, bytes] | tuple[str, bytes, dict[str, str]]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1e6) % 1_000_000:06d}Z"


def _hmac(secret: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


class Generator:
    """Makes (source, body bytes) pairs; `source` is "opsgenie" or "rollbar"."""

    def __init__(self, seed: int = 1, alerts: int = 200, items: int = 200, samples_dir: Path | None = None,
                 secret: str = "bench-signing-secret"):
        self.seed = seed
        self.secret = secret
        self._more: random.Random | None = None  # the new sources' stream, made on first use
        self.rng = random.Random(seed)
        rng = self.rng
        self.now = int(time.time())
        self.alerts = [{"alertId": _uuid(rng), "tinyId": str(1000 + i), "svc": rng.choice(SERVICES),
                        "message": rng.choice(MESSAGES), "alias": f"{rng.choice(SERVICES)}-{rng.getrandbits(32):x}"}
                       for i in range(alerts)]
        self.items = [self._new_item(i) for i in range(items)]
        self.samples = _load_samples(samples_dir) if samples_dir else []

    # --- OpsGenie (part A) ------------------------------------------------------------------------

    def opsgenie(self) -> dict:
        rng = self.rng
        action = rng.choices([a for a, _ in OPSGENIE_ACTIONS], weights=[w for _, w in OPSGENIE_ACTIONS])[0]
        a = rng.choice(self.alerts)
        integration = {"integrationId": "8a2d8c1e-3f1b-4f5e-9a57-4c1f0c1d2e3f", "integrationName": "Incidents webhook"}
        if action == "Escalate":  # a different shape: only alertId under alert
            return {"action": "Escalate", "alert": {"alertId": a["alertId"]}, "escalationId": _uuid(rng),
                    "escalationName": "Payments_escalation", "escalationTime": 0, "repeatCount": 0,
                    "escalationNotify": {"name": "payments_schedule", "id": _uuid(rng), "type": "schedule",
                                         "entity": ""}} | integration
        created_ms = (self.now - rng.randint(60, 86400)) * 1000
        updated_ns = created_ms * 1_000_000 + rng.randint(0, 999_999)
        alert = {
            "alertId": a["alertId"], "tinyId": a["tinyId"], "alias": a["alias"],
            "message": a["message"].format(svc=a["svc"])[:130], "entity": "", "source": "prometheus",
            "tags": ["production", a["svc"], rng.choice(["eu-west-1", "us-east-1"])],
            "createdAt": created_ms, "updatedAt": updated_ns, "insertedAt": updated_ns,
            "username": "alertmanager@example.com", "userId": "", "userFullName": "Alertmanager",
            "teams": [_uuid(rng)], "recipients": [],
            # OpsGenie is inconsistent here (CONTRACTS A): sometimes the int 3, sometimes "P3".
            "priority": rng.choice(["P1", "P2", "P3", 3, "P4"]),
        }
        if action == "Create":
            alert["description"] = (f"{alert['message']}\n\nRunbook: https://runbooks.example.com/{a['svc']}\n"
                                    + "Labels: " + ", ".join(f"k{i}=v{i}" for i in range(rng.randint(3, 30))))[:1000]
            alert["details"] = {"cluster": "prod-eu", "service": a["svc"], "severity": rng.choice(["page", "ticket"])}
        elif action == "AddNote":
            alert["note"] = rng.choice(["Looking into it", "Rolled back the last deploy", "Related to INC-42"])
        elif action == "AddTags":
            alert["addedTags"] = "customer-facing,sev2"  # a comma-separated string, not a list
        elif action == "TakeOwnership":
            alert["owner"] = "oncall@example.com"
        return {"action": action, "alert": alert, "source": {"name": "web", "type": "API"},
                "integrationType": "Webhook",
                "alertFlowContext": {"requestId": _uuid(rng), "traceId": _uuid(rng), "content": {}}} | integration

    # --- Rollbar (part B) -------------------------------------------------------------------------

    def _new_item(self, i: int) -> dict:
        rng = self.rng
        cls, msg = rng.choice(EXCEPTIONS)
        level = rng.choice([40, 40, 40, 50])
        first = self.now - rng.randint(3600, 30 * 86400)
        return {
            "id": 589_000_000 + i, "counter": 100 + i, "project_id": 224316, "environment": "production",
            "title": f"{cls}: {msg}", "level": level, "status": 1, "framework": 16, "platform": 0,
            "hash": f"{rng.getrandbits(160):040x}", "total_occurrences": rng.randint(1, 5000),
            "unique_occurrences": rng.randint(1, 50), "first_occurrence_id": rng.getrandbits(36),
            "first_occurrence_timestamp": first, "last_occurrence_id": rng.getrandbits(36),
            "last_occurrence_timestamp": first + rng.randint(0, 3600), "last_activated_timestamp": first,
            "activating_occurrence_id": rng.getrandbits(36), "assigned_user_id": None, "last_modified_by": 2147,
            "resolved_in_version": None, "group_status": 1, "group_item_id": None, "level_lock": 0,
            "title_lock": 0, "public_item_id": None, "integrations_data": {},
            "_exc": (cls, msg),
        }

    def occurrence(self, item: dict, occurrence_uuid: str | None = None) -> dict:
        rng = self.rng
        cls, msg = item["_exc"]
        frames = [{"filename": f"/srv/app/{rng.choice(SERVICES)}/{rng.choice(['views', 'models', 'client'])}.py",
                   "lineno": rng.randint(10, 900), "method": rng.choice(["handle", "charge", "dispatch", "get"]),
                   "code": "response = self.full_dispatch_request()"} for _ in range(rng.randint(8, 30))]
        body = rng.choice([
            {"trace": {"exception": {"class": cls, "message": msg}, "frames": frames}},
            {"trace_chain": [{"exception": {"class": cls, "message": msg}, "frames": frames[:5]},
                             {"exception": {"class": "RuntimeError", "message": "wrapped"}, "frames": frames[5:]}]},
            {"message": {"body": f"{cls}: {msg}"}},
        ])
        return {
            "uuid": occurrence_uuid or _uuid(rng), "timestamp": self.now - rng.randint(0, 600),
            "level": LEVELS[item["level"]], "environment": "production", "language": "python", "framework": "flask",
            "context": "checkout.views.pay", "body": body,
            "server": {"host": f"web-{rng.randint(1, 40)}", "pid": rng.randint(100, 60000), "root": "/srv/app"},
            "request": {"url": "https://shop.example.com/checkout/pay", "method": "POST",
                        "headers": {"User-Agent": "Mozilla/5.0", "Accept": "application/json"},
                        "GET": {}, "POST": {"cart": str(rng.getrandbits(32))}, "user_ip": "203.0.113.7"},
            "person": rng.choice([None, {"id": str(rng.randint(1, 10**6)), "username": "shopper", "email": None}]),
            "notifier": {"name": "pyrollbar", "version": "0.16.3"}, "metadata": {"customer_timestamp": 0},
        }

    def _item_out(self, item: dict, **changes) -> dict:
        return {k: v for k, v in item.items() if not k.startswith("_")} | changes

    def rollbar(self) -> dict:
        rng = self.rng
        event = rng.choices([e for e, _ in ROLLBAR_EVENTS], weights=[w for _, w in ROLLBAR_EVENTS])[0]
        item = rng.choice(self.items)
        url = f"https://rollbar.com/acme/shop/items/{item['counter']}/"
        if event == "occurrence":
            occ = self.occurrence(item)
            return {"event_name": "occurrence", "data": {"item": self._item_out(item), "occurrence": occ,
                                                         "url": url + f"occurrences/{rng.getrandbits(36)}/"}}
        if event == "deploy":
            t = self.now - rng.randint(0, 3600)
            return {"event_name": "deploy", "data": {"deploy": {
                "id": rng.getrandbits(24), "project_id": 224316, "environment": "production",
                "revision": f"{rng.getrandbits(160):040x}", "comment": "Release", "local_username": "ci",
                "user_id": None, "start_time": t, "finish_time": t + rng.randint(30, 600)}}}
        if event == "test":
            return {"event_name": "test", "data": {
                "message": "This is a test payload from Rollbar. If you got this, it works!"}}
        data = {"item": self._item_out(item, status=2 if event == "resolved_item" else 1), "url": url}
        if event in ("new_item", "reactivated_item", "reopened_item"):
            data["item"]["last_occurrence"] = self.occurrence(item)
        if event == "exp_repeat_item":
            data["occurrences"] = rng.choice([10, 100, 1000])
        if event == "item_velocity":
            data["trigger"] = {"threshold": 10, "window_size": 300, "window_size_description": "5 minutes"}
        return {"event_name": event, "data": data}

    def storm_occurrence(self, occurrence_uuid: str) -> dict:
        """One Rollbar item occurring over and over: same item id, a distinct occurrence uuid each time."""
        item = self.items[0]
        return {"event_name": "occurrence", "data": {"item": self._item_out(item), "occurrence":
                                                     self.occurrence(item, occurrence_uuid)}}


    # --- the sources teams move to from Opsgenie (../shared/contracts/more/) -----------------------------------

    @property
    def more(self) -> random.Random:
        """The new sources' own random stream: today's OpsGenie/Rollbar bodies stay what they were."""
        if self._more is None:
            self._more = random.Random(self.seed * 7919 + 13)
            rng = self._more
            # Alertmanager/Grafana groups: one alert rule over up to 10 instances, fingerprinted by label set.
            self.am_groups = []
            for g in range(40):
                name, severity, text = rng.choice(ALERTNAMES)
                svc = rng.choice(SERVICES)
                self.am_groups.append({"n": g, "alertname": name, "severity": severity, "text": text, "svc": svc,
                                       "instances": [f"{svc}-{g}-{i}:9100" for i in range(10)],
                                       "firing": {}, "resolving": []})
            self.grafana_groups = [dict(g, firing={}, resolving=[]) for g in self.am_groups[:20]]
            self.sentry_issues = [{"id": str(4_100_000_000 + i), "short": f"SHOP-{300 + i}",
                                   "exc": rng.choice(EXCEPTIONS), "status": "new"} for i in range(150)]
            self.pd_incidents = [{"id": f"Q{rng.getrandbits(40):010X}", "number": 1000 + i, "status": "new",
                                  "title": rng.choice(MESSAGES).format(svc=rng.choice(SERVICES))} for i in range(150)]
            self._jsm = Generator(self.seed * 31 + 5, alerts=200, items=0)
        return self._more

    @staticmethod
    def am_alert(group: dict, instance: str, status: str, starts: str, ends: str | None = None) -> dict:
        """One alert of a version 4 group; the fingerprint is Alertmanager's hash of the label set (stable)."""
        from incidents.alert.sources.alertmanager import label_fingerprint

        labels = {"alertname": group["alertname"], "instance": instance, "job": "node", "service": group["svc"],
                  "severity": group["severity"], "environment": "production", "cluster": "prod-eu-1"}
        return {"status": status, "labels": labels,
                "annotations": {"summary": f"{group['alertname']} on {instance}",
                                "description": group["text"].format(instance=instance),
                                "runbook_url": f"https://runbooks.example.com/{group['alertname']}"},
                "startsAt": starts, "endsAt": ends or NOT_SET,
                "generatorURL": f"http://prometheus.prod:9090/graph?g0.expr={group['alertname']}&g0.tab=1",
                "fingerprint": label_fingerprint(labels)}

    def am_envelope(self, group: dict, alerts: list[dict], version: str = "4") -> dict:
        firing = [a for a in alerts if a["status"] == "firing"]
        common = {"alertname": group["alertname"], "job": "node", "service": group["svc"],
                  "severity": group["severity"], "environment": "production", "cluster": "prod-eu-1"}
        return {"version": version, "groupKey": f'{{}}/{{}}:{{alertname="{group["alertname"]}", '
                                                f'service="{group["svc"]}"}}',
                "truncatedAlerts": 0, "status": "firing" if firing else "resolved", "receiver": "incidents",
                "groupLabels": {"alertname": group["alertname"], "service": group["svc"]}, "commonLabels": common,
                "commonAnnotations": {}, "externalURL": "http://alertmanager.prod:9093", "alerts": alerts}

    def _group_step(self, group: dict) -> list[dict]:
        """The group's next notification: fire 1..10 alerts, re-send them (same startsAt: the same occurrence),
        grow, resolve some (a resolved alert is sent once more, as the HA peer may), or all."""
        rng = self.more
        now = time.time()
        firing, resolving = group["firing"], group["resolving"]
        sent_resolved = [self.am_alert(group, i, "resolved", s, _rfc3339(now)) for i, s in resolving]
        group["resolving"] = []
        free = [i for i in group["instances"] if i not in firing]
        roll = rng.random()
        if not firing or (roll < 0.2 and free):  # fire (or grow by) 1..len(free) alerts, each with its startsAt
            for i in rng.sample(free, rng.randint(1, len(free))):
                firing[i] = _rfc3339(now - rng.randint(0, 600))
        elif roll < 0.45 and firing:  # some resolve
            for i in rng.sample(sorted(firing), rng.randint(1, len(firing))):
                group["resolving"].append((i, firing.pop(i)))
        # else: the repeat interval re-sends the group as it is
        alerts = [self.am_alert(group, i, "firing", s) for i, s in sorted(firing.items())]
        alerts += [self.am_alert(group, i, "resolved", s, _rfc3339(now)) for i, s in group["resolving"]]
        return alerts + sent_resolved[: max(0, 10 - len(alerts))]

    def alertmanager(self) -> dict:
        """A version 4 group notification of 1..10 alerts, from one of 40 groups at its next step."""
        group = self.more.choice(self.am_groups)
        return self.am_envelope(group, self._group_step(group))

    def grafana(self) -> dict:
        """Grafana unified alerting (version "1"): the Alertmanager envelope plus values, dashboard, panel and
        silence URLs, orgId, title, state and message."""
        rng = self.more
        group = rng.choice(self.grafana_groups)
        alerts = self._group_step(group)
        base = "https://grafana.example.com"
        for a in alerts[:5]:
            value = round(rng.uniform(0, 100), 2)
            instance = a["labels"]["instance"]
            a.update({"values": {"B": value, "C": 1},
                      "valueString": f"[ var='B' labels={{instance={instance}}} value={value} ]",
                      "dashboardURL": f"{base}/d/node-{group['n']}",
                      "panelURL": f"{base}/d/node-{group['n']}?viewPanel=2",
                      "silenceURL": f"{base}/alerting/silence/new?matcher=alertname%3D{group['alertname']}",
                      "generatorURL": f"{base}/alerting/grafana/rule-{group['n']}/view"})
        body = self.am_envelope(group, alerts[:5], version="1")
        firing = sum(a["status"] == "firing" for a in body["alerts"])
        body.update({"orgId": 1, "externalURL": base + "/", "state": "alerting" if firing else "ok",
                     "title": f"[{'FIRING' if firing else 'RESOLVED'}:{len(body['alerts'])}] {group['alertname']}",
                     "message": "\n".join(a["annotations"]["summary"] for a in body["alerts"])})
        return body

    def sentry(self) -> tuple[dict, str]:
        """A Sentry integration-platform body and its resource (Sentry-Hook-Resource): issue created, resolved,
        assigned, ignored or unresolved; or an issue alert's event_alert triggered."""
        rng = self.more
        issue = rng.choice(self.sentry_issues)
        cls, msg = issue["exc"]
        seen = _rfc3339(time.time() - rng.randint(0, 3600))
        data = {"id": issue["id"], "shortId": issue["short"], "title": f"{cls}: {msg}",
                "culprit": "checkout.views in pay",
                "level": rng.choice(["error", "error", "fatal", "warning"]), "status": "unresolved",
                "platform": "python", "type": "error", "count": str(rng.randint(1, 5000)),
                "userCount": rng.randint(0, 90),
                "firstSeen": seen, "lastSeen": seen, "logger": None, "annotations": [], "assignedTo": None,
                "metadata": {"type": cls, "value": msg, "filename": "checkout/views.py", "function": "pay"},
                "project": {"id": "5216640", "slug": "shop", "name": "Shop", "platform": "python"},
                "permalink": f"https://acme.sentry.io/issues/{issue['id']}/", "statusDetails": {}}
        actor = {"type": "application", "id": "sentry", "name": "Sentry"}
        if issue["status"] == "new" or rng.random() < 0.25:
            issue["status"] = "unresolved"
            if rng.random() < 0.4:  # an issue alert rule fired on a new event of it
                event_id = f"{rng.getrandbits(128):032x}"
                event = {"event_id": event_id, "issue_id": issue["id"], "title": data["title"], "level": data["level"],
                         "culprit": data["culprit"], "platform": "python", "datetime": seen,
                         "web_url": f"https://acme.sentry.io/issues/{issue['id']}/events/{event_id}/",
                         "issue_url": f"https://sentry.io/api/0/issues/{issue['id']}/",
                         "metadata": data["metadata"],
                         "tags": [["environment", "production"], ["level", data["level"]]],
                         "exception": {"values": [{"type": cls, "value": msg}]}}
                return ({"action": "triggered", "data": {"event": event, "triggered_rule": "Page on new errors"},
                         "installation": {"uuid": "65027794-169a-4042-80d0-808ece377141"}, "actor": actor},
                        "event_alert")
            return {"action": "created", "data": {"issue": data}, "installation": {"uuid": "65027794"},
                    "actor": actor}, "issue"
        action = rng.choice(["resolved", "assigned", "ignored", "unresolved"])
        data["status"] = {"resolved": "resolved", "ignored": "ignored"}.get(action, "unresolved")
        if action == "assigned":
            data["assignedTo"] = {"type": "user", "id": "2217", "name": "Ada", "email": "ada@example.com"}
        user = {"type": "user", "id": "2217", "name": "Ada"}
        return {"action": action, "data": {"issue": data}, "installation": {"uuid": "65027794"}, "actor": user}, "issue"

    def pagerduty(self) -> dict:
        """A V3 webhook event (incident.triggered, .acknowledged, .resolved, ...) with a distinct event id."""
        rng = self.more
        inc = rng.choice(self.pd_incidents)
        if inc["status"] in ("new", "resolved"):
            event = "incident.triggered" if inc["status"] == "new" or rng.random() < 0.5 else "incident.reopened"
        else:
            event = rng.choices(["incident.acknowledged", "incident.unacknowledged", "incident.resolved",
                                 "incident.reassigned", "incident.escalated", "incident.priority_updated",
                                 "incident.annotated"], weights=[30, 5, 30, 10, 10, 5, 10])[0]
        inc["status"] = {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved"}.get(
            event, "triggered" if event in ("incident.triggered", "incident.reopened", "incident.unacknowledged")
            else inc["status"])
        site = "https://acme.pagerduty.com"
        ref = {"html_url": f"{site}/users/PJ0LVEB", "id": "PJ0LVEB", "summary": "Ada", "type": "user_reference"}
        data = {"id": inc["id"], "type": "incident", "self": f"https://api.pagerduty.com/incidents/{inc['id']}",
                "html_url": f"{site}/incidents/{inc['id']}", "number": inc["number"], "status": inc["status"],
                "incident_key": f"{inc['id'].lower()}-key", "title": inc["title"],
                "created_at": _rfc3339(time.time() - 3600), "urgency": rng.choice(["high", "low"]),
                "service": {"html_url": f"{site}/services/PA2P440", "id": "PA2P440", "summary": "checkout-api",
                            "type": "service_reference"},
                "assignees": [ref], "teams": [], "priority": None, "conference_bridge": None, "resolve_reason": None,
                "escalation_policy": {"id": "PY82TC6", "summary": "Default", "type": "escalation_policy_reference"}}
        if event == "incident.annotated":
            data = {"incident": {"id": inc["id"], "type": "incident_reference", "html_url": data["html_url"]},
                    "id": f"N{rng.getrandbits(40):X}", "type": "incident_note", "content": "Rolled back the deploy"}
        return {"event": {"id": f"01{rng.getrandbits(120):030X}"[:26], "event_type": event, "resource_type": "incident",
                          "occurred_at": _rfc3339(time.time() - rng.randint(0, 60)), "agent": ref, "client": None,
                          "data": data}}

    def jsm(self) -> dict:
        """Jira Service Management Operations: the OpsGenie outgoing-webhook body, from its own alert pool."""
        self.more  # noqa: B018 - makes the pools
        return self._jsm.opsgenie()

    def delivery(self, source: str) -> Body:
        """One delivery of `source` as (source, body, headers), signed when the source signs."""
        headers: dict[str, str] = {}
        if source == "sentry":
            payload, resource = self.sentry()
            headers["Sentry-Hook-Resource"] = resource
            headers["Sentry-Hook-Timestamp"] = str(int(time.time()))
        elif source in ("opsgenie", "rollbar"):
            payload = self.opsgenie() if source == "opsgenie" else self.rollbar()
        else:
            payload = getattr(self, source)()
        raw = json.dumps(payload).encode()
        if source == "sentry":
            headers["Sentry-Hook-Signature"] = _hmac(self.secret, raw)
        elif source == "pagerduty":
            headers["X-PagerDuty-Signature"] = f"v1={_hmac(self.secret, raw)}"
        elif source == "grafana":
            headers["X-Grafana-Alerting-Signature"] = _hmac(self.secret, raw)
        return (source, raw, headers) if headers else (source, raw)

    def alertmanager_groups(self, notifications: int, group_size: int) -> tuple[list[Body], int]:
        """The same Alertmanager alerts as deliveries of `group_size` alerts each; returns (bodies, alerts).

        Every group of 10 instances fires all 10, is re-sent twice (same startsAt), resolves all 10 and fires
        again with a new startsAt; each of those notifications is cut into bodies of `group_size` alerts. The
        alert events (and so the work per alert) are the same for every group size: only their packing differs.
        The 40 groups take their steps in turn (step 1 of every group, then step 2 ...), so concurrent senders
        (fewer than 40 notifications in flight) never reorder one group's notifications, as Alertmanager, which
        sends a group's next notification a group_interval later, does not. A fresh Generator with the same seed
        gives the same alerts."""
        rng = self.more
        out, alerts = [], 0
        groups = self.am_groups
        for n in range(notifications):
            group = groups[n % len(groups)]
            step = n // len(groups) % 5
            now = time.time()
            if step in (0, 4):  # fire (again, with a new startsAt)
                group["firing"] = {i: _rfc3339(now - rng.randint(0, 600) - step) for i in group["instances"]}
            if step == 3:
                alerts_ = [self.am_alert(group, i, "resolved", s, _rfc3339(now)) for i, s in group["firing"].items()]
            else:
                alerts_ = [self.am_alert(group, i, "firing", s) for i, s in group["firing"].items()]
            for k in range(0, len(alerts_), group_size):
                chunk = alerts_[k:k + group_size]
                out.append(("alertmanager", json.dumps(self.am_envelope(group, chunk)).encode()))
                alerts += len(chunk)
        return out, alerts

    # --- mixes ------------------------------------------------------------------------------------

    def mixed(self, n: int, opsgenie_share: float = 0.5) -> list[tuple[str, bytes]]:
        """n deliveries, OpsGenie and Rollbar interleaved; captured samples mixed in (5 %) when given."""
        out = []
        for _ in range(n):
            if self.samples and self.rng.random() < 0.05:
                out.append(self.rng.choice(self.samples))
                continue
            source = "opsgenie" if self.rng.random() < opsgenie_share else "rollbar"
            body = self.opsgenie() if source == "opsgenie" else self.rollbar()
            out.append((source, json.dumps(body).encode()))
        return out

    def mix(self, n: int, sources: tuple[str, ...] = DEFAULT_SOURCES) -> list[Body]:
        """n deliveries spread evenly over `sources`; today's mix (`mixed`, the same bodies) for the default."""
        if tuple(sources) == DEFAULT_SOURCES:
            return self.mixed(n)
        unknown = set(sources) - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown sources: {', '.join(sorted(unknown))} (known: {', '.join(SOURCES)})")
        picks = self.more
        return [self.delivery(picks.choice(sources)) for _ in range(n)]

    def storm(self, n: int) -> list[tuple[str, bytes]]:
        return [("rollbar", json.dumps(self.storm_occurrence(_uuid(self.rng))).encode()) for _ in range(n)]


def _load_samples(directory: Path) -> list[tuple[str, bytes]]:
    """Captured vendor samples, read at run time when present (never copied into this repository)."""
    out = []
    for source in ("opsgenie", "rollbar"):
        for path in sorted((directory / source).rglob("*.json")) if (directory / source).is_dir() else []:
            try:
                json.loads(path.read_text())
            except ValueError:
                continue
            out.append((source, path.read_bytes()))
    return out
