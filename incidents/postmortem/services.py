"""The post-mortem domain's use cases under one name for views, the API and other domains.

Each seam lives in its own module: `templates` (templates and the factor taxonomy), `editing` (starting and
editing), `review` (quality gates and publishing), `queries` (reads and lists). What renders rather than decides
is in `presentation`, which views import directly. New code may import the seams directly; this only re-exports them.
"""

from __future__ import annotations

from incidents.postmortem.editing import (
    MAX_BODY,
    SectionConflict,
    add_comment,
    add_factor,
    add_participant,
    ensure_editable,
    refresh_search_text,
    remove_factor,
    remove_participant,
    save_section,
    start_postmortem,
)
from incidents.postmortem.queries import (
    PostmortemFilter,
    get_postmortem,
    get_section,
    incidents_awaiting_postmortem,
    list_postmortems,
    needs_postmortem_prompt,
    postmortem_for,
)
from incidents.postmortem.review import (
    QualityGatesFailed,
    gate_section,
    publish_postmortem,
    quality_gates,
    record_event,
    reopen_postmortem,
    return_to_draft,
    section_filled,
    section_ticks,
    submit_for_review,
)
from incidents.postmortem.templates import (
    clean_sections,
    create_category,
    create_template,
    get_category,
    get_template,
    list_categories,
    list_templates,
    update_category,
    update_template,
)
from incidents.singleline import reject_nul

__all__ = [
    "MAX_BODY", "PostmortemFilter", "QualityGatesFailed", "SectionConflict", "add_comment", "add_factor",
    "add_participant", "clean_sections", "create_category", "create_template", "ensure_editable",
    "gate_section", "get_category", "get_postmortem", "get_section", "get_template",
    "incidents_awaiting_postmortem", "list_categories", "list_postmortems", "list_templates",
    "needs_postmortem_prompt", "postmortem_for", "publish_postmortem", "quality_gates",
    "record_event", "refresh_search_text", "reject_nul", "remove_factor", "remove_participant", "reopen_postmortem",
    "return_to_draft", "save_section", "section_filled", "section_ticks",
    "start_postmortem", "submit_for_review", "update_category", "update_template",
]
