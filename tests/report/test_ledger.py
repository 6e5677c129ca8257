"""The ledger's figures against the hand-built history of tests/report/history.py."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from incidents.action_item import services as items
from incidents.report.queries import Week, build_ledger, repeat_flags
from tests.report.history import NOW, UTC_TZ, at


def ids(history, rows) -> list[str]:
    names = {v.id: k for k, v in history["items"].items()}
    return sorted(names[i.id] for i in rows)


def ledger(session, history, **kw):
    return build_ledger(session, now=NOW, tz=UTC_TZ, weeks=4, team_id=history["payments"].id, **kw)


def test_weeks_are_iso_weeks_in_the_report_time_zone():
    week = Week.parse("2026-W48", UTC_TZ)
    assert (week.monday.isoformat(), week.label, str(week.previous())) == ("2026-11-23", "2026-W48", "2026-W47")
    assert week.start == datetime(2026, 11, 23, tzinfo=UTC) and week.end == datetime(2026, 11, 30, tzinfo=UTC)
    assert Week.containing(NOW, UTC_TZ) == week
    tokyo = Week.parse("2026-W48", ZoneInfo("Asia/Tokyo"))
    assert tokyo.start == datetime(2026, 11, 22, 15, tzinfo=UTC)  # Monday 00:00 in Tokyo
    # Sunday 23:30 UTC is already Monday in Tokyo.
    assert Week.containing(datetime(2026, 11, 22, 23, 30, tzinfo=UTC), ZoneInfo("Asia/Tokyo")).label == "2026-W48"
    with pytest.raises(ValueError):
        Week.parse("2026-48", UTC_TZ)


def test_weekly_figures_of_a_hand_built_history(session, history):
    led = ledger(session, history)
    table = [(w.week.label, ids(history, w.opened), ids(history, w.repaid), ids(history, w.written_off),
              ids(history, w.balance), ids(history, w.overdue)) for w in led.weeks]
    assert table == [
        ("2026-W45", ["a", "b"], [], [], ["a", "b"], []),
        ("2026-W46", ["c"], ["a"], [], ["b", "c"], ["b"]),
        ("2026-W47", ["d"], [], ["c"], ["b", "d"], ["b"]),
        ("2026-W48", ["e", "f"], ["e"], [], ["b", "d", "f"], ["b", "f"]),
    ]
    assert [w.balance_points for w in led.weeks] == [9, 11, 13, 14]


def test_balance_ages_rate_and_owners(session, history):
    led = ledger(session, history)
    assert ids(history, led.open_items) == ["b", "d", "f"] and led.open_points == 14
    assert ids(history, led.overdue) == ["b", "f"]
    assert led.median_age_days == 8  # f 1 day, d 8 days, b 22 days
    assert led.oldest.id == history["items"]["b"].id and led.oldest.age_days(NOW) == 22
    assert led.repayment_rate() == pytest.approx(2 / 6)  # a and e repaid, a..f opened over the 4 weeks
    assert led.repayment_rate(weeks_back=1) == pytest.approx(1 / 4)  # W44..W47: a repaid of a, b, c, d
    assert [(label, ids(history, rows)) for label, rows in led.aging()] == [
        ("0–7 days", ["f"]), ("8–30 days", ["b", "d"]), ("31–90 days", []), ("over 90 days", [])]
    assert [(o.name, ids(history, o.items)) for o in led.overdue_by_owner()] == [
        ("Rita Responder", ["b"]), ("Sam Owner", ["f"])]
    assert [(i.title, i.wont_do_reason) for i in led.written_off_reasons()] == [
        ("Item c", "Replaced by the platform rewrite")]


def test_every_figure_names_its_items(session, history):
    led = ledger(session, history)
    assert ids(history, led.figure("opened")) == ["a", "b", "c", "d", "e", "f"]
    assert ids(history, led.figure("repaid")) == ["a", "e"]
    assert ids(history, led.figure("written_off")) == ["c"]
    assert ids(history, led.figure("balance")) == ["b", "d", "f"]
    assert ids(history, led.figure("overdue", week="2026-W46")) == ["b"]
    assert ids(history, led.figure("age:1")) == ["b", "d"]
    assert ids(history, led.figure(f"owner:{history['sam'].id}")) == ["f"]
    assert led.figure("nonsense") == [] and led.figure("opened", week="1999-W01") == []


def test_scopes_team_service_and_everything(session, history):
    everything = build_ledger(session, now=NOW, tz=UTC_TZ, weeks=4)
    assert ids(history, everything.open_items) == ["b", "d", "f", "g"]
    assert ids(history, everything.overdue) == ["b", "f", "g"]
    search = build_ledger(session, now=NOW, tz=UTC_TZ, weeks=4, team_id=history["search"].id)
    assert ids(history, search.open_items) == ["g"] and search.repayment_rate() == 0
    by_service = build_ledger(session, now=NOW, tz=UTC_TZ, weeks=4, service_id=history["checkout"].id)
    assert ids(history, by_service.open_items) == ["b", "d", "f"]
    assert everything.by("team_id") == {history["payments"].id: {"open": 3, "points": 14, "overdue": 2},
                                        history["search"].id: {"open": 1, "points": 0, "overdue": 1}}


def test_a_past_week_is_seen_as_it_was(session, history):
    led = ledger(session, history, until=Week.parse("2026-W46", UTC_TZ))
    assert [w.week.label for w in led.weeks] == ["2026-W43", "2026-W44", "2026-W45", "2026-W46"]
    assert ids(history, led.open_items) == ["b", "c"] and ids(history, led.overdue) == ["b"]
    assert led.repayment_rate() == pytest.approx(1 / 3)


def test_reopening_an_item_puts_it_back_on_the_ledger(session, history):
    a = history["items"]["a"]
    items.update_action_item(session, a, status="open", at=at(11, 24))
    session.commit()
    assert a.closed_at is None
    led = ledger(session, history)
    assert ids(history, led.open_items) == ["a", "b", "d", "f"]
    assert ids(history, led.repaid) == ["e"]


def test_repeat_incidents_count_the_items_open_when_they_were_declared(session, history):
    flags = repeat_flags(session, [history["repeat"], history["by_fp"], history["source"], history["other"]])
    src = history["source"]
    [repeat] = flags[history["repeat"].id]
    assert (repeat.source_id, repeat.open_items, repeat.reasons) == (src.id, 2, ("same service",))
    assert repeat.text == f"repeat, 2 items still open from {src.ref}"
    # The indexer incident repeats its own service's earlier incident (g still open) and, through the
    # alert fingerprint, the checkout incident: most recent source first.
    same_service, by_fp = flags[history["by_fp"].id]
    assert (same_service.source_id, same_service.open_items) == (history["other"].id, 1)
    assert same_service.text == f"repeat, 1 item still open from {history['other'].ref}"
    assert (by_fp.source_id, by_fp.open_items, by_fp.reasons) == (src.id, 2, ("same alert fingerprint",))
    assert src.id not in flags and history["other"].id not in flags
    led = ledger(session, history)
    assert [(f.incident_id, f.source_id) for f in led.repeats] == [(history["repeat"].id, src.id)]


def test_items_carry_the_card_link_of_their_shortcut_export(session, history):
    from incidents.report.queries import load_items
    from incidents.tracker.models import ExportStatus, ShortcutExport

    item = next(iter(history["items"].values()))
    session.add(ShortcutExport(action_item_id=item.id, status=ExportStatus.SENT, story_id=77,
                               story_url="https://app.shortcut.com/acme/story/77"))
    session.commit()
    cards = {i.id: i.card_url for i in load_items(session)}
    assert cards[item.id] == "https://app.shortcut.com/acme/story/77"
    assert sum(url is not None for url in cards.values()) == 1
