"""incidents/webhooks.py: the plumbing alert and tracker share imports neither of them, nor any other domain."""

from __future__ import annotations

import subprocess
import sys

DOMAINS = ("action_item", "alert", "auth", "catalog", "incident", "notify", "postmortem", "report", "tracker")


def test_the_shared_webhook_plumbing_imports_no_domain():
    code = ("import sys\nimport incidents.webhooks\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[:2] in [['incidents', d] for d in {DOMAINS!r}]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_alert_and_tracker_deliver_through_the_one_webhooks_blueprint(app):
    rules = {r.rule: r.endpoint for r in app.url_map.iter_rules() if r.rule.startswith("/webhooks/")}
    assert rules == {"/webhooks/<source>": "webhooks.receive", "/webhooks/shortcut": "webhooks.shortcut_webhook"}
