"""The post-mortem domain's use cases under one name for views, the API and other domains.

Each seam lives in its own module: `templates` (templates and the factor taxonomy), `editing` (starting and
editing), `review` (quality gates and publishing), `queries` (reads and lists) and `presentation` (what renders
rather than decides). New code may import those modules directly; this one only re-exports them.
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
from incidents.postmortem.presentation import (
    diff_lines,
    impact_durations,
    panel_context,
    section_history,
    seed_timeline,
    to_markdown,
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
    "add_participant", "clean_sections", "create_category", "create_template", "diff_lines", "ensure_editable",
    "gate_section", "get_category", "get_postmortem", "get_section", "get_template", "impact_durations",
    "incidents_awaiting_postmortem", "list_categories", "list_postmortems", "list_templates",
    "needs_postmortem_prompt", "panel_context", "postmortem_for", "publish_postmortem", "quality_gates",
    "record_event", "refresh_search_text", "reject_nul", "remove_factor", "remove_participant", "reopen_postmortem",
    "return_to_draft", "save_section", "section_filled", "section_history", "section_ticks", "seed_timeline",
    "start_postmortem", "submit_for_review", "to_markdown", "update_category", "update_template",
]
