"""Settings: every default lives in config/default.py, and code reads config["KEY"] without repeating it."""

from __future__ import annotations

import re
from pathlib import Path

from incidents.settings import defaults, with_defaults

PACKAGE = Path(__file__).resolve().parent.parent / "incidents"
_READ = re.compile(r'\b(?:config|cfg)\["([A-Z][A-Z0-9_]+)"\](?!\s*=[^=])')  # reads, not assignments
_REPEATED_DEFAULT = re.compile(r'\b(?:config|cfg)\.get\("[A-Z][A-Z0-9_]+", ')


def _sources() -> dict[str, str]:
    return {str(path.relative_to(PACKAGE)): path.read_text() for path in PACKAGE.rglob("*.py")}


def test_no_code_repeats_a_default():
    assert [name for name, text in _sources().items() if _REPEATED_DEFAULT.search(text)] == []


def test_every_setting_the_code_reads_exists_in_an_app(app):
    read = {key for text in _sources().values() for key in _READ.findall(text)} - {"KEY"}  # KEY: in a docstring
    assert "INTEGRATION_CACHE_TTL" in read
    assert sorted(read - set(app.config)) == []


def test_defaults_outside_an_app_are_config_default_py():
    assert defaults()["INTEGRATION_CACHE_TTL"] == 10.0 and defaults()["SHORTCUT_MAX_RATE_LIMIT_WAIT"] == 10
    config = with_defaults({"SHORTCUT_TIMEOUT": 0.3})
    assert config["SHORTCUT_TIMEOUT"] == 0.3 and config["SHORTCUT_CIRCUIT_THRESHOLD"] == 5
