"""`incidents demo` leaves a debt history worth a dashboard: weeks of opened, repaid, written off and overdue
items, and a repeat incident."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from incidents.demo import load_demo
from incidents.report.queries import build_ledger

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_demo_has_twelve_weeks_of_debt_and_a_repeat_incident(session):
    summary = load_demo(session, now=NOW)
    session.commit()
    assert "action items" in summary and "repeats: INC-" in summary
    ledger = build_ledger(session, now=NOW, tz=ZoneInfo("UTC"), weeks=12)
    assert len(ledger.opened) >= 30 and len(ledger.repaid) >= 10 and ledger.written_off_reasons()
    assert ledger.overdue and ledger.open_points > 0
    assert sum(1 for w in ledger.weeks if w.opened) >= 6  # spread over the weeks, not one burst
    assert all(i.created_at <= NOW and (i.closed_at is None or i.created_at <= i.closed_at <= NOW)
               for i in ledger.items)
    assert any("still open from" in f.text for f in ledger.repeats)
