"""incidents/prepared.py: a statement run on the cursor stores and returns what `Connection.execute` would, on
SQLite and PostgreSQL alike, and refuses the statements it could not run faithfully."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from incidents.alert import services
from incidents.alert.models import Alert, AlertStatus, Delivery, Outcome
from incidents.alert.services import processing
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, Status, TimelineEntry
from incidents.prepared import Prepared
from tests.factories import make_incident

AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


def _delivery(integration_id: int, key: str, **changes) -> dict:
    return dict(integration_id=integration_id, source="opsgenie", received_at=AT, event="Create",
                outcome=Outcome.PROCESSED, error="", dedup_key=key, body='{"a": 1}',
                headers={"user-agent": "x", "n": [1, 2]}, alert_id=None, replayed_at=None) | changes


@pytest.fixture
def integration(session):
    integration, _token = services.create_integration(session, source="opsgenie", name="prepared")
    session.commit()
    return integration


def _stored(session, delivery_id: int) -> tuple:
    """The row as the database holds it (no type processing), id and key aside."""
    c = Delivery.__table__.c
    columns = [col for col in Delivery.__table__.columns if col.name not in ("id", "dedup_key")]
    row = session.connection().execute(
        sa.select(*[sa.type_coerce(col, sa.String) if col.name != "headers" else col for col in columns])
        .where(c.id == delivery_id)).one()
    return tuple(row)


def test_a_prepared_insert_stores_what_core_stores_and_returns_its_id(session, integration):
    prepared = processing._delivery_insert(session.get_bind().dialect.name)
    through_cursor = prepared.execute(session, _delivery(integration.id, "k1")).scalar()
    through_core = session.connection().execute(prepared.statement, _delivery(integration.id, "k2")).scalar()
    session.commit()
    assert isinstance(through_cursor, int) and through_cursor != through_core
    assert _stored(session, through_cursor) == _stored(session, through_core)
    row = session.get(Delivery, through_cursor)
    assert row.received_at == AT and row.outcome == Outcome.PROCESSED
    assert row.headers == {"user-agent": "x", "n": [1, 2]}
    # ON CONFLICT DO NOTHING: the same key again returns no row, which is how a sender's retry is told apart.
    assert prepared.execute(session, _delivery(integration.id, "k1")).scalar() is None


def test_a_prepared_upsert_returns_processed_rows_and_applies_its_literal_binds(session, integration):
    upsert = processing._alert_upsert(session.get_bind().dialect.name, True, True)
    values = dict(integration_id=integration.id, source="opsgenie", fingerprint="fp", external_id="e1", title="t",
                  description="", severity="P2", status=AlertStatus.OPEN, environment=None, link=None,
                  first_seen_at=AT, last_seen_at=AT, occurrence_count=1, event_count=1, last_event="Create",
                  incident_id=None, closed_at=None, occurrence=None, tags=[], created_at=AT, updated_at=AT)
    first = upsert.execute(session, values).one()
    later = AT + timedelta(minutes=1)
    second = upsert.execute(session, values | {"status": AlertStatus.ACKNOWLEDGED, "last_seen_at": later}).one()
    assert first.id == second.id and (first.event_count, second.event_count) == (1, 2)  # the `+ 1` of the update
    assert second.occurrence_count == 2 and second.incident_id is None
    assert type(second.status) is AlertStatus and second.status == AlertStatus.ACKNOWLEDGED  # result processor
    session.commit()
    alert = session.get(Alert, first.id)
    assert alert.last_seen_at == later and alert.status == AlertStatus.ACKNOWLEDGED


def test_a_prepared_insert_select_fills_constant_defaults_and_counts_its_rows(session):
    opened, also_open, resolved = make_incident(), make_incident(), make_incident()
    incidents.resolve_incident(session, resolved)
    session.commit()
    targets = sa.select(Incident.id).where(Incident.status != Status.RESOLVED, Incident.status != Status.CLOSED)
    written = incidents.add_timeline_entries_where(session, targets, EntryKind.ALERT, "checked", occurred_at=AT,
                                                   data={"n": 1})
    session.commit()
    assert written == 2
    rows = session.scalars(sa.select(TimelineEntry).where(TimelineEntry.text == "checked")
                           .order_by(TimelineEntry.incident_id)).all()
    assert [r.incident_id for r in rows] == sorted([opened.id, also_open.id])
    assert all(r.pinned is False and r.data == {"n": 1} and r.occurred_at == AT for r in rows)


def test_database_errors_are_sqlalchemys_and_the_session_recovers(session, integration):
    prepared = processing._delivery_insert(session.get_bind().dialect.name)
    with pytest.raises(sa.exc.IntegrityError):
        prepared.execute(session, _delivery(integration.id, "k3", body=None))  # NOT NULL
    session.rollback()
    assert prepared.execute(session, _delivery(integration.id, "k3")).scalar() is not None
    session.commit()


def test_statements_it_cannot_run_faithfully_are_refused(session):
    expanding = Prepared(sa.select(Incident.id).where(Incident.id.in_([1, 2])))
    with pytest.raises(ValueError, match="expanding IN"):
        expanding.execute(session, {})
    table = sa.Table("prepared_probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("at", sa.DateTime, default=lambda: AT.replace(tzinfo=None)))
    with pytest.raises(ValueError, match="default"):
        Prepared(sa.insert(table)).execute(session, {"id": 1})


def test_the_engines_cursor_events_see_a_prepared_statement(session, integration):
    from incidents.extensions import db

    seen = []

    def before(_conn, _cursor, statement, parameters, context, executemany):
        seen.append(("before", statement.split()[0], context, executemany))

    def after(_conn, _cursor, statement, *_args):
        seen.append(("after", statement.split()[0]))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    sa.event.listen(db.engine, "after_cursor_execute", after)
    try:
        processing._delivery_insert(session.get_bind().dialect.name).execute(session, _delivery(integration.id, "k4"))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)
        sa.event.remove(db.engine, "after_cursor_execute", after)
    assert seen[-2:] == [("before", "INSERT", None, False), ("after", "INSERT")]
