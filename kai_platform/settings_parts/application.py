"""Django itself: installed apps, middleware, templates, passwords, static and media files,
storage (filesystem or S3), upload caps and email."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from kai_platform.env import env_bool, env_int, env_list, env_str
from kai_platform.settings_parts.core import BASE_DIR, PRODUCTION

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "channels",
    "django_celery_beat",
    "apps.accounts",
    "apps.audit",
    "apps.events",
    "apps.files",
    "apps.agents",
    "apps.runs",
    "apps.crews",
    "apps.scheduler",
    "apps.workflows",
    "apps.approvals",
    "apps.webhooks",
    "apps.schemas",
    "apps.knowledge",
    "apps.quotas",
    "apps.system",
    "apps.voice",
    "apps.stepup",
    "apps.console",
    "apps.retention",
    # single sign-on (apps.sso): django-allauth's OpenID Connect and SAML 2.0 providers
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "apps.sso",
]

MIDDLEWARE = [
    "kai_platform.api.middleware.RequestIDMiddleware",
    "kai_platform.api.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "kai_platform.api.middleware.ApiPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "kai_platform.api.middleware.RateLimitHeadersMiddleware",
    "allauth.account.middleware.AccountMiddleware",  # required by allauth (apps.sso)
]

ROOT_URLCONF = "kai_platform.urls"
WSGI_APPLICATION = "kai_platform.wsgi.application"
ASGI_APPLICATION = "kai_platform.asgi.application"
AUTH_USER_MODEL = "accounts.User"
APPEND_SLASH = False  # API paths take an optional trailing slash (ApiPathMiddleware)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env_list(
    "KAI_PASSWORD_HASHERS",
    [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    ],
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
#: the embedded footprint's state (pgdata, redis, media, secret.keys): what a backup covers
VAR_DIR = Path(env_str("KAI_VAR_DIR", str(BASE_DIR / "var")))
STATIC_ROOT = Path(env_str("KAI_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from finders; the folder must exist
MEDIA_ROOT = Path(env_str("KAI_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Body size cap for non-file requests (DRF parsers and Django forms alike).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("KAI_MAX_BODY_BYTES", 2 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- files (apps.files): per-file cap while streaming, per-organization quota, storage ---------
KAI_MAX_UPLOAD_MB = env_int("KAI_MAX_UPLOAD_MB", 100)
KAI_MAX_UPLOAD_FILES = env_int("KAI_MAX_UPLOAD_FILES", 20)
#: one storage quota for every organization (MB); unset: by plan (free 1 GB … enterprise 500 GB)
KAI_STORAGE_QUOTA_MB = env_int("KAI_STORAGE_QUOTA_MB", 0)
KAI_STORAGE_BACKEND = env_str("KAI_STORAGE_BACKEND", "filesystem")  # filesystem | s3
if KAI_STORAGE_BACKEND == "s3":
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("KAI_S3_BUCKET"),
            "endpoint_url": env_str("KAI_S3_ENDPOINT_URL") or None,
            "region_name": env_str("KAI_S3_REGION") or None,
            "access_key": env_str("KAI_S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("KAI_S3_SECRET_ACCESS_KEY") or None,
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
elif KAI_STORAGE_BACKEND != "filesystem":
    raise ImproperlyConfigured("KAI_STORAGE_BACKEND must be filesystem or s3")
STORAGES["default"].setdefault("OPTIONS", {})
if KAI_STORAGE_BACKEND == "filesystem":
    STORAGES["default"]["OPTIONS"].update(location=str(MEDIA_ROOT), allow_overwrite=False)
FILE_UPLOAD_TEMP_DIR = env_str("KAI_UPLOAD_TEMP_DIR") or None

# --- email (magic links) ----------------------------------------------------------------------
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "kAI <no-reply@localhost>")
KAI_PUBLIC_URL = env_str("KAI_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
