"""Where an installed app finds its files: the layout's folders from the package or the checkout, the instance
folder under the working directory. `.ci/check-install` proves the same from a real non-editable install."""

from __future__ import annotations

import shutil
from pathlib import Path

import incidents
from incidents import create_app, resource_path

ROOT = Path(__file__).resolve().parent.parent


def test_layout_folders_come_from_the_checkout_when_the_package_has_none():
    for name in ("templates", "migrations", "config"):
        assert resource_path(name) == ROOT / name


def test_layout_folders_inside_the_package_win(tmp_path, monkeypatch):
    """A wheel carries templates/ inside the package (setup.py maps it there): that copy is the one used."""
    package = tmp_path / "site-packages" / "incidents"
    shutil.copytree(ROOT / "templates", package / "templates")
    monkeypatch.setattr(incidents, "PACKAGE", package)
    assert resource_path("templates") == package / "templates"
    assert resource_path("migrations") == package.parent / "migrations"  # not there: beside, as in a checkout


def test_instance_folder_defaults_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("INCIDENTS_INSTANCE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
    assert app.instance_path == str(tmp_path / "instance")
    assert (tmp_path / "instance").is_dir()


def test_instance_path_setting_moves_it(tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENTS_INSTANCE_PATH", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://"})
    assert app.instance_path == str(tmp_path / "data")
    assert (tmp_path / "data" / "secret_key").exists()  # generated there, not beside the code


def test_cli_on_a_database_never_migrated_says_what_to_do(tmp_path, monkeypatch):
    from incidents.cli import main

    monkeypatch.setenv("INCIDENTS_INSTANCE_PATH", str(tmp_path))
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["integrations", "list"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "incidents db upgrade" in result.output
