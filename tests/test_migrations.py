"""The models and the migrations agree, and migrations build an empty database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from incidents.database import Base
from incidents.extensions import db


def test_models_match_migrations(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_healthz_checks_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
