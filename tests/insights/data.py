"""A small data set whose every insight figure is worked out by hand in the tests (tests/insights/*).

The period is 2026-01-05 (a Monday) to 2026-02-01 (a Sunday), both included: ISO weeks 2026-W02..W05.
Durations per incident, in seconds (ttd, tta, ttm, ttr; None = milestone not reached):

    ref  sev   service   team  source        started            ttd    tta   ttm   ttr   repeat of
    I1   SEV1  api       core  alertmanager  01-05 10:00          60   120   600  1200
    I2   SEV1  api       core  manual        01-06 10:00          60   300  1800  3600
    I3   SEV2  db        core  manual        01-12 10:00         120    60   900  1800
    I4   SEV2  db        core  grafana       01-13 10:00         120    60   900  None  I3
    I5   SEV2  frontend  web   manual        01-19 10:00         300   600  None  None
    I6   SEV3  frontend  web   alertmanager  01-20 10:00           0  None  None  None
    I7   SEV3  api       core  manual        01-26 10:00         600    60  1200  2400  I1
    I8   SEV3  frontend  web   alertmanager  02-01 23:59:59       30    30   300   600
    I11  SEV3  (none)    (none) manual       01-27 10:00:00.1   60.9   1.0  61.0  61.0
    I9   SEV1  db        core  manual        02-02 00:00 (after the period)
    I10  SEV2  api       core  manual        01-04 23:59:59 (before it)

Teams: core (api "API", db "Database"), web (frontend "Frontend"), data (etl "ETL", no incidents).
Post-mortems: I1 published 1 day after resolution (factors change, dependency); I3 published 3 days after
(factors change twice); I7 published 2 days after (dependency); I2 in review (dependency: not counted); I6 draft;
I9 published (change; outside the period).
Action items: on I1 A1 done on its due date (prevent, 14 days), A2 done late (detect, 9 days), A3 open overdue
(repair); on I3 A4 won't do (process, due in 2020), A5 in progress due 2099 (repair), A6 done without a due date
(mitigate, 3 days); on I2 A7 open overdue (prevent); on I6 A8 open overdue (detect); on I9 A9 open overdue.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from incidents.action_item.models import ActionItem, ItemStatus, ItemType
from incidents.catalog.models import Service, Team
from incidents.extensions import db
from incidents.incident.models import Incident, Severity, Status
from incidents.postmortem.models import ContributingFactor, FactorCategory, Postmortem, PostmortemStatus

SINCE, UNTIL = "2026-01-05", "2026-02-01"
PERIOD = f"since={SINCE}&until={UNTIL}"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _incident(key, sev, service, team, source, started, ttd, tta=None, ttm=None, ttr=None, repeat_of=None):
    s = at(started)
    detected = s + timedelta(seconds=ttd)
    acknowledged = detected + timedelta(seconds=tta) if tta is not None else None
    mitigated = s + timedelta(seconds=ttm) if ttm is not None else None
    resolved = s + timedelta(seconds=ttr) if ttr is not None else None
    status = (Status.RESOLVED if resolved else Status.MITIGATED if mitigated else
              Status.ACKNOWLEDGED if acknowledged else Status.TRIGGERED)
    return Incident(title=f"{key} {service.name if service else 'no service'}", severity=Severity(sev), status=status,
                    service=service, team=team, source=source, started_at=s, detected_at=detected,
                    acknowledged_at=acknowledged, mitigated_at=mitigated, resolved_at=resolved,
                    repeat_of=repeat_of, created_at=detected)


def _postmortem(incident, status, published_days=None):
    published = incident.resolved_at + timedelta(days=published_days) if published_days is not None else None
    pm = Postmortem(incident=incident, template_slug="standard", template_name="Standard", template_version=1,
                    status=status, title=f"Post-mortem {incident.title}", published_at=published)
    db.session.add(pm)
    return pm


def _item(pm, title, status, type_, due, created, closed=None):
    item = ActionItem(postmortem=pm, title=title, status=status, type=type_, due_date=due, created_at=at(created),
                      closed_at=at(closed) if closed else None)
    db.session.add(item)
    return item


def build() -> dict:
    """Write the data set; returns the incidents by key (I1..I11) and the catalogue rows."""
    core, web, data = Team(slug="core", name="Core"), Team(slug="web", name="Web"), Team(slug="data", name="Data")
    api = Service(slug="api", name="API", team=core)
    dbs = Service(slug="db", name="Database", team=core)
    frontend = Service(slug="frontend", name="Frontend", team=web)
    etl = Service(slug="etl", name="ETL", team=data)
    db.session.add_all([core, web, data, api, dbs, frontend, etl])
    i = {}
    i["I1"] = _incident("I1", "SEV1", api, core, "alertmanager", "2026-01-05T10:00:00", 60, 120, 600, 1200)
    i["I2"] = _incident("I2", "SEV1", api, core, "manual", "2026-01-06T10:00:00", 60, 300, 1800, 3600)
    i["I3"] = _incident("I3", "SEV2", dbs, core, "manual", "2026-01-12T10:00:00", 120, 60, 900, 1800)
    i["I4"] = _incident("I4", "SEV2", dbs, core, "grafana", "2026-01-13T10:00:00", 120, 60, 900, None,
                        repeat_of=i["I3"])
    i["I5"] = _incident("I5", "SEV2", frontend, web, "manual", "2026-01-19T10:00:00", 300, 600)
    i["I6"] = _incident("I6", "SEV3", frontend, web, "alertmanager", "2026-01-20T10:00:00", 0)
    i["I7"] = _incident("I7", "SEV3", api, core, "manual", "2026-01-26T10:00:00", 600, 60, 1200, 2400,
                        repeat_of=i["I1"])
    i["I8"] = _incident("I8", "SEV3", frontend, web, "alertmanager", "2026-02-01T23:59:59", 30, 30, 300, 600)
    i["I11"] = _incident("I11", "SEV3", None, None, "manual", "2026-01-27T10:00:00.100000", 60.9, 1.0, 61.0, 61.0)
    i["I9"] = _incident("I9", "SEV1", dbs, core, "manual", "2026-02-02T00:00:00", 60, 60, 600, 600)
    i["I10"] = _incident("I10", "SEV2", api, core, "manual", "2026-01-04T23:59:59", 60, 60, 600, 600)
    db.session.add_all(i.values())
    db.session.flush()
    cat = {c.slug: c for c in db.session.scalars(sa.select(FactorCategory))}

    def factors(pm, *slugs):
        for slug in slugs:
            pm.factors.append(ContributingFactor(category=cat[slug], description=f"{slug} mattered"))

    pm1 = _postmortem(i["I1"], PostmortemStatus.PUBLISHED, 1)
    factors(pm1, "change", "dependency")
    pm3 = _postmortem(i["I3"], PostmortemStatus.PUBLISHED, 3)
    factors(pm3, "change", "change")
    pm7 = _postmortem(i["I7"], PostmortemStatus.PUBLISHED, 2)
    factors(pm7, "dependency")
    pm2 = _postmortem(i["I2"], PostmortemStatus.IN_REVIEW)
    factors(pm2, "dependency")
    pm6 = _postmortem(i["I6"], PostmortemStatus.DRAFT)
    pm9 = _postmortem(i["I9"], PostmortemStatus.PUBLISHED, 1)
    factors(pm9, "change")
    _item(pm1, "A1", ItemStatus.DONE, ItemType.PREVENT, date(2026, 1, 20), "2026-01-06T10:00:00",
          "2026-01-20T18:00:00")
    _item(pm1, "A2", ItemStatus.DONE, ItemType.DETECT, date(2026, 1, 10), "2026-01-06T10:00:00",
          "2026-01-15T09:00:00")
    _item(pm1, "A3", ItemStatus.OPEN, ItemType.REPAIR, date(2020, 1, 1), "2026-01-06T10:00:00")
    _item(pm3, "A4", ItemStatus.WONT_DO, ItemType.PROCESS, date(2020, 1, 1), "2026-01-13T10:00:00",
          "2026-01-20T10:00:00")
    _item(pm3, "A5", ItemStatus.IN_PROGRESS, ItemType.REPAIR, date(2099, 1, 1), "2026-01-13T10:00:00")
    _item(pm3, "A6", ItemStatus.DONE, ItemType.MITIGATE, None, "2026-01-13T10:00:00", "2026-01-16T08:00:00")
    _item(pm2, "A7", ItemStatus.OPEN, ItemType.PREVENT, date(2020, 6, 1), "2026-01-07T10:00:00")
    _item(pm6, "A8", ItemStatus.OPEN, ItemType.DETECT, date(2020, 1, 1), "2026-01-21T10:00:00")
    _item(pm9, "A9", ItemStatus.OPEN, ItemType.DETECT, date(2020, 1, 1), "2026-02-03T10:00:00")
    db.session.commit()
    return {"incidents": i, "teams": {"core": core, "web": web, "data": data},
            "services": {"api": api, "db": dbs, "frontend": frontend, "etl": etl}}
