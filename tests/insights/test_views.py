"""The insights page, the incidents behind each figure, CSV downloads and refused parameters."""

from __future__ import annotations

import csv
import io
import re

import pytest

from incidents.extensions import db
from tests.insights.data import PERIOD, build


@pytest.fixture
def data(session):
    return build()


def _refs(html: str) -> list[str]:
    return re.findall(r">(INC-\d+)</a>", html)


def _ref(data, *keys) -> list[str]:
    return [data["incidents"][k].ref for k in keys]


def test_page_shows_every_section_with_charts_tables_and_csv_links(viewer_client, data):
    response = viewer_client.get(f"/insights?{PERIOD}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/insights"' in html  # the top nav
    for heading in ("Response times", "Volume", "Repeat incidents", "Contributing factors", "Follow-through"):
        assert f">{heading}</h2>" in html
    assert html.count("<svg viewBox") >= 8  # response, four breakdowns, trend, repeats, factors
    assert html.count("<caption>") >= 12
    assert html.count(">Download CSV</a>") == 13  # every table
    assert "style=" not in html and "<script>" not in html  # CSP: no inline styles or scripts
    assert "9</span> incidents" in html
    assert "22.2%</span> repeats (2)" in html
    assert "50.0%</span> action items done on time" in html
    assert "40.0%</span> SEV1/SEV2 with a published post-mortem" in html
    # time to detect over all severities: p50 60 s -> "1m", p90 600 s -> "10m", of 9
    assert re.search(r"Time to detect</th><td>all</td><td>9</td><td>1m</td><td>10m</td>", html)
    assert "2 of 5 (40.0%)" in html
    csv_link = "/insights/response-times.csv?since=2026-01-05&amp;until=2026-02-01&amp;period=week&amp;table=by_service"
    assert f'href="{csv_link}"' in html


def test_page_explains_empty_sections(viewer_client, data):
    html = viewer_client.get("/insights?since=2020-01-01&until=2020-01-31").get_data(as_text=True)
    assert "No incident started in this period, so there is nothing to time." in html
    assert "No incident in this period repeats an earlier one." in html
    assert "No published post-mortem of this period names a contributing factor yet." in html
    assert "Nothing to show for this period." in html or "Nothing overdue." in html


def test_page_default_is_the_last_90_days(viewer_client, data):
    html = viewer_client.get("/insights").get_data(as_text=True)
    assert "(90 days)" in html


def test_page_needs_a_signed_in_user(client, viewer, data):
    response = client.get("/insights")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("query, field", [
    ("since=2026-13-01", "since"), ("until=yesterday", "until"), ("since=2026-02-01&until=2026-01-01", "since"),
    ("team=nope", "team"), ("service=nope", "service"), ("severity=SEV9", "severity"), ("period=day", "period"),
    ("since=1900-01-01&until=1900-02-01", "since"), ("since=2000-01-01&until=2026-01-01", "since"),
    ("until=9999-12-31", "until"), ("team=99999999999999999999", "team"),
])
def test_page_refuses_bad_filters_with_the_form_again(viewer_client, data, query, field):
    response = viewer_client.get(f"/insights?{query}")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'class="field-error"' in html and "<form" in html


@pytest.mark.parametrize("extra, keys", [
    ("", ["I8", "I11", "I7", "I6", "I5", "I4", "I3", "I2", "I1"]),
    ("&factor=change", ["I3", "I1"]),
    ("&factor=dependency", ["I7", "I1"]),
    ("&factor=change&service=api", ["I1"]),
    ("&factor=dependency&bucket=2026-W05", ["I7"]),
    ("&repeat=1", ["I7", "I4"]),
    ("&repeat=1&service=db", ["I4"]),
    ("&bucket=2026-W05", ["I8", "I11", "I7"]),
    ("&source=grafana", ["I4"]),
    ("&severity=SEV4", []),
    ("&missing_postmortem=1", ["I5", "I4", "I2"]),
    ("&overdue=1", ["I6", "I2", "I1"]),
    ("&overdue=1&item_type=detect", ["I6"]),
    ("&overdue=1&team=core", ["I2", "I1"]),
    ("&period=month&bucket=2026-02", ["I8"]),
])
def test_drill_down_lists_the_incidents_behind_a_figure(viewer_client, data, extra, keys):
    response = viewer_client.get(f"/insights/incidents?{PERIOD}{extra}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert _refs(html) == _ref(data, *keys)
    assert f"{len(keys)} incident" in html


@pytest.mark.parametrize("extra", ["&factor=nope", "&bucket=2026-13", "&overdue=1&item_type=nope", "&team=nope"])
def test_drill_down_refuses_bad_values(viewer_client, data, extra):
    assert viewer_client.get(f"/insights/incidents?{PERIOD}{extra}").status_code == 422


def test_page_links_each_count_to_its_drill_down(viewer_client, data):
    html = viewer_client.get(f"/insights?{PERIOD}").get_data(as_text=True)
    for query in ("factor=change", "repeat=1", "missing_postmortem=1", "overdue=1", "source=grafana",
                  "bucket=2026-W05", "service=db"):
        assert re.search(r'href="/insights/incidents\?[^"]*' + re.escape(query.replace("&", "&amp;")), html), query


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_csv_downloads_from_the_page_and_the_api(viewer_client, api, data):
    rows = _csv(viewer_client.get(f"/insights/response-times.csv?{PERIOD}"))
    assert rows[0] == ["metric", "severity", "count", "p50_seconds", "p90_seconds"]
    assert rows[1] == ["time_to_detect", "all", "9", "60", "600"]
    assert rows[5] == ["time_to_detect", "SEV4", "0", "", ""]
    assert len(rows) == 1 + 4 * 5
    via_api = api.get(f"/api/v1/insights/response-times?{PERIOD}&format=csv")
    assert via_api.get_data(as_text=True) == viewer_client.get(
        f"/insights/response-times.csv?{PERIOD}").get_data(as_text=True)
    assert 'filename="insights-response-times-response-times-2026-01-05-2026-02-01.csv"' in \
        via_api.headers["Content-Disposition"]
    assert _csv(api.get(f"/api/v1/insights/response-times?{PERIOD}&format=csv&table=trend")) == [
        ["period", "incidents"], ["2026-W02", "2"], ["2026-W03", "2"], ["2026-W04", "2"], ["2026-W05", "3"]]
    assert _csv(api.get(f"/api/v1/insights/factors?{PERIOD}&format=csv&table=by_service"))[:2] == [
        ["service", "name", "change", "dependency", "capacity", "configuration", "monitoring-gap", "process",
         "unknown"], ["api", "API", "1", "2", "0", "0", "0", "0", "0"]]
    summary = dict((r[0], r[1:]) for r in _csv(api.get(f"/api/v1/insights/follow-through?{PERIOD}&format=csv")))
    assert summary["on_time_rate"] == ["0.5", "2"]
    assert summary["postmortem_lead_time_p50_seconds"] == ["172800", "3"]
    assert summary["sev1_sev2_published_rate"] == ["0.4", "5"]
    assert _csv(viewer_client.get(f"/insights/follow-through.csv?{PERIOD}&table=overdue_by_team")) == [
        ["team", "name", "overdue"], ["core", "Core", "2"], ["web", "Web", "1"]]


def test_csv_cells_that_look_like_formulas_stay_text(viewer_client, data):
    data["services"]["etl"].name = "=HYPERLINK(\"http://x\")"
    data["teams"]["data"].name = "@SUM(1)"
    data["services"]["frontend"].name = "-2+3"
    db.session.commit()
    rows = _csv(viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=by_service"))
    names = [r[1] for r in rows[1:]]
    assert "'=HYPERLINK(\"http://x\")" in names and "'-2+3" in names
    teams = [r[1] for r in _csv(viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=by_team"))[1:]]
    assert "'@SUM(1)" in teams


def test_csv_refuses_unknown_tables_and_endpoints(viewer_client, api, data):
    assert viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=nope").status_code == 422
    assert viewer_client.get(f"/insights/nope.csv?{PERIOD}").status_code == 404
    response = api.get(f"/api/v1/insights/factors?{PERIOD}&format=csv&table=summary")
    assert response.status_code == 422
    assert "table" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize("path", ["response-times", "factors", "follow-through"])
@pytest.mark.parametrize("query, field", [
    ("since=2026-13-01", "since"), ("until=soon", "until"), ("since=2026-02-01&until=2026-01-01", "since"),
    ("team=nope", "team"), ("service=nope", "service"), ("severity=SEV9", "severity"), ("period=day", "period"),
    ("format=xml", "format"), ("since=9999-12-30&until=9999-12-31", "until"),
    ("service=99999999999999999999", "service"),
])
def test_api_refuses_bad_parameters_with_the_envelope(api, data, path, query, field):
    response = api.get(f"/api/v1/insights/{path}?{query}")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


def test_api_needs_a_token(client, data):
    response = client.get("/api/v1/insights/response-times")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_figures_are_kept_for_cache_seconds_then_computed_again(app, viewer_client, data, monkeypatch):
    from incidents.insights import queries

    monkeypatch.setitem(app.config, "INSIGHTS_CACHE_SECONDS", 60)
    monkeypatch.setattr(queries, "_CACHE", {})
    first = viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=by_severity").get_data(as_text=True)
    data["incidents"]["I10"].started_at = data["incidents"]["I1"].started_at  # now inside the period: a SEV2 more
    db.session.commit()
    again = viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=by_severity").get_data(as_text=True)
    assert again == first and "SEV2,SEV2,3" in again
    clock = queries.clock.monotonic() + 61
    monkeypatch.setattr(queries.clock, "monotonic", lambda: clock)
    later = viewer_client.get(f"/insights/response-times.csv?{PERIOD}&table=by_severity").get_data(as_text=True)
    assert "SEV2,SEV2,4" in later
