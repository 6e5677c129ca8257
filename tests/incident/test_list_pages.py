"""The incident list past its count limit: capped counts, numbered pages only that far, the `before` cursor beyond
(service, API and page), on SQLite and PostgreSQL alike. A small limit keeps the data small."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from incidents import database
from incidents.database import Cursor
from incidents.errors import Invalid
from incidents.incident import services as svc
from incidents.incident.models import Incident
from tests.factories import make_incident, make_service


def made(session, n: int, **fields) -> list[Incident]:
    """`n` incidents, created at times with ties (pairs share a second), so the order needs its id tiebreak."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    incidents = [make_incident(**fields) for _ in range(n)]
    for k, incident in enumerate(incidents):
        incident.created_at = base + timedelta(seconds=k // 2)
    session.commit()
    return incidents


def newest_first(incidents: list[Incident]) -> list[int]:
    return [i.id for i in sorted(incidents, key=lambda i: (i.created_at, i.id), reverse=True)]


def walk(session, f: svc.IncidentFilter, per_page: int, count_limit: int) -> tuple[list[int], list[int]]:
    """Every page from the first by following `next`: (incident ids in order, page numbers)."""
    ids, numbers, before = [], [], None
    while True:
        page = svc.list_incidents(session, f, per_page=per_page, before=before, count_limit=count_limit)
        ids += [i.id for i in page.items]
        numbers.append(page.page)
        if page.next is None:
            return ids, numbers
        before = page.next


def encode(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# --- the service -----------------------------------------------------------------------------------------------

def test_count_stops_at_the_limit_and_says_so(session):
    service = make_service()
    made(session, 7, tags=["disk"], service_id=service.id, title="Disk full")

    def counted(count_limit, **fields):
        page = svc.list_incidents(session, svc.IncidentFilter(**fields), per_page=2, count_limit=count_limit)
        return page.total, page.at_least

    assert counted(5) == (5, True)
    assert counted(7) == (7, False)
    assert counted(100) == (7, False)
    assert counted(5, service=service.slug) == (5, True)
    assert counted(5, tag="disk") == (5, True)  # the tag's own index, capped the same way
    assert counted(7, tag="disk") == (7, False)
    assert counted(5, q="disk") == (5, True)  # the full-text count, capped the same way
    assert counted(5, severity=["SEV1"]) == (0, False)


def test_the_cursor_walks_every_incident_once_in_order(session):
    incidents = made(session, 11)
    ids, numbers = walk(session, svc.IncidentFilter(), per_page=3, count_limit=4)
    assert ids == newest_first(incidents)
    assert numbers == [1, 2, 3, 4]
    # A page size that divides the list: the last full page has no next (no empty page after it).
    ids, numbers = walk(session, svc.IncidentFilter(), per_page=11, count_limit=4)
    assert (ids, numbers) == (newest_first(incidents), [1])


def test_the_cursor_keeps_the_filters(session):
    service = make_service()
    mine = made(session, 9, service_id=service.id, severity="SEV1", tags=["db"], title="Replication lag")
    made(session, 6, severity="SEV1", tags=["db"], title="Replication lag")  # other service
    made(session, 4, service_id=service.id, severity="SEV3")
    svc.resolve_incident(session, mine[0], resolution="Fixed")
    session.commit()
    for fields in ({"service": service.slug, "severity": ["SEV1"]}, {"service": service.slug, "tag": "db"},
                   {"service": service.slug, "q": "replication"}):
        ids, _ = walk(session, svc.IncidentFilter(**fields), per_page=2, count_limit=3)
        assert ids == newest_first(mine), fields
    ids, _ = walk(session, svc.IncidentFilter(service=service.slug, tag="db", open_only=True), per_page=2,
                  count_limit=3)
    assert ids == newest_first(mine[1:])


def test_numbered_pages_stop_at_the_limit(session):
    incidents = made(session, 9)
    expected = newest_first(incidents)
    f = svc.IncidentFilter()
    page = svc.list_incidents(session, f, page=3, per_page=2, count_limit=5)  # offset 4 < 5: still numbered
    assert [i.id for i in page.items] == expected[4:6] and page.max_page == 3
    with pytest.raises(Invalid, match="numbered up to 3") as refused:
        svc.list_incidents(session, f, page=4, per_page=2, count_limit=5)
    assert set(refused.value.fields) == {"page"}
    # The cursor of page 3 goes on to page 4 and after.
    page4 = svc.list_incidents(session, f, per_page=2, count_limit=5, before=page.next)
    assert page4.page == 4 and [i.id for i in page4.items] == expected[6:8]
    # A short list counted exactly: a page past it is simply empty (nothing there to point a cursor at).
    assert svc.list_incidents(session, f, page=40, per_page=2, count_limit=50).items == []


@pytest.mark.parametrize("raw", [
    "x", "not a cursor!", "a" * 300, "YWJj=", "\u00e9t\u00e9",
    encode("garbage"),
    encode("2026-01-01T00:00:00|1|2"),  # no offset
    encode("2026-01-01T00:00:00+05:00|1|2"),  # not UTC
    encode("2026-01-01T00:00:00+00:00|0|2"),
    encode("2026-01-01T00:00:00+00:00|99999999999|2"),
    encode("2026-01-01T00:00:00+00:00|1|0"),
    encode("2026-01-01T00:00:00+00:00|1|-3"),
    encode("2026-01-01T00:00:00+00:00|1"),
    encode("2026-02-30T00:00:00+00:00|1|2"),
    encode("2026-01-01T00:00:00+00:00|\u0661|2"),
    base64.urlsafe_b64encode(b"\xff\xfe|1|2").decode(),
])
def test_bad_cursors_are_invalid_naming_the_parameter(session, raw):
    with pytest.raises(Invalid) as refused:
        svc.list_incidents(session, svc.IncidentFilter(), before=raw)
    assert set(refused.value.fields) == {"before"}


def test_a_cursor_round_trips_at_the_edges_of_time(session):
    for at in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        cursor = Cursor(at, 2**31 - 1, 2**31 - 1)
        assert Cursor.decode(cursor.encode()) == cursor
        assert svc.list_incidents(session, svc.IncidentFilter(), before=cursor.encode()).page == 2**31 - 1


# --- the API ---------------------------------------------------------------------------------------------------

@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(database, "COUNT_LIMIT", 4)


def test_api_walks_with_next_and_refuses_pages_past_the_limit(api, session, small_limit):
    incidents = made(session, 7, severity="SEV2")
    made(session, 2, severity="SEV4")
    first = api.get("/api/v1/incidents?severity=SEV2&per_page=2").get_json()
    assert (first["page"], first["total"], first["at_least"], first["pages"]) == (1, 4, True, 2)
    refs, body = [], first
    while True:
        refs += [i["ref"] for i in body["items"]]
        if body["next"] is None:
            break
        response = api.get(f"/api/v1/incidents?severity=SEV2&per_page=2&before={body['next']}")
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
    assert refs == [f"INC-{i}" for i in newest_first(incidents)]
    assert body["page"] == 4

    refused = api.get("/api/v1/incidents?severity=SEV2&per_page=2&page=3")
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert "page" in error["fields"] and "before" in error["message"]
    # Counted exactly (under the limit): a page past the end is an empty page, not an error.
    assert api.get("/api/v1/incidents?severity=SEV4&page=9").get_json()["items"] == []


@pytest.mark.parametrize("before", ["x", "not-base64-at-all%21", encode("2026-01-01T00:00:00|1|2"), "a" * 201, ""])
def test_api_bad_cursor_is_422_naming_before(api, before):
    response = api.get(f"/api/v1/incidents?before={before}")
    assert response.status_code == 422, response.get_json()
    assert "before" in response.get_json()["error"]["fields"]


# --- the page --------------------------------------------------------------------------------------------------

def refs(html: str) -> list[str]:
    return re.findall(r'<td data-label="Ref"><a href="[^"]+">(INC-\d+)</a>', html)


def link(html: str, label: str) -> str:
    return re.search(rf'<a href="([^"]+)">[^<]*{label}', html).group(1).replace("&amp;", "&")


def test_page_goes_on_past_the_limit_with_older_links(viewer_client, session, small_limit):
    incidents = made(session, 9, tags=["disk"])
    expected = [f"INC-{i}" for i in newest_first(incidents)]
    html = viewer_client.get("/?tag=disk&per_page=2").get_data(as_text=True)
    assert refs(html) == expected[:2]
    assert "Page 1 · more than 4 in all" in html
    seen, numbers = refs(html), [1]
    while ">Older" in html:
        older = link(html, "Older")
        assert "tag=disk" in older and "per_page=2" in older
        html = viewer_client.get(older).get_data(as_text=True)
        seen += refs(html)
        numbers.append(int(re.search(r"Page (\d+)", html).group(1)))
        if numbers[-1] == 2:
            assert "page=2" in older  # numbered while numbers last
        if numbers[-1] == 3:
            assert "before=" in older and "Page numbers stop at 2" in html
        if numbers[-1] == 4:
            assert "Newest" in html and "tag=disk" in link(html, "Newest") and "before" not in link(html, "Newest")
    assert seen == expected and numbers == [1, 2, 3, 4, 5]

    refused = viewer_client.get("/?tag=disk&per_page=2&page=3")
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "numbered up to 2" in text and "Older link" in text


@pytest.mark.parametrize("before", ["x", encode("2026-01-01T00:00:00+00:00|1|0")])
def test_page_bad_cursor_is_422(viewer_client, before):
    response = viewer_client.get(f"/?show=all&before={before}")
    assert response.status_code == 422
    assert "before is not a cursor" in response.get_data(as_text=True)


def test_count_reads_no_more_than_the_limit(session):
    """The capped count is a count over LIMIT limit + 1 (not a count of the whole table)."""
    from incidents.extensions import db

    made(session, 6)
    seen = []

    def listener(_conn, _cursor, statement, *_args):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert database.capped_count(session, sa.select(Incident), 3) == (3, True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    assert any("LIMIT" in s.upper() and "count(" in s.lower() for s in seen)
