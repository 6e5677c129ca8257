"""The search API's query parameters and answer."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from incidents.openapi import PageArgsSchema, PageSchema
from incidents.search.models import DocKind


class SearchArgsSchema(PageArgsSchema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=200),
                      metadata={"description": "Words to find; each may be the start of a word (repl finds "
                                               "replication). Punctuation is ignored."})
    kind = fields.String(validate=validate.OneOf([k.value for k in DocKind]),
                         metadata={"description": "Only incidents or only post-mortems."})


class SearchHitSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in DocKind]))
    id = fields.Integer(required=True, metadata={"description": "The incident's or the post-mortem's id."})
    ref = fields.String(required=True, metadata={"description": "The incident's reference (INC-42)."})
    title = fields.String(required=True)
    snippet = fields.String(required=True, metadata={"description": "HTML: the escaped text around the matches, "
                                                                   "each match in <mark></mark>."})


class SearchPageSchema(PageSchema):
    items = fields.List(fields.Nested(SearchHitSchema), required=True)
