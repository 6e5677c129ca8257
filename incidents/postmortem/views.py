"""Post-mortem pages: list and search, the guided section editor with merge and history, review and publish,
the read view and Markdown download, admin pages for templates, taxonomy and the blameless word list."""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup

from incidents.auth.models import Role, User
from incidents.auth.permissions import actor, require
from incidents.bounds import int_arg
from incidents.catalog import services as catalog
from incidents.database import read_only, reads_only
from incidents.errors import DomainError, Invalid
from incidents.extensions import db
from incidents.forms import form_errors, load_form
from incidents.incident import services as incident_services
from incidents.postmortem import blameless, presentation, services
from incidents.postmortem.models import PostmortemStatus, SectionKind
from incidents.postmortem.schemas import (
    CommentFormSchema,
    ContributingFactorFormSchema,
    ImpactTimesFormSchema,
    SectionFormSchema,
    blameless_findings,
    coach_limits,
    filter_from_args,
)

bp = Blueprint("postmortem", __name__)


@bp.app_context_processor
def _panel_helper():
    """`postmortem_panel(incident)` for templates/postmortem/_incident_panel.html, wherever it is included."""
    return {"postmortem_panel": lambda incident: presentation.panel_context(db.session, incident)}


def _users() -> list[User]:
    return list(db.session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.name)))


def _page_number() -> int:
    return int_arg("page", 1)


# --- list, start, read ---------------------------------------------------------------------------

@bp.get("/postmortems")
@require(Role.VIEWER)
def index():
    try:
        f = filter_from_args(request.args)
        page = services.list_postmortems(db.session, f, _page_number(), 25)
        errors, status = {}, 200
    except DomainError as e:
        f, page, errors, status = None, None, form_errors(e, headline=True), e.status
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("postmortem/list.html", page=page, errors=errors, args=args,
                           awaiting=services.incidents_awaiting_postmortem(db.session),
                           statuses=list(PostmortemStatus), teams=catalog.list_teams(db.session),
                           services=catalog.list_services(db.session)), status


@bp.get("/incidents/<ref>/postmortem")
@require(Role.VIEWER)
def for_incident(ref: str):
    incident = incident_services.get_incident(db.session, ref)
    return render_template("postmortem/start.html", incident=incident)


@bp.post("/incidents/<ref>/postmortem")
@require(Role.RESPONDER)
def start(ref: str):
    incident = incident_services.get_incident(db.session, ref)
    try:
        pm = services.start_postmortem(db.session, incident, request.form.get("template", ""), by=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
        return render_template("postmortem/start.html", incident=incident), e.status
    flash(f"Post-mortem started from the {pm.template_name} template. Fill the sections in any order.", "success")
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=pm.sections[0].key))


@bp.get("/postmortems/<int:postmortem_id>")
@require(Role.VIEWER)
def view(postmortem_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    return _read_view(pm)


def _read_view(pm, missing: list | None = None, status: int = 200):
    return render_template("postmortem/view.html", pm=pm, missing=missing,
                           durations=presentation.impact_durations(pm.incident), SectionKind=SectionKind,
                           gates=services.quality_gates(pm) if missing is None and not pm.is_published else None,
                           gate_href=lambda m: _gate_href(pm, m),
                           coach=_coach(pm) if pm.status == PostmortemStatus.IN_REVIEW else None,
                           ), status


_ITEM_FIELDS = {"action_item_owner": "owner_id", "action_item_due_date": "due_date", "action_item_type": "type"}
_BLOCKS = {SectionKind.ACTION_ITEMS: "action-items", SectionKind.PARTICIPANTS: "participants",
           SectionKind.FACTORS: "factors"}


def _gate_href(pm, missing: dict) -> str:
    """Where an unmet quality gate is fixed: the field it names in the section editor (ids of section.html and
    its includes); the read view's section for those who cannot edit."""
    key = services.gate_section(pm, missing)
    section = pm.section(key) if key else None
    if not actor().can(Role.RESPONDER) or pm.is_published:
        return url_for("postmortem.view", postmortem_id=pm.id) + (f"#section-{key}" if section else "")
    if section is None:  # no section fixes it (a template without a timeline): the editor's top
        return url_for("postmortem.section", postmortem_id=pm.id, key=pm.sections[0].key) + "#top"
    if missing["gate"] in _ITEM_FIELDS:
        anchor = f"item-{missing['target']}-{_ITEM_FIELDS[missing['gate']]}"
    else:
        anchor = _BLOCKS.get(section.kind, "body")
    return url_for("postmortem.section", postmortem_id=pm.id, key=key) + "#" + anchor


def _coach(pm) -> list:
    """The blameless coach's findings per section, for reviewers and the publish warning."""
    max_length, max_findings = coach_limits()
    return blameless.check_sections(db.session, pm.sections, max_length=max_length, max_findings=max_findings)


@bp.get("/postmortems/<int:postmortem_id>.md")
@require(Role.VIEWER)
def download(postmortem_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    name = f"postmortem-{pm.incident.ref.lower()}.md"
    return Response(presentation.to_markdown(pm), mimetype="text/markdown; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- the guided editor -----------------------------------------------------------------------------

def render_section(pm, key: str, errors: dict | None = None, status: int = 200, body: str | None = None,
                   impact_form=None):
    """The section editor; `body` and `impact_form` give back what was typed when a save was refused."""
    section = services.get_section(pm, key)
    keys = [s.key for s in pm.sections]
    i = keys.index(key)
    return render_template(
        "postmortem/section.html", pm=pm, section=section, errors=errors or {}, body=body,
        step=i + 1, steps=len(keys), prev_key=keys[i - 1] if i else None,
        next_key=keys[i + 1] if i + 1 < len(keys) else None, SectionKind=SectionKind,
        filled=services.section_ticks(pm),
        comments=[c for c in pm.comments if c.section_key == key], users=_users(),
        categories=services.list_categories(db.session), durations=presentation.impact_durations(pm.incident),
        impact_form=impact_form if impact_form is not None else _impact_times(pm.incident),
    ), status


def _impact_times(incident) -> dict:
    """The impact section's datetime-local inputs: the incident's impact start and detection, in UTC."""
    return {name: _minute(getattr(incident, name)).strftime("%Y-%m-%dT%H:%M")
            for name in ("started_at", "detected_at")}


def _minute(at):
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _editable_or_redirect(pm):
    if pm.is_published:
        flash("This post-mortem is published and read-only; an admin can reopen it.", "info")
        return redirect(url_for("postmortem.view", postmortem_id=pm.id))
    return None


@bp.get("/postmortems/<int:postmortem_id>/sections/<key>")
@require(Role.RESPONDER)
def section(postmortem_id: int, key: str):
    pm = services.get_postmortem(db.session, postmortem_id)
    return _editable_or_redirect(pm) or render_section(pm, key)


@bp.post("/postmortems/<int:postmortem_id>/sections/<key>")
@require(Role.RESPONDER)
def save_section(postmortem_id: int, key: str):
    pm = services.get_postmortem(db.session, postmortem_id)
    body = request.form.get("body", "")
    raw_version = request.form.get("version", "")
    if not raw_version.isdigit():
        return render_section(pm, key, {"_": ["The form lost its version number; reload the page."]}, 400, body)
    try:
        data = load_form(SectionFormSchema(), request.form)
        services.save_section(db.session, pm, key, data["body"], data["version"], by=actor())
        db.session.commit()
    except services.SectionConflict as e:
        db.session.rollback()
        pm = services.get_postmortem(db.session, postmortem_id)
        return render_template("postmortem/merge.html", pm=pm, conflict=e,
                               diff=presentation.diff_lines(e.current["body"], e.yours["body"], "theirs", "yours")), 409
    except DomainError as e:
        db.session.rollback()
        return render_section(services.get_postmortem(db.session, postmortem_id), key, form_errors(e, headline=True),
                               e.status, body)
    with read_only():  # saved and committed: the coach's advice must not hold the write lock meanwhile
        findings = blameless.check_text(db.session, body[:coach_limits()[0]])
    flash("Saved." + (f" The blameless coach has {len(findings)} suggestion(s) for this text; it is saved "
                      "either way." if findings else ""), "success")
    target = request.form.get("next") if request.form.get("go") == "next" else key
    if not target or pm.section(target) is None:
        target = key
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=target))


@bp.post("/postmortems/<int:postmortem_id>/impact-times")
@require(Role.RESPONDER)
def impact_times(postmortem_id: int):
    """Correct the incident's impact start and detection from the impact section: the incident's own update,
    so its timeline says who moved what, and every duration follows."""
    pm = services.get_postmortem(db.session, postmortem_id)
    if pm.is_published:
        return _editable_or_redirect(pm)
    key = _section_key(pm, SectionKind.IMPACT)
    incident = pm.incident
    try:
        data = load_form(ImpactTimesFormSchema(), request.form)
        # The inputs show whole minutes: an untouched one is no change (nor a timeline line).
        moved = {name: at for name, at in data.items() if at != _minute(getattr(incident, name))}
        if moved:
            incident_services.update_incident(db.session, incident, by=actor(), **moved)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        return render_section(services.get_postmortem(db.session, postmortem_id), key,
                              form_errors(e, headline=True), e.status, impact_form=request.form)
    flash("Impact times saved; the durations follow." if moved else "The impact times are unchanged.", "success")
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=key) + "#impact-times")


@bp.get("/postmortems/<int:postmortem_id>/sections/<key>/history")
@require(Role.VIEWER)
def history(postmortem_id: int, key: str):
    pm = services.get_postmortem(db.session, postmortem_id)
    return render_template("postmortem/history.html", pm=pm, section=services.get_section(pm, key),
                           history=presentation.section_history(pm, key))


def _after_form(pm, key: str, action, message: str):
    """Run one editing action from a section page: redirect back on success, the page with errors on failure."""
    try:
        action()
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        pm = services.get_postmortem(db.session, pm.id)
        if pm.section(key) is None:
            key = pm.sections[0].key
        return render_section(pm, key, form_errors(e, headline=True), e.status)
    flash(message, "success")
    return redirect(url_for("postmortem.section", postmortem_id=pm.id, key=key) + "#" + request.form.get(
        "anchor", "top"))


def _section_key(pm, kind: SectionKind) -> str:
    key = request.form.get("section") or ""
    if pm.section(key) is None:
        key = next((s.key for s in pm.sections if s.kind == kind), pm.sections[0].key)
    return key


@bp.post("/postmortems/<int:postmortem_id>/comments")
@require(Role.RESPONDER)
def comment(postmortem_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    key = request.form.get("section", "")
    if pm.section(key) is None:
        raise Invalid("Comment on one of this post-mortem's sections.", {"section": ["Unknown section."]})
    if pm.is_published:
        return _editable_or_redirect(pm)
    return _after_form(pm, key, lambda: services.add_comment(
        db.session, pm, key, load_form(CommentFormSchema(), request.form)["body"], by=actor()), "Comment added.")


@bp.post("/postmortems/<int:postmortem_id>/factors")
@require(Role.RESPONDER)
def add_factor(postmortem_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    def add():
        data = load_form(ContributingFactorFormSchema(), request.form)
        services.add_factor(db.session, pm, data["category"], data["description"], by=actor())

    return _after_form(pm, _section_key(pm, SectionKind.FACTORS), add, "Contributing factor added.")


@bp.post("/postmortems/<int:postmortem_id>/factors/<int:factor_id>/delete")
@require(Role.RESPONDER)
def remove_factor(postmortem_id: int, factor_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    return _after_form(pm, _section_key(pm, SectionKind.FACTORS),
                       lambda: services.remove_factor(db.session, pm, factor_id), "Contributing factor removed.")


@bp.post("/postmortems/<int:postmortem_id>/participants")
@require(Role.RESPONDER)
def add_participant(postmortem_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    return _after_form(pm, _section_key(pm, SectionKind.PARTICIPANTS), lambda: services.add_participant(
        db.session, pm, request.form.get("user_id", ""), request.form.get("role", "")), "Participant added.")


@bp.post("/postmortems/<int:postmortem_id>/participants/<int:participant_id>/delete")
@require(Role.RESPONDER)
def remove_participant(postmortem_id: int, participant_id: int):
    pm = services.get_postmortem(db.session, postmortem_id)
    return _after_form(pm, _section_key(pm, SectionKind.PARTICIPANTS),
                       lambda: services.remove_participant(db.session, pm, participant_id), "Participant removed.")


# --- review and publishing --------------------------------------------------------------------------

def _transition(postmortem_id: int, action, message: str, after=None):
    """Run one status move; `after(pm)` adds to the flash once the move is committed."""
    pm = services.get_postmortem(db.session, postmortem_id)
    try:
        action(pm)
        db.session.commit()
    except services.QualityGatesFailed as e:
        db.session.rollback()
        return _read_view(services.get_postmortem(db.session, postmortem_id), e.missing, 422)
    except DomainError as e:
        db.session.rollback()
        flash(e.message, "error")
        return _read_view(services.get_postmortem(db.session, postmortem_id), status=e.status)
    flash(message, "success")
    if after:
        after(pm)
    return redirect(url_for("postmortem.view", postmortem_id=postmortem_id))


@bp.post("/postmortems/<int:postmortem_id>/review")
@require(Role.RESPONDER)
def submit_for_review(postmortem_id: int):
    return _transition(postmortem_id, lambda pm: services.submit_for_review(db.session, pm, by=actor()),
                       "Submitted for review: reviewers can comment on each section.")


@bp.post("/postmortems/<int:postmortem_id>/draft")
@require(Role.RESPONDER)
def return_to_draft(postmortem_id: int):
    return _transition(postmortem_id, lambda pm: services.return_to_draft(db.session, pm, by=actor()),
                       "Back to draft.")


@bp.post("/postmortems/<int:postmortem_id>/publish")
@require(Role.RESPONDER)
def publish(postmortem_id: int):
    return _transition(postmortem_id, lambda pm: services.publish_postmortem(db.session, pm, by=actor()),
                       "Published. The post-mortem is now read-only.", after=_coach_warning)


def _coach_warning(pm) -> None:
    """Published all the same: say how many phrases the coach flagged, linking to their sections."""
    with read_only():  # committed: the coach only reads
        flagged = _coach(pm)
    count = sum(len(findings) for _, findings in flagged)
    if not count:
        return
    links = Markup(", ").join(
        Markup('<a href="{}">{}</a> ({})').format(
            url_for("postmortem.view", postmortem_id=pm.id) + f"#section-{section.key}", section.title, len(found))
        for section, found in flagged)
    flash(Markup("{} the blameless coach flagged (advice only, nothing was blocked): {}.").format(
        f"{count} phrase{'s' if count != 1 else ''}", links), "warning")


@bp.post("/postmortems/<int:postmortem_id>/reopen")
@require(Role.ADMIN)
def reopen(postmortem_id: int):
    return _transition(postmortem_id, lambda pm: services.reopen_postmortem(
        db.session, pm, by=actor(), reason=request.form.get("reason", "")), "Reopened as a draft.")


@bp.post("/postmortems/blameless-check")
@reads_only
@require(Role.VIEWER)
def blameless_check():
    """The coach's endpoint for the page (session cookie + CSRF header); the API's twin takes a token."""
    return jsonify(blameless_findings())


# --- admin: templates, taxonomy, word list -----------------------------------------------------------

def sections_from_form(form) -> list[dict]:
    """Rows `key-N`, `title-N`, ... of the template editor, ordered by `position-N`; blank and deleted rows drop."""
    rows = []
    count = int(form.get("rows", "0")) if form.get("rows", "0").isdigit() else 0
    for n in range(min(count, 100)):
        key, title = form.get(f"key-{n}", "").strip(), form.get(f"title-{n}", "").strip()
        if form.get(f"delete-{n}") or not (key or title):
            continue
        pos = form.get(f"position-{n}", "")
        rows.append((int(pos) if pos.lstrip("-").isdigit() else n, n, {
            "key": key, "title": title, "kind": form.get(f"kind-{n}", "markdown"),
            "required": bool(form.get(f"required-{n}")), "guidance": form.get(f"guidance-{n}", ""),
        }))
    return [r[2] for r in sorted(rows, key=lambda r: (r[0], r[1]))]


@bp.get("/admin/postmortem-templates")
@require(Role.ADMIN)
def templates():
    return render_template("postmortem/admin_templates.html",
                           templates=services.list_templates(db.session, include_inactive=True))


@bp.route("/admin/postmortem-templates/new", methods=["GET", "POST"])
@require(Role.ADMIN)
def new_template():
    errors, status = {}, 200
    sections = [{"key": "summary", "title": "Summary", "kind": "markdown", "required": True, "guidance": ""}]
    if request.method == "POST":
        sections = sections_from_form(request.form)
        try:
            tpl = services.create_template(db.session, name=request.form.get("name", ""), sections=sections,
                                           slug=request.form.get("slug") or None,
                                           description=request.form.get("description", ""))
            db.session.commit()
        except DomainError as e:
            db.session.rollback()
            errors, status = form_errors(e, headline=True), e.status
        else:
            flash(f"Template {tpl.name} created.", "success")
            return redirect(url_for("postmortem.templates"))
    return render_template("postmortem/admin_template_edit.html", tpl=None, form=request.form, sections=sections,
                           kinds=list(SectionKind), errors=errors), status


@bp.route("/admin/postmortem-templates/<int:template_id>", methods=["GET", "POST"])
@require(Role.ADMIN)
def edit_template(template_id: int):
    tpl = services.get_template(db.session, template_id)
    errors, status, sections = {}, 200, tpl.sections
    if request.method == "POST":
        sections = sections_from_form(request.form)
        try:
            services.update_template(db.session, tpl, name=request.form.get("name", ""),
                                     description=request.form.get("description", ""), sections=sections,
                                     active=bool(request.form.get("active")))
            db.session.commit()
        except DomainError as e:
            db.session.rollback()
            tpl = services.get_template(db.session, template_id)
            errors, status = form_errors(e, headline=True), e.status
        else:
            flash(f"Template {tpl.name} saved (version {tpl.version}). Post-mortems already started keep "
                  "the version they began with.", "success")
            return redirect(url_for("postmortem.edit_template", template_id=tpl.id))
    return render_template("postmortem/admin_template_edit.html", tpl=tpl, form=request.form, sections=sections,
                           kinds=list(SectionKind), errors=errors), status


@bp.route("/admin/contributing-factors", methods=["GET", "POST"])
@require(Role.ADMIN)
def factor_categories():
    errors, status = {}, 200
    if request.method == "POST":
        try:
            cat_id = request.form.get("id", "")
            if cat_id:
                services.update_category(db.session, services.get_category(db.session, cat_id),
                                         name=request.form.get("name", ""),
                                         description=request.form.get("description", ""),
                                         active=bool(request.form.get("active")))
            else:
                services.create_category(db.session, name=request.form.get("name", ""),
                                         slug=request.form.get("slug") or None,
                                         description=request.form.get("description", ""))
            db.session.commit()
        except DomainError as e:
            db.session.rollback()
            errors, status = form_errors(e, headline=True), e.status
        else:
            flash("Taxonomy saved.", "success")
            return redirect(url_for("postmortem.factor_categories"))
    return render_template("postmortem/admin_factors.html", errors=errors, form=request.form,
                           categories=services.list_categories(db.session, include_inactive=True)), status


@bp.route("/admin/blameless-phrases", methods=["GET", "POST"])
@require(Role.ADMIN)
def phrases():
    errors, status = {}, 200
    if request.method == "POST":
        form = request.form
        try:
            if form.get("id", "").isdigit():
                blameless.update_phrase(db.session, int(form["id"]), suggestion=form.get("suggestion", ""),
                                        category=form.get("category", ""), active=bool(form.get("active")))
            else:
                blameless.create_phrase(db.session, phrase=form.get("phrase", ""),
                                        suggestion=form.get("suggestion", ""), category=form.get("category", ""))
            db.session.commit()
        except DomainError as e:
            db.session.rollback()
            errors, status = form_errors(e, headline=True), e.status
        else:
            flash("Word list saved.", "success")
            return redirect(url_for("postmortem.phrases"))
    return render_template("postmortem/admin_phrases.html", errors=errors, form=request.form,
                           phrases=blameless.list_phrases(db.session), categories=blameless.CATEGORIES), status
