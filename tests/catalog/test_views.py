"""Teams and services pages: everyone reads, admins write, errors show inline."""

import sqlalchemy as sa

from incidents.catalog.models import Service, Team
from tests.conftest import post_form
from tests.factories import make_service, make_team


def test_teams_page_lists_teams_with_services(viewer_client, session):
    team = make_team(name="Payments", description="Money in, money out")
    make_service(name="Checkout API", team_id=team.id)
    make_service(name="Refunds", team_id=team.id)
    make_team(name="Search")
    response = viewer_client.get("/admin/teams")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    html = html[html.index("<main"):]  # the top bar has a search box
    assert html.index("Payments") < html.index("Checkout API") < html.index("Refunds") < html.index("Search")
    assert "Money in, money out" in html and "No services yet." in html
    assert "/admin/teams/new" not in html and "/edit" not in html  # viewers see no write links


def test_empty_catalog_explains_itself(admin_client):
    html = admin_client.get("/admin/teams").get_data(as_text=True)
    assert "No teams yet" in html and "Create the first team" in html


def test_admin_creates_and_edits_team_and_service(admin_client, session):
    response = post_form(admin_client, "/admin/teams/new", {"name": "Platform Ops", "slug": "", "description": "k8s"})
    assert response.status_code == 302
    team = session.scalars(sa.select(Team)).one()
    assert (team.name, team.slug, team.description) == ("Platform Ops", "platform-ops", "k8s")

    assert "Platform Ops" in admin_client.get("/admin/services/new").get_data(as_text=True)
    response = post_form(admin_client, "/admin/services/new",
                         {"name": "Ingress", "slug": "ingress", "team_id": str(team.id), "description": ""})
    assert response.status_code == 302
    service = session.scalars(sa.select(Service)).one()
    assert service.team == team

    other = make_team(name="Networking")
    html = admin_client.get(f"/admin/services/{service.id}/edit").get_data(as_text=True)
    assert 'value="Ingress"' in html
    response = post_form(admin_client, f"/admin/services/{service.id}/edit",
                         {"name": "Ingress NGINX", "slug": "ingress", "team_id": str(other.id), "description": "edge"})
    assert response.status_code == 302
    session.refresh(service)
    assert (service.name, service.team, service.description) == ("Ingress NGINX", other, "edge")

    response = post_form(admin_client, f"/admin/teams/{team.id}/edit",
                         {"name": "Platform", "slug": "platform", "description": ""})
    assert response.status_code == 302
    session.refresh(team)
    assert (team.name, team.slug) == ("Platform", "platform")
    html = admin_client.get("/admin/teams").get_data(as_text=True)
    assert "Ingress NGINX" in html and f"/admin/teams/{team.id}/edit" in html


def test_catalog_form_errors_inline_with_422(admin_client, session):
    taken = make_team(name="Taken")
    response = post_form(admin_client, "/admin/teams/new", {"name": "", "slug": "Bad Slug"})
    assert response.status_code == 422
    assert 'class="field-error"' in response.get_data(as_text=True)
    response = post_form(admin_client, "/admin/teams/new", {"name": "Another", "slug": "taken"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Already in use." in html and 'value="Another"' in html
    response = post_form(admin_client, "/admin/services/new", {"name": "Orphan", "team_id": ""})
    assert response.status_code == 422 and 'value="Orphan"' in response.get_data(as_text=True)
    response = post_form(admin_client, "/admin/services/new", {"name": "Orphan", "team_id": "987654"})
    assert response.status_code == 422 and "No team" in response.get_data(as_text=True)
    response = post_form(admin_client, f"/admin/teams/{taken.id}/edit", {"name": "Taken", "slug": ""})
    assert response.status_code == 422 and "Invalid slug." in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Service)) == 0
    assert admin_client.get("/admin/teams/987654/edit").status_code == 404
    assert admin_client.get("/admin/services/987654/edit").status_code == 404


def test_catalog_writes_are_admin_only(responder_client, session):
    team = make_team()
    service = make_service(team_id=team.id)
    writes = [
        ("/admin/teams/new", {"name": "X"}),
        (f"/admin/teams/{team.id}/edit", {"name": "X", "slug": "x"}),
        ("/admin/services/new", {"name": "X", "team_id": str(team.id)}),
        (f"/admin/services/{service.id}/edit", {"name": "X", "slug": "x"}),
    ]
    for url, data in writes:
        assert post_form(responder_client, url, data).status_code == 403, url
        assert responder_client.get(url).status_code == 403, url
    session.refresh(team)
    assert team.name != "X"
    assert responder_client.get("/admin/teams").status_code == 200


def test_catalog_post_without_csrf_is_rejected(admin_client, session):
    response = admin_client.post("/admin/teams/new", data={"name": "No token"})
    assert response.status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(Team)) == 0
