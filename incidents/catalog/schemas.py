"""Teams and services at the HTTP boundary."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from incidents.catalog import services
from incidents.forms import Choice, not_blank
from incidents.openapi import MAX_INT, PageArgsSchema, PageSchema
from incidents.singleline import SingleLine


class SlugOrId(fields.Field):
    """A team or service named by slug ("payments") or id (7 or "7"); loads as a string."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError("Give a slug or an id.")
        key = str(value).strip()
        if not key or len(key) > 64 or (key.isdigit() and int(key) > MAX_INT):
            raise ValidationError("Give a slug or an id.")
        return key


class TeamRefSchema(Schema):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)


class TeamSchema(TeamRefSchema):
    description = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class TeamCreateSchema(Schema):
    name = SingleLine(required=True, validate=validate.Length(min=1, max=120))
    slug = SingleLine(validate=[validate.Length(min=1, max=64), validate.Regexp(r"^[a-z0-9][a-z0-9-]*$")],
                         metadata={"description": "Lowercase letters, digits and dashes; derived from name if absent."})
    description = fields.String(validate=validate.Length(max=10_000))


class TeamUpdateSchema(TeamCreateSchema):
    name = SingleLine(validate=validate.Length(min=1, max=120))


class TeamPageSchema(PageSchema):
    items = fields.List(fields.Nested(TeamSchema), required=True)


class ServiceSchema(Schema):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    team = fields.Nested(TeamRefSchema, required=True)
    created_at = fields.DateTime(required=True)


_TEAM_KEY = {"type": ["string", "integer"], "description": "The owning team's slug or id."}


class ServiceCreateSchema(TeamCreateSchema):
    team = SlugOrId(required=True, metadata=_TEAM_KEY)


class ServiceUpdateSchema(TeamUpdateSchema):
    team = SlugOrId(metadata=_TEAM_KEY)


class ServicePageSchema(PageSchema):
    items = fields.List(fields.Nested(ServiceSchema), required=True)


class ServiceListArgsSchema(PageArgsSchema):
    team = fields.String(metadata={"description": "Only the services of this team (slug or id)."})


_BAD_SLUG = "Invalid slug."


class TeamFormSchema(TeamUpdateSchema):
    """The team pages: the API's fields with the pages' messages; a blank slug is null (the create page derives
    it from the name), and the Slack webhook, which the API does not set, with its remove box."""

    name = SingleLine(required=True, validate=[validate.Length(max=120), not_blank("Required.")],
                      error_messages={"required": "Required."})
    slug = SingleLine(allow_none=True, validate=[validate.Length(max=64, error=_BAD_SLUG),
                                                 validate.Regexp(r"^[a-z0-9][a-z0-9-]*$", error=_BAD_SLUG)])
    slack_webhook_url = fields.String(allow_none=True, validate=validate.Length(max=500))
    clear_slack_webhook = fields.Boolean()


class ServiceFormSchema(TeamFormSchema):
    """The service pages: the owning team picked by id from a list (blank: none chosen)."""

    class Meta:
        exclude = ("slack_webhook_url", "clear_slack_webhook")

    team_id = Choice(services.get_team)
