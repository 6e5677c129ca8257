"""Models and schemas depend one way (tracker -> action items -> post-mortem -> incident -> catalog/auth): each
domain's models and schemas import only the layers below, never under TYPE_CHECKING, and models configure on their
own. An upper domain adds its part to a lower one from above: a backref, or `openapi.add_field` for JSON."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "incidents"
MODELS = sorted(p.parent.name for p in PACKAGE.glob("*/models.py"))
SCHEMAS = sorted(p.parent.name for p in PACKAGE.glob("*/schemas.py"))

# A domain's models may import the models of a domain of a lower rank only.
RANK = {"auth": 0, "catalog": 0, "incident": 1, "alert": 2, "postmortem": 2, "action_item": 3, "tracker": 4,
        "notify": 2, "report": 2, "slack": 2, "search": 2, "insights": 5, "audit": 0}


def _imported_domains(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("incidents."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("incidents.")}
    return found & set(RANK)


def test_every_domain_with_models_or_schemas_has_a_rank():
    assert set(MODELS) | set(SCHEMAS) <= set(RANK)


@pytest.mark.parametrize("path", [f"{d}/models.py" for d in MODELS] + [f"{d}/schemas.py" for d in SCHEMAS])
def test_models_and_schemas_import_only_lower_domains(path):
    domain = path.split("/")[0]
    path = PACKAGE / path
    upward = {d for d in _imported_domains(path) - {domain} if RANK[d] >= RANK[domain]}
    assert not upward, f"{path.relative_to(PACKAGE)} imports {sorted(upward)}"
    assert "TYPE_CHECKING" not in path.read_text()


@pytest.mark.parametrize("domain", MODELS)
def test_models_configure_on_their_own(domain):
    """In a fresh interpreter, one domain's models (and what they import) are a complete, configurable mapping."""
    code = f"import incidents.{domain}.models, sqlalchemy.orm as o; o.configure_mappers()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_backrefs_give_lower_models_their_upper_collections():
    """Postmortem.action_items and ActionItem.export keep their loading and cascades, declared from above."""
    import incidents.models  # noqa: F401  (configures the mappers)
    from incidents.action_item.models import ActionItem
    from incidents.postmortem.models import Postmortem

    items = Postmortem.action_items.property
    assert items.cascade.delete_orphan and items.mapper.class_ is ActionItem
    export = ActionItem.export.property
    assert not export.uselist and export.lazy == "selectin" and export.passive_deletes
    assert export.cascade.delete_orphan


def test_the_tracker_adds_export_to_every_action_items_json(app):
    """action_item.schemas knows nothing of Shortcut; the tracker's init_app gives each item its `export`."""
    from incidents.action_item.schemas import ActionItemSchema
    from incidents.postmortem.schemas import PostmortemSchema
    from incidents.tracker.schemas import NOT_EXPORTED

    assert "export" in ActionItemSchema().fields and "action_items" in PostmortemSchema().fields
    assert "Shortcut" not in (PACKAGE / "action_item" / "schemas.py").read_text()
    assert NOT_EXPORTED["status"] == "not_exported"
