"""The models and the migrations agree, and migrations build an empty database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from incidents.database import Base, include_in_migrations
from incidents.extensions import db


def test_models_match_migrations(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": include_in_migrations})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_healthz_checks_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_title_search_uses_trigram_index_on_postgresql(app):
    import pytest
    import sqlalchemy as sa

    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL-only index")
    with db.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'incident'"))
        names = {row[0] for row in rows}
    assert "ix_incident_title_trgm" in names
