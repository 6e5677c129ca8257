"""Full-text search over incidents and post-mortems: keeping the index current, and querying it.

Users type anything: `tokens()` keeps only words (letters and digits), and the FTS5 MATCH / tsquery is built from
them, each quoted and a prefix (`"repl"*`, `'repl':*`), all of them required. User text is never query syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from html import escape

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.database import Page
from incidents.errors import Invalid
from incidents.search.models import DocKind, SearchDocument

MAX_TOKENS = 8
RANK_LIMIT = 1000  # more matches than this: newest first instead of by rank (see `search`)
_WORD = re.compile(r"[^\W_]+")
# Sentinels around matches in snippets: private-use characters, swapped for <mark> after escaping.
_OPEN, _CLOSE = "\ue000", "\ue001"
_ANGLES = "\u2039\u203a"  # PostgreSQL indexes < and > as these (see migration 0015)


def tokens(q: str | None) -> list[str]:
    """The words of `q`, lower-cased, at most MAX_TOKENS of at most 50 characters; punctuation and syntax dropped."""
    return [w[:50] for w in _WORD.findall((q or "").lower())][:MAX_TOKENS]


def _require_tokens(q: str | None) -> list[str]:
    words = tokens(q)
    if not words:
        raise Invalid("Type at least one word to search for.", {"q": ["No words to search for."]})
    return words


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _query_text(session: Session, words: list[str]) -> str:
    if _is_postgres(session):
        return " & ".join(f"'{w}':*" for w in words)
    return " ".join(f'"{w}"*' for w in words)


def _match(session: Session, query: str) -> sa.ColumnElement[bool]:
    """The condition "this document matches", on search_document's columns."""
    if _is_postgres(session):
        return sa.text("search_document.tsv @@ to_tsquery('simple', :fts_query)").bindparams(fts_query=query)
    return SearchDocument.id.in_(sa.text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts_query")
                                 .bindparams(fts_query=query).columns(sa.column("rowid", sa.Integer)))


def incident_condition(session: Session, q: str, incident_id: sa.ColumnElement) -> sa.ColumnElement[bool]:
    """For the incident list's `q`: `incident_id` is that of a matching incident document (the incident domain
    gets this through its text-filter hook, as it does not import this one)."""
    query = _query_text(session, _require_tokens(q))
    return incident_id.in_(
        sa.select(SearchDocument.target_id).where(SearchDocument.kind == DocKind.INCIDENT, _match(session, query)))


# --- results -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    kind: str
    id: int  # the incident's or the post-mortem's id
    incident_id: int
    ref: str
    title: str
    snippet: str  # HTML: escaped text with <mark> around matches
    created_at: datetime


def mark(text: str) -> str:
    """Escape `text`, then turn the match sentinels into <mark> tags (balanced, whatever the text held)."""
    out, open_ = [], False
    for part in re.split(f"([{_OPEN}{_CLOSE}])", text or ""):
        if part == _OPEN and not open_:
            out.append("<mark>")
            open_ = True
        elif part == _CLOSE and open_:
            out.append("</mark>")
            open_ = False
        elif part not in (_OPEN, _CLOSE):
            out.append(escape(part, quote=False))
    return "".join(out) + ("</mark>" if open_ else "")


def search(session: Session, q: str, kind: str | None = None, page: int = 1, per_page: int = 25) -> Page:
    """Documents matching every word of `q` (as a prefix), best first: a title match weighs more than the body
    (bm25 column weights / ts_rank of weights A and B).

    Ranking needs every match scored, so when more than RANK_LIMIT documents match, the page is newest first
    instead: a common word stays as fast as a rare one. Snippets are computed for the rows on the page only."""
    query = _query_text(session, _require_tokens(q))
    if kind is not None:
        try:
            kind = DocKind(kind)
        except ValueError:
            raise Invalid("kind is incident or postmortem.", {"kind": ["incident or postmortem."]}) from None
    page = max(1, page)
    where = [_match(session, query)] + ([SearchDocument.kind == kind] if kind else [])
    total = session.scalar(sa.select(sa.func.count()).select_from(SearchDocument).where(*where)) or 0
    if total > RANK_LIMIT:
        order = [SearchDocument.created_at.desc(), SearchDocument.id.desc()]
    elif _is_postgres(session):
        order = [sa.text("ts_rank(search_document.tsv, to_tsquery('simple', :fts_query)) DESC"),
                 SearchDocument.created_at.desc(), SearchDocument.id.desc()]
    else:
        # bm25 is lower for better matches; the title column weighs ten times the body.
        order = [sa.text("(SELECT bm25(search_fts, 10.0, 1.0) FROM search_fts WHERE search_fts MATCH :fts_query"
                         " AND search_fts.rowid = search_document.id)"),
                 SearchDocument.created_at.desc(), SearchDocument.id.desc()]
    rows = session.execute(
        sa.select(SearchDocument.id, SearchDocument.kind, SearchDocument.target_id, SearchDocument.incident_id,
                  SearchDocument.title, SearchDocument.created_at)
        .where(*where).order_by(*order).limit(per_page).offset((page - 1) * per_page)
        .params(fts_query=query)).all()
    snippets = _snippets(session, query, [r.id for r in rows])
    items = [Hit(kind=r.kind.value, id=r.target_id, incident_id=r.incident_id, ref=f"INC-{r.incident_id}",
                 title=r.title, snippet=mark(snippets.get(r.id, "")), created_at=r.created_at) for r in rows]
    return Page(items=items, page=page, per_page=per_page, total=total)


def _snippets(session: Session, query: str, ids: list[int]) -> dict[int, str]:
    """document id -> a short passage around the matches with sentinels around each match (raw text)."""
    if not ids:
        return {}
    if _is_postgres(session):
        opts = f'StartSel={_OPEN}, StopSel={_CLOSE}, MaxWords=30, MinWords=12, MaxFragments=2, FragmentDelimiter=" … "'
        # On the text as indexed (tsv in migration 0015): angle brackets as look-alikes, or the parser drops them
        # and the words between them as HTML tags.
        body, title = (f"translate({c}, '<>', '{_ANGLES}')" for c in ("body", "title"))
        rows = session.execute(sa.text(
            f"SELECT id, CASE WHEN to_tsvector('simple', {body}) @@ q"
            f" THEN ts_headline('simple', {body}, q, :opts) ELSE ts_headline('simple', {title}, q, :opts) END"
            " FROM search_document, to_tsquery('simple', :fts_query) AS q WHERE id IN :ids")
            .bindparams(sa.bindparam("ids", expanding=True)), {"fts_query": query, "opts": opts, "ids": ids})
    else:
        # Column -1: FTS5 picks the column (title or body) with the most matches.
        rows = session.execute(sa.text(
            f"SELECT rowid, snippet(search_fts, -1, '{_OPEN}', '{_CLOSE}', ' … ', 24) FROM search_fts"
            " WHERE search_fts MATCH :fts_query AND rowid IN :ids")
            .bindparams(sa.bindparam("ids", expanding=True)), {"fts_query": query, "ids": ids})
    return {doc_id: text or "" for doc_id, text in rows}


# --- keeping the index current -----------------------------------------------------------------------------------

def _agg(session: Session, expr: str) -> str:
    """Concatenate `expr` over rows, one per line (each database spells it its own way)."""
    if _is_postgres(session):
        return f"string_agg({expr}, E'\\n')"
    return f"group_concat({expr}, char(10))"


def _upsert(select_sql: str) -> str:
    return ("INSERT INTO search_document (kind, target_id, incident_id, created_at, title, body) " + select_sql +
            " ON CONFLICT (kind, target_id) DO UPDATE SET incident_id = excluded.incident_id,"
            " created_at = excluded.created_at, title = excluded.title, body = excluded.body")


def _incident_sql(session: Session, where: str) -> str:
    notes = (f"(SELECT {_agg(session, 'e.body')} FROM timeline_entry e"
             " WHERE e.incident_id = i.id AND e.kind = 'note')")
    return _upsert("SELECT 'incident', i.id, i.id, i.created_at, i.title,"
                   f" coalesce(i.summary, '') || coalesce(char(10) || {notes}, '')"
                   f" FROM incident i WHERE {where}").replace("char(10)", _newline(session))


_ITEM_TEXT = "a.title || ' ' || a.description"


def _postmortem_sql(session: Session, where: str) -> str:
    parts = [
        f"(SELECT {_agg(session, 's.body')} FROM postmortem_section s WHERE s.postmortem_id = p.id AND s.body <> '')",
        f"(SELECT {_agg(session, 'f.description')} FROM contributing_factor f"
        " WHERE f.postmortem_id = p.id AND f.description <> '')",
        f"(SELECT {_agg(session, _ITEM_TEXT)} FROM action_item a WHERE a.postmortem_id = p.id)",
    ]
    body = " || char(10) || ".join(f"coalesce({p}, '')" for p in parts)
    return _upsert("SELECT 'postmortem', p.id, p.incident_id, p.created_at, p.title, " + body +
                   f" FROM postmortem p WHERE {where}").replace("char(10)", _newline(session))


def _newline(session: Session) -> str:
    return "chr(10)" if _is_postgres(session) else "char(10)"


def index_incidents(session: Session, incident_ids: list[int]) -> None:
    """Rebuild these incidents' documents from their rows (title; summary and notes)."""
    session.flush()  # the text statement below reads what the ORM has not written yet
    session.execute(sa.text(_incident_sql(session, "i.id IN :ids")).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": list(incident_ids)})


def index_postmortems(session: Session, postmortem_ids: list[int]) -> None:
    """Rebuild these post-mortems' documents (title; sections, contributing factors, action items)."""
    session.flush()
    session.execute(sa.text(_postmortem_sql(session, "p.id IN :ids")).bindparams(sa.bindparam("ids", expanding=True)),
                    {"ids": list(postmortem_ids)})


def reindex(session: Session, batch: int = 5000, progress=None) -> int:
    """Rebuild every document in id ranges of `batch` (repair; after bulk loads that bypass the services).
    Documents whose incident or post-mortem is gone are dropped. Returns how many documents were written;
    commits after each range so a large rebuild neither holds one huge transaction nor the SQLite lock for long."""
    written = 0
    session.execute(sa.text(
        "DELETE FROM search_document WHERE (kind = 'incident' AND target_id NOT IN (SELECT id FROM incident))"
        " OR (kind = 'postmortem' AND target_id NOT IN (SELECT id FROM postmortem))"))
    session.commit()
    for table, build in (("incident", _incident_sql), ("postmortem", _postmortem_sql)):
        alias = table[0]
        top = session.scalar(sa.text(f"SELECT max(id) FROM {table}")) or 0
        for lo in range(0, top + 1, batch):
            result = session.execute(sa.text(build(session, f"{alias}.id >= :lo AND {alias}.id < :hi")),
                                     {"lo": lo, "hi": lo + batch})
            session.commit()
            written += result.rowcount or 0
            if progress:
                progress(table, min(lo + batch, top), top)
    return written
