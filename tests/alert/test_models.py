"""The schema itself refuses a second open alert per fingerprint: the guarantee is not in Python."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from incidents.alert.models import Alert, AlertStatus
from incidents.database import utcnow
from incidents.extensions import db
from tests.alert.conftest import make_integration


def _alert(integration_id: int, status: AlertStatus, fingerprint: str = "fp") -> Alert:
    now = utcnow()
    return Alert(integration_id=integration_id, source="rollbar", fingerprint=fingerprint, title="t", status=status,
                 first_seen_at=now, last_seen_at=now)


def test_one_open_alert_per_fingerprint_is_a_database_constraint(app):
    integration, _ = make_integration("rollbar", "schema")
    other, _ = make_integration("rollbar", "other")
    db.session.add_all([_alert(integration.id, AlertStatus.RESOLVED), _alert(integration.id, AlertStatus.CLOSED),
                        _alert(integration.id, AlertStatus.OPEN), _alert(other.id, AlertStatus.OPEN),
                        _alert(integration.id, AlertStatus.OPEN, "another")])
    db.session.commit()  # closed ones and other integrations never clash
    for status in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED):
        db.session.add(_alert(integration.id, status))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(Alert.id))) == 5
