"""marshmallow at the HTTP boundary of post-mortems: what the JSON API accepts and answers."""

from __future__ import annotations

from datetime import UTC, date

from flask import current_app, has_app_context
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from incidents.apihttp import load_json
from incidents.errors import Invalid
from incidents.extensions import db
from incidents.forms import not_blank
from incidents.openapi import MAX_INT, JsonInteger
from incidents.postmortem import blameless
from incidents.postmortem.models import PostmortemStatus, SectionKind
from incidents.postmortem.presentation import impact_durations
from incidents.postmortem.queries import PostmortemFilter
from incidents.settings import defaults


def filter_from_args(args) -> PostmortemFilter:
    """The list filters from a query string (web page and API alike); bad dates are a 422."""
    dates = {}
    for name in ("since", "until"):
        raw = (args.get(name) or "").strip()
        try:
            dates[name] = date.fromisoformat(raw) if raw else None
        except ValueError:
            raise Invalid(f"{name} must be a date, YYYY-MM-DD.", {name: ["Not a date."]}) from None
    return PostmortemFilter(status=[x for x in args.getlist("status") if x] or None,
                            team=args.get("team") or None, service=args.get("service") or None,
                            q=(args.get("q") or "").strip()[:200] or None, **dates)


class PostmortemStartSchema(Schema):
    template = fields.String(required=True, validate=validate.Length(min=1, max=64),
                             metadata={"description": "Template slug: full-blameless, pagerduty-style, lightweight.",
                                       "example": "lightweight"})


class IncidentRefSchema(Schema):
    id = fields.Integer()
    ref = fields.String()
    title = fields.String()
    severity = fields.Function(lambda i: i.severity.value)
    status = fields.Function(lambda i: i.status.value)


class TemplateRefSchema(Schema):
    slug = fields.String(attribute="template_slug")
    name = fields.String(attribute="template_name")
    version = fields.Integer(attribute="template_version")


class SectionSchema(Schema):
    key = fields.String()
    title = fields.String()
    kind = fields.String(metadata={"enum": [k.value for k in SectionKind]})
    required = fields.Boolean()
    guidance = fields.String()
    body = fields.String()
    version = fields.Integer(metadata={"description": "Send it back with the next save (optimistic concurrency)."})
    updated_by = fields.Function(lambda s: s.updated_by.name if s.updated_by else None, allow_none=True)
    updated_at = fields.DateTime()


class SectionUpdateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(max=100_000))
    # The save stores version + 1, which must still fit the column.
    version = JsonInteger(required=True, validate=validate.Range(min=1, max=MAX_INT - 1),
                             metadata={"description": "The version you loaded."})


class SectionVersionSchema(Schema):
    body = fields.String()
    version = fields.Integer()
    author = fields.String(allow_none=True)
    updated_at = fields.String()


class SectionConflictErrorSchema(Schema):
    code = fields.String(metadata={"example": "version_conflict"})
    message = fields.String()
    fields_ = fields.Dict(data_key="fields")
    current = fields.Nested(SectionVersionSchema, metadata={"description": "The newer text that was kept."})
    yours = fields.Nested(SectionVersionSchema, metadata={"description": "What you sent; it was not saved."})


class SectionConflictSchema(Schema):
    error = fields.Nested(SectionConflictErrorSchema)


class RevisionSchema(Schema):
    version = fields.Integer()
    body = fields.String()
    author = fields.Function(lambda r: r.author.name if r.author else None, allow_none=True)
    created_at = fields.DateTime()


class RevisionListSchema(Schema):
    items = fields.List(fields.Nested(RevisionSchema))


class FactorCategorySchema(Schema):
    slug = fields.String()
    name = fields.String()


class ContributingFactorSchema(Schema):
    id = fields.Integer()
    category = fields.Nested(FactorCategorySchema)
    description = fields.String()


class ContributingFactorCreateSchema(Schema):
    category = fields.String(required=True, metadata={"description": "Category slug, e.g. configuration.",
                                                      "example": "configuration"})
    description = fields.String(load_default="", validate=validate.Length(max=10_000))


class ParticipantSchema(Schema):
    user_id = fields.Integer()
    name = fields.Function(lambda p: p.user.name)
    role = fields.String()


class DurationSchema(Schema):
    """One row of incidents.incident.durations: what is measured, between which milestones, in seconds."""

    key = fields.String()
    label = fields.String()
    from_ = fields.String(data_key="from", attribute="from", metadata={"example": "impact start"})
    to = fields.String(metadata={"example": "detection"})
    seconds = fields.Float(allow_none=True)


class EventSchema(Schema):
    kind = fields.String()
    text = fields.String()
    author = fields.Function(lambda e: e.author.name if e.author else None, allow_none=True)
    at = fields.DateTime()


class PostmortemSchema(Schema):
    """A post-mortem as the API answers it; action items add their `action_items` (incidents.action_item.schemas)."""

    id = fields.Integer()
    title = fields.String()
    incident = fields.Nested(IncidentRefSchema)
    status = fields.Function(lambda p: p.status.value, metadata={"enum": [s.value for s in PostmortemStatus]})
    template = fields.Function(lambda p: TemplateRefSchema().dump(p))
    sections = fields.List(fields.Nested(SectionSchema))
    contributing_factors = fields.List(fields.Nested(ContributingFactorSchema), attribute="factors")
    participants = fields.List(fields.Nested(ParticipantSchema))
    impact = fields.Function(lambda p: DurationSchema(many=True).dump(impact_durations(p.incident)))
    history = fields.List(fields.Nested(EventSchema), attribute="events")
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)


class PostmortemSummarySchema(Schema):
    id = fields.Integer()
    title = fields.String()
    incident = fields.Nested(IncidentRefSchema)
    status = fields.Function(lambda p: p.status.value)
    template = fields.Function(lambda p: TemplateRefSchema().dump(p))
    created_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)


class PostmortemListSchema(Schema):
    items = fields.List(fields.Nested(PostmortemSummarySchema))
    page = fields.Integer()
    pages = fields.Integer()
    total = fields.Integer()


class MissingGateSchema(Schema):
    gate = fields.String(metadata={"enum": ["required_section", "contributing_factor", "action_item_owner",
                                            "action_item_due_date", "action_item_type", "timeline",
                                            "timeline_detection", "timeline_mitigation"]})
    target = fields.Raw(allow_none=True, metadata={"description": "Section key or action item id, when any."})
    message = fields.String()


class QualityGatesErrorBodySchema(Schema):
    code = fields.String(metadata={"example": "quality_gates"})
    message = fields.String()
    fields_ = fields.Dict(data_key="fields")
    missing = fields.List(fields.Nested(MissingGateSchema))


class QualityGatesErrorSchema(Schema):
    error = fields.Nested(QualityGatesErrorBodySchema)


class CommentCreateSchema(Schema):
    section = fields.String(required=True)
    body = fields.String(required=True, validate=validate.Length(min=1, max=10_000))


class CommentSchema(Schema):
    id = fields.Integer()
    section = fields.String(attribute="section_key")
    body = fields.String()
    author = fields.Function(lambda c: c.author.name if c.author else None, allow_none=True)
    created_at = fields.DateTime()


class ReopenSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=400))


class SectionFormSchema(SectionUpdateSchema):
    """The section editor's form: the API's fields with the page's messages."""

    body = fields.String(required=True, validate=validate.Length(max=100_000, error="Too long."))
    version = JsonInteger(required=True, validate=validate.Range(min=1, max=MAX_INT - 1, error="A positive integer."))


class ContributingFactorFormSchema(ContributingFactorCreateSchema):
    """The factors form of a section page; a blank category is the service's to refuse, with its message."""

    description = fields.String(load_default="", validate=validate.Length(max=10_000, error="Too long."))


_WHEN = "Enter a date and time, YYYY-MM-DDTHH:MM (UTC)."


class ImpactTimesFormSchema(Schema):
    """The impact section's correction of the incident's impact start and detection (datetime-local, UTC)."""

    started_at = fields.AwareDateTime(default_timezone=UTC, required=True,
                                      error_messages={"invalid": _WHEN, "required": _WHEN})
    detected_at = fields.AwareDateTime(default_timezone=UTC, required=True,
                                       error_messages={"invalid": _WHEN, "required": _WHEN})

    @validates_schema
    def _order(self, data: dict, **_kwargs) -> None:
        if data.get("started_at") and data.get("detected_at") and data["detected_at"] < data["started_at"]:
            raise ValidationError("Detection cannot come before the impact started.", "detected_at")

    @post_load
    def _in_utc(self, data: dict, **_kwargs) -> dict:
        return {name: at.astimezone(UTC) for name, at in data.items()}


class CommentFormSchema(CommentCreateSchema):
    """The review comment box of a section page."""

    body = fields.String(required=True, validate=[validate.Length(max=10_000, error="Too long."),
                                                  not_blank("Required.")], error_messages={"required": "Required."})


def coach_limits() -> tuple[int, int]:
    """(longest text, most findings) of the blameless coach: the settings BLAMELESS_MAX_TEXT and _MAX_FINDINGS."""
    cfg = current_app.config if has_app_context() else defaults()
    return cfg["BLAMELESS_MAX_TEXT"], cfg["BLAMELESS_MAX_FINDINGS"]


class BlamelessCheckSchema(Schema):
    text = fields.String(required=True, metadata={
        "description": "Characters up to the BLAMELESS_MAX_TEXT setting (100,000 by default); longer is a 422."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The bound is a setting, so validation and the OpenAPI document's maxLength both read it from the app.
        self.fields["text"].validators = [validate.Length(max=coach_limits()[0])]


class BlamelessFindingSchema(Schema):
    start = fields.Integer(metadata={"description": "Offset of the first flagged character."})
    end = fields.Integer(metadata={"description": "Offset just after the flagged span."})
    phrase = fields.String()
    suggestion = fields.String()
    category = fields.String(metadata={"enum": ["hindsight", "blame"]})


class BlamelessCheckResultSchema(Schema):
    findings = fields.List(fields.Nested(BlamelessFindingSchema), metadata={
        "description": "In text order; at most BLAMELESS_MAX_FINDINGS (100 by default)."})
    truncated = fields.Boolean(metadata={"description": "True when the text has more findings than were listed."})


def blameless_findings() -> dict:
    """The coach's answer to this request's {"text"}: the API route and the page's endpoint share it."""
    text = load_json(BlamelessCheckSchema())["text"]
    max_length, max_findings = coach_limits()
    findings = blameless.check_text(db.session, text, max_length=max_length, max_findings=max_findings + 1)
    return BlamelessCheckResultSchema().dump({"findings": findings[:max_findings],
                                              "truncated": len(findings) > max_findings})
