"""redact_keys: the walk every stored webhook body goes through before it is kept."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from incidents import redaction
from incidents.redaction import REDACTED, redact_keys

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "contracts" / "payloads"
SECRET = re.compile(r"access_?token|api_?key|secret|password|passwd|authorization|cookie|token", re.I)


def reference(node) -> bool:
    """The rule, written the plain recursive way: a string or number under a secret-looking key is blanked."""
    found = False
    if isinstance(node, dict):
        for key, value in node.items():
            if (isinstance(key, str) and SECRET.search(key) and isinstance(value, str | int | float)
                    and value not in ("", REDACTED)):
                node[key] = REDACTED
                found = True
            else:
                found = reference(value) or found
    elif isinstance(node, list):
        for value in node:
            found = reference(value) or found
    return found


def test_secrets_are_blanked_at_any_depth_and_everything_else_is_kept():
    payload = {"data": {"items": [{"api_key": "k1", "name": "a"}, [{"Cookie": "c=1"}]], "count": 3},
               "Password": 1234, "tokens": {"access_token": "t"}, "empty_secret": "", "note": "token in a value"}
    assert redact_keys(payload)
    assert payload == {"data": {"items": [{"api_key": REDACTED, "name": "a"}, [{"Cookie": REDACTED}]], "count": 3},
                       "Password": REDACTED, "tokens": {"access_token": REDACTED}, "empty_secret": "",
                       "note": "token in a value"}


def test_nothing_to_blank_is_reported_as_such():
    payload = {"alert": {"message": "disk full", "tags": ["db"], "priority": "P1"}, "secret": REDACTED}
    before = copy.deepcopy(payload)
    assert not redact_keys(payload)
    assert payload == before


def test_a_key_is_judged_the_same_on_every_delivery_even_past_the_remembered_ones(monkeypatch):
    monkeypatch.setattr(redaction, "_SECRET_KEYS", {})
    monkeypatch.setattr(redaction, "_KNOWN_KEYS", 2)
    keys = [f"field{n}" for n in range(5)] + ["x_api_key", "db_password"]
    for _ in range(3):  # the first walk judges and remembers, the later ones read what it remembered
        payload = {key: "value" for key in keys}
        assert redact_keys(payload)
        assert [key for key, value in payload.items() if value == REDACTED] == ["x_api_key", "db_password"]
    assert len(redaction._SECRET_KEYS) == 2


def test_deep_nesting_does_not_overflow():
    payload: dict = {"token": "t"}
    for _ in range(5000):
        payload = {"next": payload}
    assert redact_keys(payload)


def _samples():
    if not SAMPLES.is_dir():
        return []
    return sorted(SAMPLES.rglob("*.json"))


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/contracts/payloads is not present")
@pytest.mark.parametrize("path", _samples(), ids=lambda p: str(p.relative_to(SAMPLES)))
def test_every_real_sample_is_redacted_as_the_plain_rule_says(path):
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        pytest.skip("not a JSON document")
    ours, theirs = copy.deepcopy(doc), copy.deepcopy(doc)
    assert redact_keys(ours) == reference(theirs)
    assert ours == theirs
