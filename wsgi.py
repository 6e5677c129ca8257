"""WSGI entry point: `gunicorn wsgi:app`."""

from incidents import create_app

app = create_app()
