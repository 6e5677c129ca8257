"""A hand-built debt history with known weekly figures, shared by the ledger, report and view tests.

Report time zone UTC; "now" is Wednesday 2026-11-25 12:00 (ISO week 2026-W48). Weeks W45..W48:

    item  created       due     closed                    estimate  owner
    a     Mon Nov 2     Nov 10  done Thu Nov 12 (W46)      1         rita
    b     Tue Nov 3     Nov 14  open                       8         rita   overdue since Nov 15
    c     Tue Nov 10    Dec 20  won't do Wed Nov 18 (W47)  3         sam    "Replaced by the platform rewrite"
    d     Tue Nov 17    Dec 2   open                       5         sam    due in W49
    e     Tue Nov 24    Dec 4   done Wed Nov 25 10:00      2         sam    (W48, before now)
    f     Tue Nov 24    Nov 24  open                       1         sam    overdue since Nov 25
    g     (Search team) Nov 4   Nov 5   open               -         rita   (outside the Payments scope)

Week  opened  repaid  written off  balance (end)  overdue (end)
W45   a b     -       -            a b   (2)      -
W46   c       a       -            b c   (2)      b
W47   d       -       c            b d   (2)      b
W48   e f     e       -            b d f (3)      b f            (as of now)

Incidents: INC-x "Checkout timeouts" on checkout (Sun Nov 1, post-mortem with a..f);
INC-repeat on checkout, declared Fri Nov 20 (W47): b and d were open then -> "repeat, 2 items still open".
INC-fp on the Search team's service, Mon Nov 23 (W48), fired by an alert with the fingerprint of INC-x's alert:
b, d open then (c written off Nov 18) -> "repeat, 2 items still open" (same alert fingerprint).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from incidents.action_item import services as items
from incidents.alert.models import Alert, Integration, Source
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.postmortem import services as pm_services
from tests.factories import make_service, make_team, make_user

UTC_TZ = ZoneInfo("UTC")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


def _incident(title: str, service, when: datetime, severity: str = "SEV2", ack_minutes: int = 5,
              resolve_minutes: int | None = 90):
    inc = incidents.create_incident(db.session, title=title, severity=severity, service_id=service.id,
                                    started_at=when - timedelta(minutes=10), detected_at=when)
    inc.created_at = when
    incidents.acknowledge_incident(db.session, inc, at=when + timedelta(minutes=ack_minutes))
    if resolve_minutes is not None:
        incidents.resolve_incident(db.session, inc, at=when + timedelta(minutes=resolve_minutes - 10))
    db.session.flush()
    return inc


def _alert(integration: Integration, incident, fingerprint: str, when: datetime) -> None:
    db.session.add(Alert(integration_id=integration.id, source=integration.source, fingerprint=fingerprint,
                         title=f"Alert {fingerprint}", first_seen_at=when, last_seen_at=when, incident_id=incident.id,
                         status="resolved"))


def build_history() -> dict:
    s = db.session
    payments = make_team(name="Payments", slug="payments")
    search = make_team(name="Search", slug="search")
    checkout = make_service(name="Checkout API", slug="checkout", team_id=payments.id)
    indexer = make_service(name="Search Indexer", slug="indexer", team_id=search.id)
    rita = make_user(email="rita@example.com", name="Rita Responder")
    sam = make_user(email="sam@example.com", name="Sam Owner")

    source = _incident("Checkout timeouts", checkout, at(11, 1), severity="SEV1")
    integration = Integration(source=Source.ROLLBAR, name="shop", token_hash="x" * 64)
    s.add(integration)
    s.flush()
    _alert(integration, source, "fp-checkout-timeout", at(11, 1))
    pm = pm_services.start_postmortem(s, source, "lightweight")

    def item(key, created, due, estimate, owner):
        return items.create_action_item(s, pm, title=f"Item {key}", due_date=due, estimate=estimate,
                                        owner_id=owner.id, type="prevent", at=created)

    a = item("a", at(11, 2), date(2026, 11, 10), 1, rita)
    b = item("b", at(11, 3), date(2026, 11, 14), 8, rita)
    c = item("c", at(11, 10), date(2026, 12, 20), 3, sam)
    d = item("d", at(11, 17), date(2026, 12, 2), 5, sam)
    e = item("e", at(11, 24), date(2026, 12, 4), 2, sam)
    f = item("f", at(11, 24), date(2026, 11, 24), 1, sam)
    items.update_action_item(s, a, status="done", at=at(11, 12))
    items.update_action_item(s, c, status="wont_do", wont_do_reason="Replaced by the platform rewrite",
                             at=at(11, 18))
    items.update_action_item(s, e, status="done", at=at(11, 25, 10))

    other = _incident("Indexer lag", indexer, at(11, 4), severity="SEV3")
    other_pm = pm_services.start_postmortem(s, other, "lightweight")
    g = items.create_action_item(s, other_pm, title="Item g", due_date=date(2026, 11, 5), owner_id=rita.id,
                                 at=at(11, 4))

    repeat = _incident("Checkout timeouts again", checkout, at(11, 20), severity="SEV2", ack_minutes=12,
                       resolve_minutes=None)
    by_fp = _incident("Indexer cannot reach checkout", indexer, at(11, 23), severity="SEV3", ack_minutes=3)
    _alert(integration, by_fp, "fp-checkout-timeout", at(11, 23))
    s.commit()
    return {"payments": payments, "search": search, "checkout": checkout, "indexer": indexer, "rita": rita,
            "sam": sam, "source": source, "repeat": repeat, "by_fp": by_fp, "other": other,
            "items": {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g}}
