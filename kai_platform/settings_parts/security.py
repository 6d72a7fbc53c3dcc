"""Production's HTTP hardening, the secret-encryption keys, the outbound network allow-list,
step-up verification (WebAuthn) and single sign-on (django-allauth)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from kai_platform.env import env_bool, env_int, env_list, env_str
from kai_platform.settings_parts.application import KAI_PUBLIC_URL, VAR_DIR
from kai_platform.settings_parts.core import PRODUCTION

# --- security (production) --------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SILENCED_SYSTEM_CHECKS = env_list("KAI_SILENCED_SYSTEM_CHECKS", [])
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("KAI_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("KAI_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("KAI_HSTS_PRELOAD", True)
    SECURE_REFERRER_POLICY = "same-origin"
    SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# --- secrets and outbound calls (apps.agents, kai_platform.llm, kai_platform.security) ------------
#: Fernet keys (urlsafe base64, 32 bytes), newest first. Production refuses to start without them;
#: the embedded mode keeps one in var/secret.keys (created once, mode 0600) and reuses it.
KAI_SECRET_KEYS = env_list("KAI_SECRET_KEYS", [])
if PRODUCTION and not KAI_SECRET_KEYS:
    raise ImproperlyConfigured("production needs KAI_SECRET_KEYS (comma-separated Fernet keys, newest first)")
KAI_SECRET_KEYS_FILE = Path(env_str("KAI_SECRET_KEYS_FILE", str(VAR_DIR / "secret.keys")))
#: hosts/IPs/CIDRs outbound calls (http_request tool, provider base URLs) may reach even when private
KAI_NETWORK_ALLOWLIST = env_list("KAI_NETWORK_ALLOWLIST", [])

# --- step-up verification (apps.stepup) ---------------------------------------------------------
#: how long a step-up grant (WebAuthn assertion or password re-check) keeps sensitive operations open
KAI_STEP_UP_TTL_SECONDS = env_int("KAI_STEP_UP_TTL_SECONDS", 300)
#: WebAuthn relying party: its id (a host name) and the origins browsers sign ceremonies for
KAI_WEBAUTHN_RP_ID = env_str("KAI_WEBAUTHN_RP_ID", urlsplit(KAI_PUBLIC_URL).hostname or "localhost")
KAI_WEBAUTHN_RP_NAME = env_str("KAI_WEBAUTHN_RP_NAME", "kAI")
KAI_WEBAUTHN_ORIGINS = env_list("KAI_WEBAUTHN_ORIGINS", [KAI_PUBLIC_URL.rstrip("/")])

# --- single sign-on (apps.sso): allauth configured per request from SSOConnection rows --------
SOCIALACCOUNT_ADAPTER = "apps.sso.adapter.SSOSocialAccountAdapter"
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = env_int("KAI_SSO_HTTP_TIMEOUT", 10)
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
