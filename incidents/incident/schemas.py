"""Incidents and their timeline at the HTTP boundary."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, post_load, validate

from incidents.catalog import services as catalog
from incidents.catalog.schemas import SlugOrId, TeamRefSchema
from incidents.database import utcnow
from incidents.forms import Choice, not_blank
from incidents.incident.durations import durations
from incidents.incident.models import EntryKind, Severity, Status
from incidents.markdown import render_markdown
from incidents.openapi import MAX_INT, JsonInteger, PageArgsSchema, PageSchema
from incidents.singleline import SingleLine
from incidents.urls import public_base_url

_KEY = {"type": ["string", "integer"], "description": "Slug or id; null for none."}


def _utc(**kwargs) -> fields.AwareDateTime:
    """An ISO-8601 time; one without an offset is read as UTC."""
    return fields.AwareDateTime(default_timezone=UTC, **kwargs)


def _user_id(**kwargs) -> fields.Integer:
    return JsonInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_INT), **kwargs)


class UserRefSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class ServiceRefSchema(TeamRefSchema):
    pass


class IncidentSchema(Schema):
    id = fields.Integer(required=True)
    ref = fields.String(required=True, metadata={"example": "INC-42"})
    url = fields.Method("_url", required=True, metadata={"type": "string", "description": "The web page."})
    title = fields.String(required=True)
    summary = fields.String(required=True, metadata={"description": "Markdown."})
    summary_html = fields.Method("_summary_html", required=True,
                                 metadata={"type": "string", "description": "The summary rendered and sanitised."})
    severity = fields.Enum(Severity, by_value=True, required=True)
    status = fields.Enum(Status, by_value=True, required=True)
    is_open = fields.Boolean(required=True)
    service = fields.Nested(ServiceRefSchema, allow_none=True, required=True)
    team = fields.Nested(TeamRefSchema, allow_none=True, required=True)
    tags = fields.List(fields.String(), required=True)
    commander_id = fields.Integer(allow_none=True, required=True)
    commander = fields.Nested(UserRefSchema, allow_none=True, required=True)
    comms_lead_id = fields.Integer(allow_none=True, required=True)
    comms_lead = fields.Nested(UserRefSchema, allow_none=True, required=True)
    scribe_id = fields.Integer(allow_none=True, required=True)
    scribe = fields.Nested(UserRefSchema, allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    started_at = fields.DateTime(required=True)
    detected_at = fields.DateTime(required=True)
    acknowledged_at = fields.DateTime(allow_none=True, required=True)
    mitigated_at = fields.DateTime(allow_none=True, required=True)
    resolved_at = fields.DateTime(allow_none=True, required=True)
    closed_at = fields.DateTime(allow_none=True, required=True)
    resolution = fields.String(required=True, metadata={"description": "What fixed it; set when resolved."})
    chat_url = fields.String(required=True, metadata={"description": "The chat channel; empty when unset."})
    call_url = fields.String(required=True, metadata={"description": "The call; empty when unset."})
    runbook_url = fields.String(required=True, metadata={"description": "The runbook; empty when unset."})
    next_update_at = fields.DateTime(allow_none=True, required=True,
                                     metadata={"description": "When the next status update is due."})
    update_overdue = fields.Method("_overdue", required=True, metadata={"type": "boolean"})
    durations = fields.Method("_durations", required=True, metadata={
        "type": "object", "description": "Seconds (null until reached): time_to_detect, time_to_acknowledge, "
                                         "time_to_mitigate, time_to_resolve, and impact (null while impact goes on)."})

    def _overdue(self, incident) -> bool:
        return incident.update_overdue(utcnow())

    def _durations(self, incident) -> dict:
        d = durations(incident)
        return {row["key"]: row["seconds"] for row in d.rows()} | {"impact": None if d.impact_ongoing else d.impact}

    def _url(self, incident) -> str:
        return f"{public_base_url()}/incidents/{incident.ref}"

    def _summary_html(self, incident) -> str:
        return str(render_markdown(incident.summary))


class IncidentCreateSchema(Schema):
    title = SingleLine(required=True, validate=validate.Length(min=1, max=200))
    severity = fields.Enum(Severity, by_value=True, required=True)
    summary = fields.String(validate=validate.Length(max=100_000), metadata={"description": "Markdown."})
    service = SlugOrId(allow_none=True, metadata=_KEY)
    team = SlugOrId(allow_none=True, metadata=_KEY | {"description": "Defaults to the service's team."})
    tags = fields.List(SingleLine(validate=validate.Length(max=50)), validate=validate.Length(max=20))
    started_at = _utc(metadata={"description": "When impact began; defaults to detected_at."})
    detected_at = _utc(metadata={"description": "Defaults to now."})
    commander_id = _user_id()


class IncidentUpdateSchema(Schema):
    title = SingleLine(validate=validate.Length(min=1, max=200))
    severity = fields.Enum(Severity, by_value=True)
    summary = fields.String(validate=validate.Length(max=100_000))
    service = SlugOrId(allow_none=True, metadata=_KEY)
    team = SlugOrId(allow_none=True, metadata=_KEY)
    tags = fields.List(SingleLine(validate=validate.Length(max=50)), validate=validate.Length(max=20))
    started_at = _utc()
    detected_at = _utc()
    commander_id = _user_id()
    comms_lead_id = _user_id()
    scribe_id = _user_id()
    status = fields.Enum(Status, by_value=True, metadata={
        "description": "Moves the incident through the status machine, as the web buttons do; "
                       "a move the machine does not allow answers 409. `resolved` requires `resolution`."})
    resolution = fields.String(validate=validate.Length(max=10_000), metadata={
        "description": "What fixed it: required with status resolved (422 naming this field without it)."})
    chat_url = fields.String(validate=validate.Length(max=500), metadata={"description": "http(s); empty clears."})
    call_url = fields.String(validate=validate.Length(max=500), metadata={"description": "http(s); empty clears."})
    runbook_url = fields.String(validate=validate.Length(max=500), metadata={"description": "http(s); empty clears."})


class StatusUpdateSchema(Schema):
    id = fields.Integer(required=True)
    incident_ref = fields.Function(lambda u: u.incident.ref, required=True, metadata={"type": "string"})
    status = fields.Enum(Status, by_value=True, required=True, metadata={"description": "The status when posted."})
    impact = fields.String(required=True, metadata={"description": "The impact now."})
    actions = fields.String(required=True, metadata={"description": "What responders are doing."})
    next_update_at = fields.DateTime(allow_none=True, required=True)
    author = fields.Nested(UserRefSchema, allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class StatusUpdatePageSchema(PageSchema):
    items = fields.List(fields.Nested(StatusUpdateSchema), required=True)


class StatusUpdateCreateSchema(Schema):
    impact = fields.String(required=True, validate=validate.Length(min=1, max=10_000),
                           metadata={"description": "The impact now, for stakeholders."})
    actions = fields.String(required=True, validate=validate.Length(min=1, max=10_000),
                            metadata={"description": "What we are doing."})
    status = fields.Enum(Status, by_value=True, metadata={
        "description": "Defaults to the current status; another one moves the incident first (resolved needs "
                       "`resolution`)."})
    next_update_at = _utc(metadata={"description": "When the next update is due (future, at most 7 days); "
                                                   "defaults to now + INCIDENTS_UPDATE_INTERVAL_MINUTES."})
    resolution = fields.String(validate=validate.Length(max=10_000),
                               metadata={"description": "Required when the update resolves the incident."})


class IncidentFormSchema(IncidentCreateSchema):
    """The declare and edit pages: the API's fields, with the service and team picked by id from a list, blank
    times meaning "not given", and the messages the page shows beside each input."""

    class Meta:
        exclude = ("service", "team", "commander_id")

    title = SingleLine(required=True, validate=[validate.Length(max=200), not_blank("A title is required.")],
                       error_messages={"required": "A title is required."})
    severity = fields.Enum(Severity, by_value=True, required=True,
                           error_messages={"unknown": "Choose a severity.", "required": "Choose a severity."})
    service_id = Choice(catalog.get_service)
    team_id = Choice(catalog.get_team)
    started_at = _utc(allow_none=True, error_messages={"invalid": "Use the date picker, or YYYY-MM-DDTHH:MM."})
    detected_at = _utc(allow_none=True, error_messages={"invalid": "Use the date picker, or YYYY-MM-DDTHH:MM."})

    @post_load
    def _in_utc(self, data: dict, **_kwargs) -> dict:
        for name in ("started_at", "detected_at"):
            if data.get(name) is not None:
                data[name] = data[name].astimezone(UTC)
        return data


class IncidentPageSchema(PageSchema):
    items = fields.List(fields.Nested(IncidentSchema), required=True)
    next = fields.String(required=True, allow_none=True, metadata={
        "description": "The cursor of the next (older) page: pass it as `before` with the same filters; null on the "
                       "last page. Pages are numbered only through the newest 10,000 incidents; the cursor goes on."})


class IncidentListArgsSchema(PageArgsSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_INT), metadata={
        "description": "Pages are numbered through the newest 10,000 matches (page 400 at 25 a page): a page beyond "
                       "them, when there are more, is a 422; go further with `before`. Ignored with `before`."})
    before = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "A cursor from `next`: the page of incidents older than the previous page's last. A value this "
                       "list did not give is a 422."})
    status = fields.List(fields.Enum(Status, by_value=True),
                         metadata={"description": "Repeat or comma-separate: status=triggered,acknowledged."})
    severity = fields.List(fields.Enum(Severity, by_value=True), metadata={"description": "Repeat or comma-separate."})
    service = fields.String(metadata={"description": "Service slug or id."})
    team = fields.String(metadata={"description": "Team slug or id."})
    tag = fields.String(validate=validate.Length(max=50))
    q = fields.String(validate=validate.Length(max=200), metadata={
        "description": "Words of the title, summary or notes (each may be the start of a word), or a ref (INC-42). "
                       "A q without any word is a 422. With q alone, total counts up to 10,000 matches."})
    open = fields.Boolean(metadata={"description": "Only open incidents (ignored when status is given)."})


class TimelineEntrySchema(Schema):
    id = fields.Integer(required=True)
    kind = fields.Enum(EntryKind, by_value=True, required=True)
    occurred_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    author = fields.Nested(UserRefSchema, allow_none=True, required=True)
    text = fields.String(required=True, metadata={"description": "One line, e.g. 'Status: triggered -> acknowledged'."})
    body = fields.String(required=True, metadata={"description": "Markdown (notes)."})
    body_html = fields.Method("_body_html", required=True, metadata={"type": "string"})
    data = fields.Dict(required=True, metadata={"description": "Structured facts (old/new status, role, ...)."})

    def _body_html(self, entry) -> str:
        return str(render_markdown(entry.body))


class TimelinePageSchema(PageSchema):
    items = fields.List(fields.Nested(TimelineEntrySchema), required=True)


class NoteCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=100_000),
                         metadata={"description": "Markdown."})
    occurred_at = _utc(metadata={"description": "When it happened; defaults to now."})



class NoteFormSchema(NoteCreateSchema):
    """The note box on the incident page."""

    body = fields.String(required=True, validate=[validate.Length(max=100_000), not_blank("Required.")],
                         error_messages={"required": "Required."}, metadata={"description": "Markdown."})


class RolesFormSchema(Schema):
    """The roles form on the incident page: per role, a person picked from a list, or blank to clear; a role
    missing from the post is left as it is."""

    commander_id = _user_id(data_key="commander", error_messages={"invalid": "Choose from the list."})
    comms_lead_id = _user_id(data_key="comms_lead", error_messages={"invalid": "Choose from the list."})
    scribe_id = _user_id(data_key="scribe", error_messages={"invalid": "Choose from the list."})


class StatusUpdateFormSchema(Schema):
    """The "post an update" form: where it stands, impact now, what we are doing, and when the next one is due
    (in N minutes, or at a time; neither: the configured interval)."""

    status = fields.Enum(Status, by_value=True, allow_none=True,
                         error_messages={"unknown": "Choose a status from the list."})
    impact = fields.String(required=True, validate=[validate.Length(max=10_000), not_blank("Say what users see now.")])
    actions = fields.String(required=True, validate=[validate.Length(max=10_000),
                                                     not_blank("Say what responders are doing.")])
    next_in = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=24 * 60),
                             error_messages={"invalid": "Choose from the list."})
    next_at = fields.AwareDateTime(default_timezone=UTC, allow_none=True,
                                   error_messages={"invalid": "Use the date picker, or YYYY-MM-DDTHH:MM."})
    resolution = fields.String(validate=validate.Length(max=100_000))


class LinksFormSchema(Schema):
    chat_url = fields.String(validate=validate.Length(max=500))
    call_url = fields.String(validate=validate.Length(max=500))
    runbook_url = fields.String(validate=validate.Length(max=500))
