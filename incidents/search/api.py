"""GET /api/v1/search, mounted by incidents.api."""

from __future__ import annotations

from flask import Blueprint, jsonify

from incidents.apihttp import page_response, page_window, query_args
from incidents.auth.models import Role
from incidents.auth.permissions import require
from incidents.extensions import db
from incidents.search import services
from incidents.search.schemas import SearchArgsSchema, SearchHitSchema

bp = Blueprint("search", __name__)


@bp.get("/search")
@require(Role.VIEWER)
def search():
    """Incidents and post-mortems whose text holds every word, best match first (newest first when very many match).
    ---
    get:
      tags: [search]
      summary: Full-text search
      description: >-
        Searches incidents (title, summary, notes) and post-mortems (title, sections, contributing factors, action
        items). Every word must match, as a word or the start of one (from two letters on). A title match ranks above
        a match in the text; past 1,000 matches the results are newest first, and matches are counted up to 10,000
        (total is then 10000, a floor). A q without any word is a 422.
      parameters: [{in: query, schema: SearchArgsSchema}]
      responses:
        200: {description: A page of matches, content: {application/json: {schema: SearchPageSchema}}}
        422: ValidationError
    """
    args = query_args(SearchArgsSchema())
    page, per_page = page_window(args)
    result = services.search(db.session, args["q"], args.get("kind"), page, per_page)
    return jsonify(page_response(result, SearchHitSchema()))
