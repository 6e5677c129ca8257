"""The rows the data migrations write, read from the revisions themselves: their one source.

A test that empties the tables puts them back with `reseed`, so every test starts from a freshly migrated
database; tests that hold the app to these rows read them here."""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

import sqlalchemy as sa

from incidents import resource_path

WORD_LIST = "0008_blameless_word_list"
POSTMORTEM_DEFAULTS = "0010_postmortem_defaults"


@cache
def revision(name: str) -> ModuleType:
    """The module of migrations/<name>.py (loaded by path: the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"migration_{name}", resource_path("migrations") / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reseed(connection: sa.Connection) -> None:
    """Write what the data migrations write, into tables a test has emptied."""
    for name in (WORD_LIST, POSTMORTEM_DEFAULTS):
        revision(name).seed(connection)
