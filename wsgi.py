"""Entry point for gunicorn: `gunicorn wsgi:app`."""

from crm_app import create_app

app = create_app()
