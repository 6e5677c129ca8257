"""Full-text search on the real database: what is found, in which order, with which snippet, and that every edit
is searchable as soon as it is committed (through the real HTTP views and API)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from incidents.action_item import services as items
from incidents.extensions import db
from incidents.incident import services as incidents
from incidents.postmortem import services as pm_services
from incidents.search import services as search
from incidents.search.models import SearchDocument
from tests.conftest import post_form
from tests.factories import make_incident
from tests.postmortem.factories import make_postmortem


def found(session, q, kind=None, **kw) -> list[tuple[str, int]]:
    return [(h.kind, h.id) for h in search.search(session, q, kind, **kw).items]


def test_tokens_keep_words_only():
    assert search.tokens('  Repl* "lag" OR -eu_west NEAR(x) ') == ["repl", "lag", "or", "eu", "west", "near", "x"]
    assert search.tokens('*"():^-') == []
    assert len(search.tokens("a " * 50)) == search.MAX_TOKENS


def test_finds_by_any_word_of_the_title_summary_and_notes(session):
    incident = make_incident(title="Checkout errors", summary="Cards declined in the eu region")
    incidents.add_note(session, incident, "Failover of the **primary** finished; replication caught up")
    make_incident(title="Something else")
    session.commit()
    for q in ("checkout", "declined", "failover", "replication", "PRIMARY"):
        assert found(session, q) == [("incident", incident.id)], q


def test_prefix_and_several_words(session):
    lag = make_incident(title="Replication lag on orders-db")
    broken = make_incident(title="Replication broken after upgrade")
    make_incident(title="Disk full")
    assert set(found(session, "repl")) == {("incident", lag.id), ("incident", broken.id)}
    assert found(session, "repl lag") == [("incident", lag.id)]
    assert found(session, "replication lag orders") == [("incident", lag.id)]
    assert found(session, "lag upgrade") == []


def test_post_mortem_sections_factors_and_action_items_are_found(session):
    pm = make_postmortem()
    section = next(s for s in pm.sections if not s.body)
    pm_services.save_section(session, pm, section.key, "The cache stampede took the origin down.", section.version)
    pm_services.add_factor(session, pm, "configuration", "Thundering herd after the TTL change")
    items.create_action_item(session, pm, title="Add jitter to expiries", description="Spread the refreshes")
    session.commit()
    for q in ("stampede", "thundering", "jitter", "refreshes"):
        assert ("postmortem", pm.id) in found(session, q), q
    assert found(session, "stampede", kind="incident") == []
    assert found(session, "stampede", kind="postmortem") == [("postmortem", pm.id)]


def test_removed_factor_and_deleted_item_are_no_longer_found(session):
    pm = make_postmortem()
    factor = pm_services.add_factor(session, pm, "configuration", "Zeppelin misconfiguration")
    item = items.create_action_item(session, pm, title="Quokka dashboards")
    session.commit()
    assert found(session, "zeppelin") and found(session, "quokka")
    pm_services.remove_factor(session, pm, factor.id)
    items.delete_action_item(session, item)
    session.commit()
    assert found(session, "zeppelin") == [] and found(session, "quokka") == []


def test_a_title_match_ranks_first(session):
    in_body = make_incident(title="Checkout errors", summary="Caused by replication of a bad row")
    incidents.add_note(session, in_body, "replication again, and replication once more")
    in_title = make_incident(title="Replication stopped")
    session.commit()
    assert found(session, "replication") == [("incident", in_title.id), ("incident", in_body.id)]


def test_snippet_marks_matches_and_escapes_html(session):
    """SQLite shows the text as written, escaped; PostgreSQL shows < and > as the look-alikes it indexes."""
    incident = make_incident(title="<script>alert(1)</script> in the banner",
                             summary='The <b>banner</b> & "quotes" broke replication')
    hit = search.search(session, "replication").items[0]
    assert hit.id == incident.id and hit.ref == incident.ref
    assert "<mark>replication</mark>" in hit.snippet
    assert "&amp;" in hit.snippet and "<b>" not in hit.snippet
    lt, gt = ("&lt;", "&gt;") if session.get_bind().dialect.name == "sqlite" else ("\u2039", "\u203a")
    assert f"banner{lt}/b{gt} &amp;" in hit.snippet
    title_hit = search.search(session, "alert").items[0]
    assert "<mark>alert</mark>" in title_hit.snippet and "<script>" not in title_hit.snippet


def test_mark_is_balanced_whatever_the_text_holds():
    assert search.mark("a \ue001b\ue000 <c>") == "a b<mark> &lt;c&gt;</mark>"


def test_pagination_and_the_recency_fallback(session, monkeypatch):
    made = [make_incident(title=f"Flaky probe {n}") for n in range(5)]
    page = search.search(session, "flaky", per_page=2, page=2)
    assert (page.total, page.pages, len(page.items)) == (5, 3, 2)
    monkeypatch.setattr(search, "RANK_LIMIT", 3)  # more matches than that: newest first
    assert [h.id for h in search.search(session, "flaky", per_page=5).items] == [i.id for i in reversed(made)]


def test_no_words_is_refused(session):
    with pytest.raises(search.Invalid):
        search.search(session, '"*()')


def test_rolled_back_change_leaves_the_index_as_it_was(session):
    incident = make_incident(title="Stable title")
    incidents.update_incident(session, incident, title="Walrus title")
    session.rollback()
    assert found(session, "walrus") == [] and found(session, "stable") == [("incident", incident.id)]


# --- through HTTP ---------------------------------------------------------------------------------------------

def test_api_search_answers_the_documented_shape(api):
    incident = make_incident(title="Payment gateway & timeouts")
    r = api.get("/api/v1/search?q=gate")
    assert r.status_code == 200
    body = r.get_json()
    assert (body["page"], body["pages"], body["total"]) == (1, 1, 1)
    assert body["items"] == [{"kind": "incident", "id": incident.id, "ref": incident.ref,
                              "title": "Payment gateway & timeouts",
                              "snippet": "Payment <mark>gateway</mark> &amp; timeouts"}]


@pytest.mark.parametrize("query", ["", "?q=", "?q=%22*()", "?q=x&kind=alerts", "?q=x&page=0", "?q=" + "x" * 201])
def test_api_bad_search_is_422_with_the_envelope(api, query):
    r = api.get("/api/v1/search" + query)
    assert r.status_code == 422
    assert r.get_json()["error"]["code"] == "validation_error"


def test_api_search_needs_a_token(client):
    assert client.get("/api/v1/search?q=x").status_code == 401


def test_edits_are_searchable_right_after_their_commit_through_the_api(api):
    ref = api.post("/api/v1/incidents", json={"title": "Orders slow", "severity": "SEV3"}).get_json()["ref"]

    def refs(q):
        return [h["ref"] for h in api.get(f"/api/v1/search?q={q}").get_json()["items"]]

    assert refs("orders") == [ref]
    assert api.patch(f"/api/v1/incidents/{ref}", json={"title": "Invoices slow"}).status_code == 200
    assert refs("orders") == [] and refs("invoices") == [ref]
    assert api.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "Vacuum finished"}).status_code == 201
    assert refs("vacuum") == [ref]
    incident = incidents.get_incident(db.session, ref)
    pm = make_postmortem(incident)
    r = api.client.put(f"/api/v1/postmortems/{pm.id}/sections/summary", json={"body": "Autovacuum starved",
                                                                              "version": 1}, headers=api.headers)
    assert r.status_code == 200
    hits = api.get("/api/v1/search?q=autovac&kind=postmortem").get_json()["items"]
    assert [(h["kind"], h["id"], h["ref"]) for h in hits] == [("postmortem", pm.id, ref)]


def test_search_page(viewer_client):
    incident = make_incident(title="Kafka <consumer> lag")
    page = viewer_client.get("/search?q=kafka").get_data(as_text=True)
    assert incident.ref in page and "Kafka &lt;consumer&gt; lag" in page and "<mark>Kafka</mark>" in page
    assert "Nothing matches" in viewer_client.get("/search?q=zebra").get_data(as_text=True)
    assert "Nothing matches" in viewer_client.get("/search?q=kafka&kind=postmortem").get_data(as_text=True)
    r = viewer_client.get("/search?q=%22*()")
    assert r.status_code == 200 and "Type at least one word" in r.get_data(as_text=True)
    assert "Type a few words" in viewer_client.get("/search").get_data(as_text=True)
    assert 'action="/search"' in viewer_client.get("/").get_data(as_text=True)  # the top bar's box


def test_search_page_needs_sign_in(client):
    assert client.get("/search?q=x").status_code == 302


def test_a_note_added_through_the_page_is_found(responder_client):
    incident = make_incident(title="Web note")
    r = post_form(responder_client, f"/incidents/{incident.ref}/notes", {"body": "Restarted the memcached pods"})
    assert r.status_code == 302
    assert incident.ref in responder_client.get("/search?q=memcached").get_data(as_text=True)


def test_search_page_pages(viewer_client, app):
    for n in range(3):
        make_incident(title=f"Noisy alert {n}")
    app.config["PER_PAGE"], per_page = 2, app.config["PER_PAGE"]
    try:
        first = viewer_client.get("/search?q=noisy").get_data(as_text=True)
        second = viewer_client.get("/search?q=noisy&page=2").get_data(as_text=True)
    finally:
        app.config["PER_PAGE"] = per_page
    assert "Page 1 of 2" in first and "Page 2 of 2" in second


# --- the incident list's q and tag ----------------------------------------------------------------------------

def test_incident_list_q_uses_the_index_with_the_other_filters(session):
    a = make_incident(title="Replication lag", severity="SEV1", tags=["database"])
    b = make_incident(title="Checkout down", severity="SEV2", tags=["database"])
    incidents.add_note(session, b, "replication was fine")
    make_incident(title="Replication lag again", severity="SEV3")
    session.commit()

    def ids(**kw):
        return [i.id for i in incidents.list_incidents(session, incidents.IncidentFilter(**kw)).items]

    assert set(ids(q="repl", tag="database")) == {a.id, b.id}
    assert ids(q="replic", severity=["SEV1"]) == [a.id]
    assert ids(q=a.ref) == [a.id]
    with pytest.raises(search.Invalid):
        ids(q="***")


def test_api_incident_list_q_bad_is_422(api):
    assert api.get("/api/v1/incidents?q=%2A%2A").status_code == 422


def test_reindex_rebuilds_what_bulk_loads_left_out(session, app):
    kept = make_incident(title="Indexed already")
    stale = make_incident(title="Bulk loaded")
    session.execute(sa.delete(SearchDocument).where(SearchDocument.target_id == stale.id))
    session.execute(sa.update(SearchDocument).values(title="garbage"))
    session.commit()
    assert found(session, "bulk") == []
    result = app.test_cli_runner().invoke(args=["search", "reindex", "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert "Indexed 2 documents" in result.output
    assert found(session, "bulk") == [("incident", stale.id)]
    assert found(session, "indexed") == [("incident", kept.id)] and found(session, "garbage") == []


def test_many_matches_walk_the_list_and_the_count_stops(session, monkeypatch):
    """Past RANK_LIMIT the list tests each incident as it walks newest first; past COUNT_LIMIT the total is a floor."""
    made = [make_incident(title=f"Disk pressure {n}", severity="SEV3" if n % 2 else "SEV2") for n in range(4)]
    make_incident(title="Unrelated")
    monkeypatch.setattr(search, "RANK_LIMIT", 1)
    monkeypatch.setattr(search, "COUNT_LIMIT", 3)
    page = incidents.list_incidents(session, incidents.IncidentFilter(q="disk"), per_page=2)
    assert [i.id for i in page.items] == [made[3].id, made[2].id]
    assert (page.total, page.at_least) == (3, True)
    odd = incidents.list_incidents(session, incidents.IncidentFilter(q="disk", severity=["SEV3"]))
    assert [i.id for i in odd.items] == [made[3].id, made[1].id] and (odd.total, odd.at_least) == (2, False)
    hits = search.search(session, "pressure")
    assert (hits.total, hits.at_least) == (3, True) and len(hits.items) == 4


def test_a_count_of_matches_clustered_at_the_end_reads_the_gin_index(session):
    """PostgreSQL, the capped count: when the matches sit together (post-mortems at the table's end), it reads the
    GIN index, not every row before them in a scan planned for a LIMIT that assumes evenly spread matches."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner; SQLite counts in its FTS5 index")
    anchor = make_incident(title="Anchor")
    insert = ("INSERT INTO search_document (id, kind, target_id, incident_id, created_at, title, body)"
              " SELECT n, :kind, n, :incident, now(), :title || n, 'filler words about nothing'"
              " FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) n")
    base = session.scalar(sa.text("SELECT coalesce(max(id), 0) FROM search_document")) + 1000  # past the suite's ids
    session.execute(sa.text(insert), {"kind": "incident", "incident": anchor.id, "title": "Disk pressure ",
                                      "lo": base, "hi": base + 59_999})
    session.execute(sa.text(insert), {"kind": "postmortem", "incident": anchor.id, "title": "Failover drill ",
                                      "lo": base + 60_000, "hi": base + 62_999})
    session.commit()
    # The GIN index's pending list (fastupdate) is costed as read in full: what the suite's earlier inserts left in
    # it decides the plan at this table size (seq scan from ~400 pending pages). Flushed, as autovacuum keeps it.
    session.execute(sa.text("SELECT gin_clean_pending_list('ix_search_document_tsv')"))
    session.execute(sa.text("ANALYZE search_document"))
    statements = []

    def record(_conn, _cursor, statement, parameters, *_args):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert search._count(session, search._query_text(session, ["failover"]), None, 101) == 101
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    (statement, parameters), = statements
    plan = session.connection().exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()

    def nodes(node):
        yield node
        for child in node.get("Plans", ()):
            yield from nodes(child)

    scans = [n for n in nodes(plan[0]["Plan"]) if n["Node Type"].endswith("Scan") and n.get("Relation Name")]
    assert [n["Node Type"] for n in scans] == ["Bitmap Heap Scan"]
    assert sum(n.get("Rows Removed by Filter", 0) for n in scans) == 0  # no row but the matches was read
