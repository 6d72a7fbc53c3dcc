import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
os.environ.setdefault("KAI_PROCESS", "web")  # fail fast on a database outage (settings: pool timeout)
application = get_wsgi_application()
