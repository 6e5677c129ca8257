"""Maps the layout's top-level templates/, migrations/ and config/ into the wheel as incidents/templates, ...

Metadata and dependencies live in pyproject.toml; this file only adds what its declarative form cannot express:
packages whose folders sit outside the package. At run time `incidents.resource_path` finds each folder inside the
installed package, or beside it in a source checkout."""

from setuptools import find_packages, setup

LAYOUT = {"incidents.templates": "templates", "incidents.migrations": "migrations", "incidents.config": "config"}

setup(
    packages=find_packages(include=["incidents", "incidents.*"]) + list(LAYOUT),
    package_dir=LAYOUT,
    package_data={"incidents": ["static/**/*"], **{name: ["**/*"] for name in LAYOUT}},
    exclude_package_data={"": ["**/__pycache__/*", "**/*.pyc"]},
)
