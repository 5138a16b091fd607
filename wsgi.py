"""Entry point for gunicorn: `gunicorn wsgi:app`."""

from crm_app import create_app
from crm_app.gc_tuning import freeze_startup_objects

app = create_app()
freeze_startup_objects()
