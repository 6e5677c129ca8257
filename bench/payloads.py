"""Realistic OpsGenie and Rollbar webhook bodies, written from the documented shapes (CONTRACTS.md parts A and B).

Deterministic for a given seed. A pool of alerts/items is reused so that, as in real life, most deliveries are
follow-ups (acknowledge, note, occurrence) of something already seen rather than brand-new alerts.
"""

from __future__ import annotations

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


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Generator:
    """Makes (source, body bytes) pairs; `source` is "opsgenie" or "rollbar"."""

    def __init__(self, seed: int = 1, alerts: int = 200, items: int = 200, samples_dir: Path | None = None):
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
