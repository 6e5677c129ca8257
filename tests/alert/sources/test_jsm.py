"""JSM Operations: Opsgenie's body read by opsgenie's parser, under JSM's name, linked to the configured site."""

from __future__ import annotations

import pytest

from incidents.alert.services.rules import validate_rules
from incidents.alert.sources import jsm, opsgenie
from incidents.alert.sources.base import REDACTED, Kind, ParsedEvent, ParseError
from tests.alert.conftest import OPSGENIE_SAMPLES, sample, sample_names

SITE = {"site_url": "https://acme.atlassian.net/"}

# sample -> (kind, fingerprint, title, severity, alertId); JSM sends Opsgenie's body, so Opsgenie's captures.
EXPECTED = {
    "create": (Kind.TRIGGER, "alert-alias", "another alert", "P3", "ec03dad6-62c8-4c94-b38b-d88f398e900f"),
    "acknowledge": (Kind.ACKNOWLEDGE, "aliastest", None, None, "052652ac-5d1c-464a-812a-7dd18bbfba8c"),
    "unacknowledge": (Kind.UNACKNOWLEDGE, "aliastest", None, None, "052652ac-5d1c-464a-812a-7dd18bbfba8c"),
    "addnote": (Kind.NOTE, "aliastest", None, None, "052652ac-5d1c-464a-812a-7dd18bbfba8c"),
    "close": (Kind.CLOSE, "aliastest", None, None, "052652ac-5d1c-464a-812a-7dd18bbfba8c"),
    "addtags": (Kind.INFO, "aliastest", None, None, "052652ac-5d1c-464a-812a-7dd18bbfba8c"),
    "takeownership": (Kind.INFO, "8a745a79-3ed3-4044-8427-98e067c0623c", None, None,
                      "8a745a79-3ed3-4044-8427-98e067c0623c"),
    "escalate": (Kind.ESCALATE, None, "", None, "7ba97e3a-d328-4b5e-8f9a-39e945a3869a"),
}


def one(payload: dict, options: dict | None = None) -> ParsedEvent:
    events = jsm.parse(payload, {}, SITE if options is None else options)
    assert isinstance(events, list) and len(events) == 1
    return events[0]


def test_every_shared_sample_has_an_expectation():
    assert set(sample_names(OPSGENIE_SAMPLES)) <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_samples(name):
    kind, fp, title, severity, alert_id = EXPECTED[name]
    payload = sample(OPSGENIE_SAMPLES, name)
    event = one(payload)
    assert (event.source, event.kind, event.fingerprint, event.external_id) == ("jsm", kind, fp, alert_id)
    assert event.link == f"https://acme.atlassian.net/jira/ops/alerts/{alert_id}"
    if title is not None:
        assert event.title == title
    if severity is not None:
        assert event.severity == severity
    # Everything but the names and the link is Opsgenie's reading of the same body.
    og = opsgenie.parse(sample(OPSGENIE_SAMPLES, name))
    og = og[0] if isinstance(og, list) else og
    assert (event.event, event.kind, event.fingerprint, event.bump, event.occurred_at, event.actor, event.note,
            event.dedup_key, event.severity) == (og.event, og.kind, og.fingerprint, og.bump, og.occurred_at,
                                                 og.actor, og.note, og.dedup_key, og.severity)
    assert "OpsGenie" not in event.reason and "OpsGenie" not in event.title


def test_sample_details():
    assert one(sample(OPSGENIE_SAMPLES, "create")).bump is True
    assert one(sample(OPSGENIE_SAMPLES, "addnote")).note == "note to test alert"
    assert one(sample(OPSGENIE_SAMPLES, "addtags")).reason.startswith("JSM: tags added: tag1,tag2,tag3")
    escalate = one(sample(OPSGENIE_SAMPLES, "escalate"))
    assert "test_esc" in escalate.reason and escalate.reason.startswith("JSM: escalated")


@pytest.mark.parametrize("options", [{}, {"site_url": ""}, {"site_url": "javascript:alert(1)"},
                                     {"site_url": None}, {"site_url": 42}])
def test_no_site_no_link(options):
    assert one(sample(OPSGENIE_SAMPLES, "create"), options).link is None


def test_unsafe_alert_id_gets_no_link():
    payload = sample(OPSGENIE_SAMPLES, "create")
    payload["alert"]["alertId"] = "../../admin"
    assert one(payload).link is None


def test_title_fallback_says_jsm():
    payload = sample(OPSGENIE_SAMPLES, "create")
    payload["alert"]["message"] = ""
    assert one(payload).title == "JSM alert #2"


def test_the_senders_own_text_is_not_renamed():
    payload = sample(OPSGENIE_SAMPLES, "create")
    payload["alert"]["message"] = "OpsGenie alert bridge down"
    assert one(payload).title == "OpsGenie alert bridge down"
    tags = sample(OPSGENIE_SAMPLES, "addtags")
    tags["alert"]["addedTags"] = "OpsGenie"
    assert one(tags).reason.startswith("JSM: tags added: OpsGenie")


def test_unknown_actions_are_ignored():
    event = one({"action": "CustomAction", "alert": {"alertId": "a1"}})
    assert (event.source, event.kind, event.event) == ("jsm", Kind.IGNORE, "CustomAction")
    assert event.reason.startswith("Unknown JSM action") and event.link is None


@pytest.mark.parametrize("payload", [{}, {"action": ""}, {"action": "Create", "alert": "x"},
                                     {"action": "Create", "alert": {}}, {"action": "Escalate", "alert": {}}])
def test_wrong_shapes_raise(payload):
    with pytest.raises(ParseError):
        jsm.parse(payload, {}, SITE)


def test_opsgenie_with_the_new_signature_is_called_with_headers_and_options(monkeypatch):
    seen = {}

    def new_parse(payload, headers, options):
        seen.update(headers=headers, options=options)
        return [ParsedEvent("opsgenie", "Create", Kind.TRIGGER, fingerprint="a", external_id="id1"),
                ParsedEvent("opsgenie", "Close", Kind.CLOSE, fingerprint="b", external_id="id2")]

    monkeypatch.setattr(opsgenie, "parse", new_parse)
    events = jsm.parse({"action": "Create"}, {"x-test": "1"}, SITE)
    assert seen == {"headers": {"x-test": "1"}, "options": SITE}
    assert [(e.source, e.fingerprint, e.link) for e in events] == [
        ("jsm", "a", "https://acme.atlassian.net/jira/ops/alerts/id1"),
        ("jsm", "b", "https://acme.atlassian.net/jira/ops/alerts/id2")]


def test_a_type_error_inside_the_new_parser_is_not_mistaken_for_the_old_signature(monkeypatch):
    def broken(payload, headers, options):
        raise TypeError("bug inside the parser")

    monkeypatch.setattr(opsgenie, "parse", broken)
    with pytest.raises(TypeError, match="bug inside"):
        jsm.parse({"action": "Create"}, {}, SITE)


def test_redact_blanks_echoed_headers_and_secret_keys():
    payload = sample(OPSGENIE_SAMPLES, "escalate")
    payload["headers"] = {"X-Incidents-Token": "tok-123", "Authorization": "Bearer tok-123"}
    assert jsm.redact(payload) is True
    assert payload["headers"] == {"X-Incidents-Token": REDACTED, "Authorization": REDACTED}
    assert jsm.redact(sample(OPSGENIE_SAMPLES, "create")) is False


def test_module_contract():
    assert jsm.LABEL == "Jira Service Management" and "X-Incidents-Token" in jsm.SETUP
    assert validate_rules(jsm.DEFAULT_RULES) == jsm.DEFAULT_RULES
    assert not hasattr(jsm, "verify")  # JSM does not sign its webhooks
