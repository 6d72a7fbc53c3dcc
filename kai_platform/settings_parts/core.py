"""What every other area reads: the environment kind, the secret key and debug, hosts and origins.

``DJANGO_ENV=production`` turns the defaults strict: no default ``SECRET_KEY``, no ``DEBUG``, no
embedded services, secure cookies, HSTS."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from kai_platform.env import env_bool, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development, production or test, got {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"

_DEFAULT_SECRET_KEY = "kai-insecure-development-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", not PRODUCTION and DJANGO_ENV != "test")

if PRODUCTION:
    if SECRET_KEY == _DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("production refuses the default or a short SECRET_KEY (set SECRET_KEY, 50+ chars)")
    if DEBUG:
        raise ImproperlyConfigured("production refuses DEBUG=True")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
# browsers on those origins may call the API with a bearer token (django-cors-headers); nothing else
CORS_URLS_REGEX = r"^/(api/|api-openapi\.json)"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "x-organization", "x-request-id")
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "api-version",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-type",
    "x-ratelimit-warning",
    "retry-after",
)
