"""Action item pages: the cross-post-mortem list, and the forms on a post-mortem's action-items section."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for

from incidents.action_item import services
from incidents.action_item.models import ItemStatus
from incidents.action_item.schemas import ActionItemFormSchema
from incidents.auth.models import Role, User
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.errors import DomainError
from incidents.extensions import db
from incidents.forms import form_errors, load_form
from incidents.postmortem import services as pm_services
from incidents.postmortem.models import SectionKind
from incidents.postmortem.views import render_section

bp = Blueprint("action_item", __name__)


def _fields() -> dict:
    """The inputs the form posted, validated by the API's action-item fields."""
    return load_form(ActionItemFormSchema(), request.form, complete=False)


def _back(pm, errors: dict | None = None, status: int = 200):
    key = next((s.key for s in pm.sections if s.kind == SectionKind.ACTION_ITEMS), pm.sections[0].key)
    if errors:
        return render_section(pm, key, errors, status)
    if pm.is_published:
        return redirect(url_for("postmortem.view", postmortem_id=pm.id) + "#action-items")
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=key) + "#action-items")


@bp.get("/action-items")
@require(Role.VIEWER)
def index():
    """Every post-mortem's follow-up work in one list, open items by default."""
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    status = request.args.getlist("status") or ([] if "status" in request.args else ["open", "in_progress"])
    f = services.ActionItemFilter(status=[s for s in status if s] or None, owner=request.args.get("owner") or None,
                                  team=request.args.get("team") or None)
    page_no = int_arg("page", 1)
    try:
        page, errors, code = services.list_action_items(db.session, f, max(page_no, 1), 50), {}, 200
    except DomainError as e:
        page, errors, code = None, form_errors(e, headline=True), e.status
    users = db.session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.name))
    return render_template("postmortem/action_items.html", page=page, errors=errors, args=args, status=status,
                           statuses=list(ItemStatus), users=users, teams=catalog.list_teams(db.session)), code


@bp.post("/postmortems/<int:postmortem_id>/action-items")
@require(Role.RESPONDER)
def create(postmortem_id: int):
    pm = pm_services.get_postmortem(db.session, postmortem_id)
    try:
        item = services.create_action_item(db.session, pm, by=actor(), **_fields())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return _back(pm_services.get_postmortem(db.session, postmortem_id), form_errors(e, headline=True), e.status)
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
        return _back(pm, form_errors(e, headline=True), e.status)
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
