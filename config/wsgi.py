"""WSGI entry point: the web process with WEB_SERVER=sync (config/gunicorn.py), the test client."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
