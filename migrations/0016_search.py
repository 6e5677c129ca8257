"""search: one document per incident and per post-mortem, full-text indexed.

`search_document` (id: twice the incident's id, or twice the post-mortem's plus one) holds each incident's text
(title; summary and notes) and each post-mortem's (title; sections, contributing factors, action items). SQLite
indexes it with the FTS5 table `search_fts` (external content, kept in step by triggers); PostgreSQL with the
generated tsvector column `tsv` (title weight A, body B) and a GIN index. Existing rows are indexed here, set-based
(one INSERT ... SELECT per kind; the full-text index is built once afterwards rather than row by row).
The list's tag filter needs no new index: it walks ix_incident_created and probes incident_tag's primary key
(incidents.incident.services.list_incidents).

Revision ID: 0016_search
Revises: 0015_insights
Create Date: 2026-11-30 06:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0016_search'
down_revision: str | Sequence[str] | None = '0015_insights'
branch_labels: str | Sequence[str] | None = ()
depends_on: str | Sequence[str] | None = None


def _backfill(pg: bool) -> None:
    agg = (lambda e: f"string_agg({e}, E'\\n')") if pg else (lambda e: f"group_concat({e}, char(10))")
    nl = "chr(10)" if pg else "char(10)"
    notes = f"(SELECT {agg('e.body')} FROM timeline_entry e WHERE e.incident_id = i.id AND e.kind = 'note')"
    op.execute(
        "INSERT INTO search_document (id, kind, target_id, incident_id, created_at, title, body)"
        f" SELECT 2 * i.id, 'incident', i.id, i.id, i.created_at, i.title, coalesce(i.summary, '') || coalesce({nl} || {notes}, '')"
        " FROM incident i")
    item_text = "a.title || ' ' || a.description"
    parts = [
        f"(SELECT {agg('s.body')} FROM postmortem_section s WHERE s.postmortem_id = p.id AND s.body <> '')",
        f"(SELECT {agg('f.description')} FROM contributing_factor f WHERE f.postmortem_id = p.id"
        " AND f.description <> '')",
        f"(SELECT {agg(item_text)} FROM action_item a"
        " WHERE a.postmortem_id = p.id)",
    ]
    body = f" || {nl} || ".join(f"coalesce({p}, '')" for p in parts)
    op.execute("INSERT INTO search_document (id, kind, target_id, incident_id, created_at, title, body)"
               f" SELECT 2 * p.id + 1, 'postmortem', p.id, p.incident_id, p.created_at, p.title, {body} FROM postmortem p")


def upgrade() -> None:
    """Upgrade schema."""
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        'search_document',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('kind', sa.Enum('incident', 'postmortem', name='dockind', native_enum=False, length=20),
                  nullable=False),
        sa.Column('target_id', sa.Integer(), nullable=False),
        sa.Column('incident_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], name=op.f('fk_search_document_incident_id_incident'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_search_document')),
    )
    if pg:
        # PostgreSQL's parser reads <...> as an HTML tag and skips it (and whole <script> elements): angle
        # brackets become look-alikes first, so "p99 <500ms" or "<script>" in a title are still words.
        op.execute("ALTER TABLE search_document ADD COLUMN tsv tsvector GENERATED ALWAYS AS"
                   " (setweight(to_tsvector('simple', translate(title, '<>', '‹›')), 'A')"
                   " || setweight(to_tsvector('simple', translate(body, '<>', '‹›')), 'B')) STORED")
    _backfill(pg)
    # Indexes after the rows: one sorted build instead of a million inserts into each.
    op.create_index('ix_search_document_kind_created', 'search_document', ['kind', 'created_at', 'id'])
    op.create_index('ix_search_document_created', 'search_document', ['created_at', 'id'])
    op.create_index(op.f('ix_search_document_incident_id'), 'search_document', ['incident_id'])
    if pg:
        op.execute("CREATE INDEX ix_search_document_tsv ON search_document USING gin (tsv)")
        op.execute("ANALYZE search_document")
    else:
        op.execute("CREATE VIRTUAL TABLE search_fts USING fts5(title, body, content='search_document',"
                   " content_rowid='id', tokenize='unicode61')")
        op.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
        op.execute("CREATE TRIGGER search_document_ai AFTER INSERT ON search_document BEGIN"
                   " INSERT INTO search_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END")
        op.execute("CREATE TRIGGER search_document_ad AFTER DELETE ON search_document BEGIN"
                   " INSERT INTO search_fts(search_fts, rowid, title, body)"
                   " VALUES ('delete', old.id, old.title, old.body); END")
        op.execute("CREATE TRIGGER search_document_au AFTER UPDATE ON search_document BEGIN"
                   " INSERT INTO search_fts(search_fts, rowid, title, body)"
                   " VALUES ('delete', old.id, old.title, old.body);"
                   " INSERT INTO search_fts(rowid, title, body) VALUES (new.id, new.title, new.body); END")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("search_document_ai", "search_document_ad", "search_document_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS search_fts")
    op.drop_table('search_document')
