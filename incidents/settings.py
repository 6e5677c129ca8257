"""The settings of config/default.py for code that reads them outside an app built by create_app.

config/default.py is the one place a setting's default lives: create_app loads it first, so code inside an app
reads `config["KEY"]`. A function that also takes a plain mapping (a client built from a few keys, a schema used
without an app) reads it through `with_defaults`, which falls back to that same file."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from flask import Config


@cache
def defaults() -> Mapping[str, Any]:
    """Every setting of config/default.py, read once (what create_app loads before the environment)."""
    from incidents import resource_path

    folder = resource_path("config")
    config = Config(str(folder))
    config.from_pyfile(str(folder / "default.py"))
    return MappingProxyType(dict(config))


def with_defaults(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """`config`, with config/default.py's value for every key it lacks."""
    return ChainMap(dict(config), dict(defaults()))
