"""Post-mortem templates and the contributing-factor taxonomy: what admins configure and post-mortems copy.

The built-in rows come from migration 0010, never from a read."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import events
from incidents.bounds import get_by_key
from incidents.catalog import services as catalog
from incidents.errors import Conflict, Invalid, NotFound
from incidents.postmortem.models import FactorCategory, PostmortemTemplate, SectionKind
from incidents.singleline import has_nul, reject_nul

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def list_templates(session: Session, *, include_inactive: bool = False) -> list[PostmortemTemplate]:
    stmt = sa.select(PostmortemTemplate).order_by(PostmortemTemplate.builtin.desc(), PostmortemTemplate.name)
    if not include_inactive:
        stmt = stmt.where(PostmortemTemplate.active.is_(True))
    return list(session.scalars(stmt))


def _by_key(session: Session, model, key: str | int, what: str):
    """A seeded row by id or slug (templates and factor categories are addressed both ways)."""
    reject_nul(**{what.split()[-1]: key})
    row = get_by_key(session, model, key, model.slug)
    if row is None:
        raise NotFound(f"No {what} {key!r}.")
    return row


def _new_slug(session: Session, model, name: str, slug: str | None) -> str:
    """A valid, unused slug for a new template or category, derived from the name unless given."""
    reject_nul(name=name, slug=slug)
    if not (name or "").strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    slug = (slug or catalog.slugify(name)).strip()
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,63}$", slug):
        raise Invalid("Slug must be lowercase letters, digits and dashes.", {"slug": ["Invalid slug."]})
    if session.scalar(sa.select(model.id).where(model.slug == slug)):
        raise Conflict(f"The slug {slug!r} is taken.", {"slug": ["Already in use."]})
    return slug


def get_template(session: Session, key: str | int) -> PostmortemTemplate:
    return _by_key(session, PostmortemTemplate, key, "post-mortem template")


def clean_sections(raw) -> list[dict]:
    """Validate a template's section list; errors name the section by its position (1-based)."""
    if not isinstance(raw, list) or not raw:
        raise Invalid("A template needs at least one section.", {"sections": ["At least one section."]})
    out, errors, seen = [], {}, set()
    for i, s in enumerate(raw, 1):
        if not isinstance(s, dict):
            errors[f"sections.{i}"] = ["Not an object."]
            continue
        key = str(s.get("key") or "").strip().lower()
        title = str(s.get("title") or "").strip()
        kind = str(s.get("kind") or "markdown")
        problems = []
        if has_nul(title + str(s.get("guidance") or "")):
            problems.append("Title and guidance cannot contain NUL characters.")
        if not _KEY.match(key):
            problems.append("Key: lowercase letters, digits, '-' or '_'.")
        elif key in seen:
            problems.append(f"Key {key!r} is used twice.")
        if not title or len(title) > 200:
            problems.append("Title: 1 to 200 characters.")
        if kind not in {k.value for k in SectionKind}:
            problems.append(f"Kind: one of {', '.join(k.value for k in SectionKind)}.")
        if problems:
            errors[f"sections.{i}"] = problems
            continue
        seen.add(key)
        out.append({"key": key, "title": title, "kind": kind, "required": bool(s.get("required")),
                    "guidance": str(s.get("guidance") or "").strip()})
    if errors:
        raise Invalid("Some sections are invalid: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()),
                      errors)
    return out


def create_template(session: Session, *, name: str, sections, slug: str | None = None,
                    description: str = "") -> PostmortemTemplate:
    reject_nul(description=description)
    slug = _new_slug(session, PostmortemTemplate, name, slug)
    tpl = PostmortemTemplate(slug=slug, name=name.strip()[:120], description=description or "",
                             sections=clean_sections(sections))
    session.add(tpl)
    session.flush()
    events.emit(session, "postmortem.template_changed", template_id=tpl.id, changes=events.diff({}, _template(tpl)))
    return tpl


def _template(tpl: PostmortemTemplate) -> dict:
    return {"slug": tpl.slug, "name": tpl.name, "description": tpl.description, "sections": tpl.sections,
            "version": tpl.version, "active": tpl.active}


def update_template(session: Session, tpl: PostmortemTemplate, *, name: str | None = None,
                    description: str | None = None, sections=None, active: bool | None = None) -> PostmortemTemplate:
    """Edit a template; a changed section list is a new version, post-mortems already started keep theirs."""
    reject_nul(name=name, description=description)
    before = _template(tpl)
    if name is not None:
        if not name.strip():
            raise Invalid("A name is required.", {"name": ["Required."]})
        tpl.name = name.strip()[:120]
    if description is not None:
        tpl.description = description
    if sections is not None:
        cleaned = clean_sections(sections)
        if cleaned != tpl.sections:
            tpl.sections = cleaned
            tpl.version += 1
    if active is not None:
        tpl.active = active
    session.flush()
    if changes := events.diff(before, _template(tpl)):
        events.emit(session, "postmortem.template_changed", template_id=tpl.id, changes=changes)
    return tpl


def list_categories(session: Session, *, include_inactive: bool = False) -> list[FactorCategory]:
    stmt = sa.select(FactorCategory).order_by(FactorCategory.position, FactorCategory.name)
    if not include_inactive:
        stmt = stmt.where(FactorCategory.active.is_(True))
    return list(session.scalars(stmt))


def get_category(session: Session, key: str | int) -> FactorCategory:
    return _by_key(session, FactorCategory, key, "contributing-factor category")


def create_category(session: Session, *, name: str, slug: str | None = None, description: str = "") -> FactorCategory:
    reject_nul(description=description)
    slug = _new_slug(session, FactorCategory, name, slug)
    position = (session.scalar(sa.select(sa.func.max(FactorCategory.position))) or 0) + 1
    cat = FactorCategory(slug=slug, name=name.strip()[:120], description=description or "", position=position)
    session.add(cat)
    session.flush()
    events.emit(session, "postmortem.category_changed", category_id=cat.id, changes=events.diff({}, _category(cat)))
    return cat


def _category(cat: FactorCategory) -> dict:
    return {"slug": cat.slug, "name": cat.name, "description": cat.description, "active": cat.active}


def update_category(session: Session, cat: FactorCategory, *, name: str, description: str,
                    active: bool) -> FactorCategory:
    reject_nul(name=name, description=description)
    if not (name or "").strip():
        raise Invalid("A name is required.", {"name": ["Required."]})
    before = _category(cat)
    cat.name, cat.description, cat.active = name.strip()[:120], description or "", active
    session.flush()
    if changes := events.diff(before, _category(cat)):
        events.emit(session, "postmortem.category_changed", category_id=cat.id, changes=changes)
    return cat
