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

from incidents.database import COUNT_LIMIT, Page
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
    """Every word required, each a prefix from two letters on (one letter is the word itself: a prefix of one
    letter would match nearly every document)."""
    if _is_postgres(session):
        return " & ".join(f"'{w}'" + (":*" if len(w) > 1 else "") for w in words)
    return " ".join(f'"{w}"' + ("*" if len(w) > 1 else "") for w in words)


def _kind(kind: str | None) -> DocKind | None:
    if kind is None:
        return None
    try:
        return DocKind(kind)
    except ValueError:
        raise Invalid("kind is incident or postmortem.", {"kind": ["incident or postmortem."]}) from None


# SQLite: the FTS5 table's rowid is the document id, whose parity is its kind (models.doc_id).
_FTS_IDS = "SELECT rowid FROM search_fts WHERE search_fts MATCH :fts_query"
_PARITY = {None: "", DocKind.INCIDENT: " AND rowid % 2 = 0", DocKind.POSTMORTEM: " AND rowid % 2 = 1"}
_TSQUERY = "to_tsquery('simple', :fts_query)"


def _count(session: Session, query: str, kind: DocKind | None, limit: int) -> int:
    """Matching documents, counted up to `limit` (PostgreSQL must visit each match's row, so a common word is
    not counted to the end); on SQLite in the full-text index alone."""
    params = {"fts_query": query, "kind": kind and kind.value, "limit": limit}
    if _is_postgres(session):
        # The matches as a MATERIALIZED CTE: PostgreSQL plans it for all its rows, not for the first `limit` (a
        # plain LIMIT makes it seq-scan, betting that matches are spread evenly: with them clustered, e.g. in the
        # post-mortems at the table's end, it read ~600,000 rows), so it reads the GIN index unless most rows
        # match; and it still runs the CTE only as far as the LIMIT fetches.
        return session.scalar(sa.text(
            f"WITH matches AS MATERIALIZED (SELECT FROM search_document WHERE tsv @@ {_TSQUERY}"
            + (" AND kind = :kind" if kind else "") + ")"
            " SELECT count(*) FROM (SELECT FROM matches LIMIT :limit) AS capped"), params) or 0
    sql = _FTS_IDS.replace("SELECT rowid", "SELECT 1") + _PARITY[kind]
    return session.scalar(sa.text(f"SELECT count(*) FROM ({sql} LIMIT :limit) AS matches"), params) or 0


def _page_ids(session: Session, query: str, kind: DocKind | None, ranked: bool, limit: int, offset: int) -> list[int]:
    params = {"fts_query": query, "kind": kind and kind.value, "limit": limit, "offset": offset}
    if _is_postgres(session):
        order = f"ts_rank(tsv, {_TSQUERY}) DESC, created_at DESC, id DESC" if ranked else "created_at DESC, id DESC"
        sql = (f"SELECT id FROM search_document WHERE tsv @@ {_TSQUERY}" + (" AND kind = :kind" if kind else "") +
               f" ORDER BY {order} LIMIT :limit OFFSET :offset")
    elif ranked:
        # bm25 is lower for better matches; the title weighs ten times the body.
        sql = _FTS_IDS + _PARITY[kind] + " ORDER BY bm25(search_fts, 10.0, 1.0), rowid DESC LIMIT :limit OFFSET :offset"
    else:
        # Walks the (kind,) created_at index newest first, testing each document against the set of matches (`id + 0`:
        # not the primary key, or SQLite would fetch every match by id and sort them all).
        sql = (f"SELECT id FROM search_document WHERE id + 0 IN ({_FTS_IDS})" + (" AND kind = :kind" if kind else "") +
               " ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset")
    return list(session.scalars(sa.text(sql), params))


def incident_condition(session: Session, q: str, incident_id: sa.ColumnElement, *,
                       counted: bool = True) -> tuple[sa.ColumnElement[bool], tuple[int, bool] | None]:
    """For the incident list's `q`: (`incident_id` is that of an incident whose text matches, (how many do, exactly
    or more)), counted up to COUNT_LIMIT; with `counted` false (the list counts its rows itself, another filter
    being set) the count is None and stops at RANK_LIMIT + 1, all the choice below needs.

    The incident domain gets this through its text-filter hook, as it does not import this one. With many matches
    the list walks its own newest-first index and tests each incident (SQLite: membership in the set of matches,
    on `incident_id + 0`, which no index serves; PostgreSQL: its document by primary key); with few, the matches
    drive the lookup."""
    query = _query_text(session, _require_tokens(q))
    total = _count(session, query, DocKind.INCIDENT, (COUNT_LIMIT if counted else RANK_LIMIT) + 1)
    many = total > RANK_LIMIT
    if _is_postgres(session):
        if many:
            match = sa.text(f"search_document.tsv @@ {_TSQUERY}").bindparams(fts_query=query)
            return sa.exists().where(SearchDocument.id == 2 * incident_id, match), _counted(total) if counted else None
        ids = sa.text(f"SELECT target_id FROM search_document WHERE kind = 'incident' AND tsv @@ {_TSQUERY}")
    else:
        ids = sa.text(_FTS_IDS.replace("SELECT rowid", "SELECT rowid / 2") + _PARITY[DocKind.INCIDENT])
    ids = ids.bindparams(fts_query=query).columns(sa.column("id", sa.Integer))
    return ((incident_id + 0) if many else incident_id).in_(ids), _counted(total) if counted else None


def _counted(total: int) -> tuple[int, bool]:
    """(how many, exactly?) from a count that stopped at COUNT_LIMIT + 1."""
    return min(total, COUNT_LIMIT), total <= COUNT_LIMIT


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
    instead, and matches are counted up to COUNT_LIMIT only (the page says "more than"): a common word stays as
    fast as a rare one. Snippets are computed for the rows on the page only."""
    query = _query_text(session, _require_tokens(q))
    kind = _kind(kind)
    page = max(1, page)
    total = _count(session, query, kind, COUNT_LIMIT + 1)
    ids = _page_ids(session, query, kind, total <= RANK_LIMIT, per_page, (page - 1) * per_page) if total else []
    docs = {d.id: d for d in session.execute(
        sa.select(SearchDocument.id, SearchDocument.kind, SearchDocument.target_id, SearchDocument.incident_id,
                  SearchDocument.title, SearchDocument.created_at).where(SearchDocument.id.in_(ids)))}
    snippets = _snippets(session, query, ids)
    items = [Hit(kind=d.kind.value, id=d.target_id, incident_id=d.incident_id, ref=f"INC-{d.incident_id}",
                 title=d.title, snippet=mark(snippets.get(d.id, "")), created_at=d.created_at)
             for d in (docs[i] for i in ids if i in docs)]
    total, exact = _counted(total)
    return Page(items=items, page=page, per_page=per_page, total=total, at_least=not exact)


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
            f" FROM search_document, {_TSQUERY} AS q WHERE id IN :ids")
            .bindparams(sa.bindparam("ids", expanding=True)), {"fts_query": query, "opts": opts, "ids": ids})
    else:
        # Column -1: FTS5 picks the column (title or body) with the most matches. FTS5 answers `rowid IN (...)` by
        # running the query once per id, so it gets the page's id range, and SQLite keeps the page's ids (`+rowid`).
        rows = session.execute(sa.text(
            f"SELECT rowid, snippet(search_fts, -1, '{_OPEN}', '{_CLOSE}', ' … ', 24) FROM search_fts"
            " WHERE search_fts MATCH :fts_query AND rowid BETWEEN :lo AND :hi AND +rowid IN :ids")
            .bindparams(sa.bindparam("ids", expanding=True)),
            {"fts_query": query, "ids": ids, "lo": min(ids), "hi": max(ids)})
    return {doc_id: text or "" for doc_id, text in rows}


# --- keeping the index current -----------------------------------------------------------------------------------

def _agg(session: Session, expr: str) -> str:
    """Concatenate `expr` over rows, one per line (each database spells it its own way)."""
    if _is_postgres(session):
        return f"string_agg({expr}, E'\\n')"
    return f"group_concat({expr}, char(10))"


def _upsert(select_sql: str) -> str:
    return ("INSERT INTO search_document (id, kind, target_id, incident_id, created_at, title, body) " + select_sql +
            " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, title = excluded.title,"
            " body = excluded.body")


def _incident_sql(session: Session, where: str) -> str:
    notes = (f"(SELECT {_agg(session, 'e.body')} FROM timeline_entry e"
             " WHERE e.incident_id = i.id AND e.kind = 'note')")
    return _upsert("SELECT 2 * i.id, 'incident', i.id, i.id, i.created_at, i.title,"
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
    return _upsert("SELECT 2 * p.id + 1, 'postmortem', p.id, p.incident_id, p.created_at, p.title, " + body +
                   f" FROM postmortem p WHERE {where}").replace("char(10)", _newline(session))


def _newline(session: Session) -> str:
    return "chr(10)" if _is_postgres(session) else "char(10)"


def index_incidents(session: Session, incident_ids: list[int]) -> None:
    """Rebuild these incidents' documents from their rows (title; summary and notes)."""
    session.flush()  # the text statement below reads what the ORM has not written yet
    session.connection().execute(_by_ids(session, _incident_sql, "i"), {"ids": list(incident_ids)})


def index_postmortems(session: Session, postmortem_ids: list[int]) -> None:
    """Rebuild these post-mortems' documents (title; sections, contributing factors, action items)."""
    session.flush()
    session.connection().execute(_by_ids(session, _postmortem_sql, "p"), {"ids": list(postmortem_ids)})


_BY_IDS: dict[tuple[str, str], sa.TextClause] = {}


def _by_ids(session: Session, build, alias: str) -> sa.TextClause:
    """The rebuild of some documents by id, built once per database kind: an incident's declaration on the webhook
    path runs it, and building and cache-keying the text per call cost more than running it (issue 18)."""
    key = (session.get_bind().dialect.name, alias)
    if key not in _BY_IDS:
        _BY_IDS[key] = sa.text(build(session, f"{alias}.id IN :ids")).bindparams(sa.bindparam("ids", expanding=True))
    return _BY_IDS[key]


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
