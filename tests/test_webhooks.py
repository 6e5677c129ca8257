"""incidents/webhooks.py: the plumbing alert and tracker share imports neither of them, nor any other domain."""

from __future__ import annotations

import subprocess
import sys

import pytest

from incidents.webhooks import lowercase_headers

DOMAINS = ("action_item", "alert", "auth", "catalog", "incident", "notify", "postmortem", "report", "tracker")


def test_the_shared_webhook_plumbing_imports_no_domain():
    code = ("import sys\nimport incidents.webhooks\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[:2] in [['incidents', d] for d in {DOMAINS!r}]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_alert_and_tracker_deliver_through_the_one_webhooks_blueprint(app):
    rules = {r.rule: r.endpoint for r in app.url_map.iter_rules() if r.rule.startswith("/webhooks/")}
    assert rules == {"/webhooks/<source>": "webhooks.receive", "/webhooks/shortcut": "webhooks.shortcut_webhook"}


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json", "X-Opsgenie-Signature": "abc", "User-Agent": "Go-http-client/1.1"},
    {"X-Grafana-Alerting-Signature": "t=1,v1=ff", "Authorization": "Bearer whk_x", "X-Forwarded-For": "10.0.0.1"},
    {},  # a bare POST: werkzeug's test environ still carries Host and Content-Length
])
def test_lowercase_headers_are_the_headers_werkzeug_lists(headers):
    """What parsers and signature checks read: every header werkzeug's EnvironHeaders lists, by lower-case name,
    with the same values (Content-Type and Content-Length from their own environ keys, an empty one left out)."""
    from werkzeug.datastructures import EnvironHeaders
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/webhooks/opsgenie", method="POST", headers=headers, data=b"{}").get_environ()
    environ["CONTENT_TYPE"] = environ.get("CONTENT_TYPE", "")  # present but empty: not a header
    expected = {name.lower(): value for name, value in EnvironHeaders(environ).items()}
    assert lowercase_headers(environ) == expected
    assert {name.lower() for name in headers} <= set(expected)
