"""The built-in templates and factor categories: written by migration 0010 (their one source), held here to what the
app accepts and uses, and never written by a read."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from incidents.errors import NotFound
from incidents.postmortem import services
from incidents.postmortem.models import FactorCategory, PostmortemTemplate, SectionKind
from tests.factories import statement_kinds
from tests.seeds import POSTMORTEM_DEFAULTS, revision

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # what templates._new_slug accepts


@pytest.fixture(scope="module")
def defaults():
    return revision(POSTMORTEM_DEFAULTS)


def test_builtin_templates_are_templates_the_app_accepts(defaults):
    for row in defaults.template_rows():
        assert _SLUG.match(row["slug"]) and 0 < len(row["name"]) <= 120, row["slug"]
        # What an admin could have saved: clean_sections changes nothing.
        assert services.clean_sections(row["sections"]) == row["sections"], row["slug"]
        kinds = [SectionKind(s["kind"]) for s in row["sections"]]
        # The quality gates look for one timeline, and factors and action items have their own editors.
        for kind in (SectionKind.TIMELINE, SectionKind.FACTORS, SectionKind.ACTION_ITEMS):
            assert kinds.count(kind) == 1, (row["slug"], kind)
        assert all(s["guidance"] for s in row["sections"])


def test_default_categories_are_categories_the_app_accepts(defaults):
    rows = defaults.category_rows()
    assert [r["position"] for r in rows] == list(range(len(rows)))
    for row in rows:
        assert _SLUG.match(row["slug"]) and 0 < len(row["name"]) <= 120 and row["description"], row["slug"]


def test_demo_uses_only_seeded_templates_and_categories(session, defaults):
    from incidents.demo import load_demo
    from incidents.postmortem.models import ContributingFactor, FactorCategory, Postmortem

    slugs = {r["slug"] for r in defaults.template_rows()}
    assert {"lightweight", "full-blameless", "pagerduty-style"} <= slugs
    load_demo(session)
    session.commit()
    used = set(session.scalars(sa.select(FactorCategory.slug).join(ContributingFactor).distinct()))
    assert used and used <= {r["slug"] for r in defaults.category_rows()}
    templates = set(session.scalars(sa.select(PostmortemTemplate.slug).join(
        Postmortem, Postmortem.template_id == PostmortemTemplate.id).distinct()))
    assert templates and templates <= slugs


def test_the_migrated_database_holds_exactly_the_migration_rows(session, defaults):
    found = [{"slug": t.slug, "name": t.name, "description": t.description, "sections": t.sections,
              "version": t.version, "builtin": t.builtin, "active": t.active}
             for t in session.scalars(sa.select(PostmortemTemplate).order_by(PostmortemTemplate.id))]
    assert found == defaults.template_rows()
    found = [{"slug": c.slug, "name": c.name, "description": c.description, "position": c.position,
              "active": c.active}
             for c in session.scalars(sa.select(FactorCategory).order_by(FactorCategory.id))]
    assert found == defaults.category_rows()


def test_reading_templates_and_categories_never_writes_even_on_empty_tables(session):
    session.execute(sa.delete(PostmortemTemplate))
    session.execute(sa.delete(FactorCategory))
    session.commit()
    with statement_kinds() as statements:
        assert services.list_templates(session, include_inactive=True) == []
        assert services.list_categories(session, include_inactive=True) == []
        with pytest.raises(NotFound):
            services.get_template(session, "lightweight")
        with pytest.raises(NotFound):
            services.get_category(session, "change")
    assert statements and set(statements) == {"SELECT"}
