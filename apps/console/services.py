"""Writes of the operator console: the short-lived socket token of a dashboard session."""
from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken


def console_token_issue(*, user) -> dict:
    """An access token for the logged-in session user, for the console socket only to use.

    It lives ``KAI_CONSOLE_TOKEN_SECONDS`` (default 300): the socket closes when it expires and the
    page fetches a new one and resumes from the last seq it saw. Nothing is stored; it can't be
    refreshed, and it grants what the user's own login grants.
    """
    token = AccessToken.for_user(user)
    lifetime = timedelta(seconds=settings.KAI_CONSOLE_TOKEN_SECONDS)
    token.set_exp(lifetime=lifetime)
    token["sid"] = f"console-{uuid.uuid4().hex}"
    token["scope"] = "console"
    return {"token": str(token), "expires_in": int(lifetime.total_seconds())}
