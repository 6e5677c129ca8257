"""Action item forms on the post-mortem's action-items section."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from incidents.action_item import services
from incidents.auth.models import Role
from incidents.auth.permissions import actor, require
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.postmortem import services as pm_services
from incidents.postmortem.models import SectionKind
from incidents.postmortem.views import form_errors, render_section

bp = Blueprint("action_item", __name__)

_FORM_FIELDS = ("title", "description", "owner_id", "due_date", "type", "priority", "estimate", "status",
                "wont_do_reason")


def _fields() -> dict:
    return {k: request.form.get(k, "") for k in _FORM_FIELDS if k in request.form}


def _back(pm, errors: dict | None = None, status: int = 200):
    key = next((s.key for s in pm.sections if s.kind == SectionKind.ACTION_ITEMS), pm.sections[0].key)
    if errors:
        return render_section(pm, key, errors, status)
    if pm.is_published:
        return redirect(url_for("postmortem.view", postmortem_id=pm.id) + "#action-items")
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=key) + "#action-items")


@bp.post("/postmortems/<int:postmortem_id>/action-items")
@require(Role.RESPONDER)
def create(postmortem_id: int):
    pm = pm_services.get_postmortem(db.session, postmortem_id)
    try:
        item = services.create_action_item(db.session, pm, by=actor(), **_fields())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _back(pm_services.get_postmortem(db.session, postmortem_id), form_errors(e), e.status)
    flash(f"Action item \u201c{item.title}\u201d added.", "success")
    return _back(pm)


@bp.post("/action-items/<int:item_id>")
@require(Role.RESPONDER)
def update(item_id: int):
    item = services.get_action_item(db.session, item_id)
    pm_id = item.postmortem_id
    try:
        services.update_action_item(db.session, item, **_fields())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        pm = pm_services.get_postmortem(db.session, pm_id)
        if pm.is_published:
            flash(e.message, "error")
            return _back(pm)
        return _back(pm, form_errors(e), e.status)
    flash(f"Action item \u201c{item.title}\u201d saved.", "success")
    return _back(item.postmortem)


@bp.post("/action-items/<int:item_id>/delete")
@require(Role.RESPONDER)
def delete(item_id: int):
    item = services.get_action_item(db.session, item_id)
    pm = item.postmortem
    try:
        services.delete_action_item(db.session, item)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
        return _back(pm_services.get_postmortem(db.session, pm.id))
    flash("Action item removed.", "success")
    return _back(pm)
