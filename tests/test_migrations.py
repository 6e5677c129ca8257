"""The models and the migrations agree, and migrations build an empty database."""

import pytest
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


def _migrated_app(tmp_path, target: str):
    """An app on its own fresh SQLite database, migrated up to `target`."""
    from incidents import create_app
    from incidents.extensions import alembic

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'upgrade.sqlite3'}", "SECRET_KEY": "x",
                      "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        alembic.upgrade(target)
    return app


def _close(app) -> None:
    db.session.close()
    for engine in db.engines.values():
        engine.dispose()


def test_postmortem_defaults_upgrade_a_database_seeded_on_first_use(tmp_path):
    """Before revision 0010 a first read seeded the defaults through the ORM; admins then edited them. The upgrade
    adds nothing that exists by slug, keeps every edit and fills in only what is missing."""
    import sqlalchemy as sa

    from incidents.extensions import alembic
    from incidents.postmortem.models import FactorCategory, PostmortemTemplate
    from tests.seeds import POSTMORTEM_DEFAULTS, revision

    defaults = revision(POSTMORTEM_DEFAULTS)
    app = _migrated_app(tmp_path, "0009_session_version")
    with app.app_context():
        s = db.session
        # What the first read used to write: every built-in template and category (admins' edits follow).
        s.add_all(PostmortemTemplate(**row) for row in defaults.template_rows())
        s.add_all(FactorCategory(**row) for row in defaults.category_rows() if row["slug"] != "unknown")
        s.flush()
        light = s.scalar(sa.select(PostmortemTemplate).where(PostmortemTemplate.slug == "lightweight"))
        light.name, light.version, light.sections = "Quick review", 2, light.sections[:2]
        s.scalar(sa.select(FactorCategory).where(FactorCategory.slug == "process")).active = False
        s.add(PostmortemTemplate(slug="ops-review", name="Ops review", sections=light.sections[:1]))
        s.add(FactorCategory(slug="vendor", name="Vendor", position=9))
        s.commit()

        alembic.upgrade()

        templates = {t.slug: t for t in s.scalars(sa.select(PostmortemTemplate))}
        assert sorted(templates) == ["full-blameless", "lightweight", "ops-review", "pagerduty-style"]
        assert (templates["lightweight"].name, templates["lightweight"].version,
                len(templates["lightweight"].sections)) == ("Quick review", 2, 2)
        categories = {c.slug: c for c in s.scalars(sa.select(FactorCategory))}
        assert sorted(categories) == sorted({r["slug"] for r in defaults.category_rows()} | {"vendor"})
        assert not categories["process"].active  # retired by an admin: stays retired
        assert categories["unknown"].active and categories["unknown"].position == 6  # missing: added
        _close(app)


def test_postmortem_defaults_seed_a_database_never_used(tmp_path):
    import sqlalchemy as sa

    from incidents.extensions import alembic
    from incidents.postmortem.models import FactorCategory, PostmortemTemplate

    app = _migrated_app(tmp_path, "0009_session_version")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(PostmortemTemplate.id))) == 0
        db.session.rollback()
        alembic.upgrade()
        assert db.session.scalar(sa.select(sa.func.count(PostmortemTemplate.id))) == 3
        assert db.session.scalar(sa.select(sa.func.count(FactorCategory.id))) == 7
        _close(app)


def test_alert_sources_upgrade_a_database_with_integrations_and_alerts(tmp_path):
    """0011 adds the integration's secret, site URL and options and the alert's episode and tags to rows that
    exist: no secret, no site, no options, no episode, no tags; everything else as it was."""
    import sqlalchemy as sa

    from incidents.alert.models import Alert, Integration
    from incidents.extensions import alembic

    app = _migrated_app(tmp_path, "0010_postmortem_defaults")
    with app.app_context():
        with db.engine.begin() as conn:  # as the app wrote them at 0010: the columns of that time only
            conn.execute(sa.text(
                "INSERT INTO integration (id, source, name, token_hash, token_hint, active, created_at, updated_at)"
                " VALUES (1, 'rollbar', 'shop', :hash, 'abcd', 1, '2026-11-01 00:00:00', '2026-11-01 00:00:00')"),
                {"hash": "0" * 64})
            conn.execute(sa.text(
                "INSERT INTO alert (id, integration_id, source, fingerprint, title, description, status,"
                " first_seen_at, last_seen_at, occurrence_count, event_count, last_event, created_at, updated_at)"
                " VALUES (1, 1, 'rollbar', '42', 'Boom', '', 'open', '2026-11-01 00:00:00', '2026-11-02 00:00:00',"
                " 7, 9, 'occurrence', '2026-11-01 00:00:00', '2026-11-02 00:00:00')"))

        alembic.upgrade()

        integration = db.session.get(Integration, 1)
        assert (integration.name, integration.secret, integration.site_url, integration.options) == (
            "shop", None, None, {})
        alert = db.session.get(Alert, 1)
        assert (alert.fingerprint, alert.occurrence_count, alert.occurrence, alert.tags) == ("42", 7, None, [])
        alert.occurrence, alert.tags = "2026-11-30T00:00:00Z", ["team:core"]
        integration.options = {"severity_label": "priority"}
        db.session.commit()
        assert db.session.get(Alert, 1).tags == ["team:core"]
        _close(app)


def test_accounts_upgrade_a_database_with_users(tmp_path):
    """0017 gives existing users no OpenID identity (they keep their passwords) and starts with no invitation;
    afterwards two users can share no identity."""
    import sqlalchemy as sa

    from incidents.auth.models import Invitation, Role, User
    from incidents.extensions import alembic

    app = _migrated_app(tmp_path, "0014_slack")
    with app.app_context():
        with db.engine.begin() as conn:  # as the app wrote them at 0014
            for n in (1, 2):
                conn.execute(sa.text(
                    "INSERT INTO \"user\" (id, email, name, role, password_hash, active, created_at, session_version)"
                    " VALUES (:id, :email, 'U', 'admin', 'hash', 1, '2026-11-01 00:00:00', 3)"),
                    {"id": n, "email": f"u{n}@example.com"})

        alembic.upgrade()

        user = db.session.get(User, 1)
        assert (user.email, user.role, user.password_hash, user.session_version) == (
            "u1@example.com", Role.ADMIN, "hash", 3)
        assert (user.oidc_issuer, user.oidc_subject) == (None, None)
        assert db.session.scalar(sa.select(sa.func.count(Invitation.id))) == 0
        user.oidc_issuer, user.oidc_subject = "https://id.example.com", "abc"
        db.session.commit()
        other = db.session.get(User, 2)
        other.oidc_issuer, other.oidc_subject = "https://id.example.com", "abc"
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        _close(app)


def test_migrations_import_no_app_code():
    """A revision records what it did: importing the app would let a later change of the app rewrite it."""
    import ast

    from incidents import resource_path

    for path in sorted(resource_path("migrations").glob("*.py")):
        modules = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
        assert not {m for m in modules if m.split(".")[0] == "incidents"}, path.name


def _upgrade_url(tmp_path) -> str:
    """A scratch database of the run's kind: a SQLite file, or a PostgreSQL database beside the test one."""
    import os

    import sqlalchemy as sa

    url = os.environ.get("INCIDENTS_TEST_DATABASE_URL", "")
    if not url.startswith("postgres"):
        return f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
    base = sa.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{base.database}_upgrade"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def test_search_upgrade_indexes_existing_incidents_and_postmortems(tmp_path):
    """0015 indexes what exists at 0014, set-based: incidents with their notes (not other entries), post-mortems
    with sections, factors and action items; afterwards the subscribers keep it current."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from incidents import create_app
    from incidents.extensions import alembic
    from incidents.incident import services as incidents
    from incidents.search import services as search

    app = create_app({"DATABASE_URL": _upgrade_url(tmp_path), "SECRET_KEY": "x", "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        alembic.upgrade("0014_slack")
        at = {"at": datetime(2026, 11, 1, tzinfo=UTC)}

        def insert(conn, sql: str, **values) -> None:
            conn.execute(sa.text(sql).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True))), at | values)

        with db.engine.begin() as conn:  # as the app wrote them at 0014
            for iid, title, summary in ((1, "Replication lag on orders", "Writes piled up"),
                                        (2, "Checkout <errors>", "Cards declined")):
                insert(conn, "INSERT INTO incident (id, title, summary, severity, status, created_at, updated_at,"
                       " started_at, detected_at) VALUES (:id, :title, :summary, 'SEV2', 'resolved', :at, :at, :at,"
                       " :at)", id=iid, title=title, summary=summary)
            for kind, body in (("note", "Vacuum finished"), ("status", "Hippopotamus")):
                insert(conn, "INSERT INTO timeline_entry (incident_id, kind, occurred_at, created_at, text, body,"
                       " data) VALUES (1, :kind, :at, :at, 'x', :body, '{}')", kind=kind, body=body)
            insert(conn, "INSERT INTO postmortem (id, incident_id, template_slug, template_name, template_version,"
                   " status, title, created_at, updated_at, search_text) VALUES (1, 2, 'lightweight', 'Lightweight',"
                   " 1, 'draft', 'Checkout review', :at, :at, '')")
            insert(conn, "INSERT INTO postmortem_section (postmortem_id, key, position, title, guidance, kind,"
                   " required, body, version, updated_at) VALUES (1, 'summary', 0, 'Summary', '', 'markdown', false,"
                   " 'The token bucket drained', 1, :at)")
            insert(conn, "INSERT INTO contributing_factor (postmortem_id, category_id, description, created_at)"
                   " SELECT 1, min(id), 'Stale feature flag', :at FROM factor_category")
            insert(conn, "INSERT INTO action_item (postmortem_id, title, description, priority, status,"
                   " wont_do_reason, created_at, updated_at) VALUES (1, 'Alert on bucket', 'Page the owner', 'high',"
                   " 'open', '', :at, :at)")

        alembic.upgrade()

        s = db.session

        def found(q):
            return [(h.kind, h.id) for h in search.search(s, q).items]

        assert found("repl") == [("incident", 1)] and found("vacuum") == [("incident", 1)]
        assert found("hippopotamus") == []  # a status entry is not a note
        assert found("errors") == [("incident", 2)]
        for q in ("bucket drained", "stale flag", "page owner", "checkout review"):
            assert found(q) == [("postmortem", 1)], q
        assert search.search(s, "declined").items[0].snippet == "Cards <mark>declined</mark>"
        incidents.add_note(s, s.get(incidents.Incident, 2), "Walrus in the rack")
        s.commit()
        assert found("walrus") == [("incident", 2)]
        _close(app)
    _drop_upgrade_database(app.config["DATABASE_URL"])


def _drop_upgrade_database(url: str) -> None:
    import sqlalchemy as sa

    if url.startswith("postgres"):
        target = sa.engine.make_url(url)
        engine = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}"')
        engine.dispose()


def test_insights_columns_upgrade_keeps_every_duration_and_the_index_covers(tmp_path):
    """0019 turns SQLite's virtual duration columns into plain ones written by triggers: the values of incidents
    that exist at 0018 are the same afterwards, new and edited incidents get theirs from the triggers, and the
    insights index now covers a query of the durations (PostgreSQL keeps its stored columns)."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from incidents import create_app
    from incidents.extensions import alembic

    names = ("id", "seconds_to_detect", "seconds_to_acknowledge", "seconds_to_mitigate", "seconds_to_resolve")
    durations = sa.select(*map(sa.column, names)).select_from(sa.table("incident")).order_by(sa.column("id"))
    app = create_app({"DATABASE_URL": _upgrade_url(tmp_path), "SECRET_KEY": "x", "INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        alembic.upgrade("0018_audit")
        t0 = datetime(2026, 11, 1, 9, 0, 0, 250000, tzinfo=UTC)
        moment = sa.DateTime(timezone=True)
        insert = sa.text("INSERT INTO incident (id, title, summary, severity, status, created_at, updated_at,"
                         " started_at, detected_at, acknowledged_at, mitigated_at, resolved_at) VALUES (:id, 't',"
                         " '', 'SEV2', 'resolved', :s, :s, :s, :d, :a, :m, :r)").bindparams(
            *(sa.bindparam(k, type_=moment) for k in "sdamr"))
        with db.engine.begin() as conn:
            conn.execute(insert, [
                {"id": 1, "s": t0, "d": t0 + timedelta(seconds=90.9), "a": t0 + timedelta(seconds=60),
                 "m": t0 + timedelta(minutes=30), "r": t0 + timedelta(hours=2, microseconds=999999)},
                {"id": 2, "s": t0, "d": t0, "a": None, "m": None, "r": None}])
            before = conn.execute(durations).all()
        assert [tuple(r) for r in before] == [(1, 90, 0, 1800, 7200), (2, 0, None, None, None)]

        alembic.upgrade()

        with db.engine.begin() as conn:
            assert conn.execute(durations).all() == before
            conn.execute(insert, [{"id": 3, "s": t0, "d": t0 + timedelta(seconds=5), "a": None, "m": None,
                                   "r": None}])
            conn.execute(sa.text("UPDATE incident SET acknowledged_at = :a WHERE id = 2").bindparams(
                sa.bindparam("a", type_=moment)), {"a": t0 + timedelta(seconds=42.5)})
            after = conn.execute(durations.where(sa.column("id") > 1)).all()
            assert [tuple(r) for r in after] == [(2, 0, 42, None, None), (3, 5, None, None, None)]
            if conn.dialect.name == "sqlite":
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT severity, seconds_to_resolve / 60, count(*) FROM incident"
                    " INDEXED BY ix_incident_insights WHERE started_at >= '2026-01-01' GROUP BY 1, 2").all()
                assert any("COVERING INDEX ix_incident_insights" in row[-1] for row in plan), plan
        _close(app)
    _drop_upgrade_database(app.config["DATABASE_URL"])
