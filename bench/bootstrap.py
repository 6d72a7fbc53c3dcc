"""Bench data through the product's services, run as ``python -m bench.bootstrap`` in the bench
environment: a registered user and organization (enterprise plan), 20 platform API keys and a JWT
pair. Prints one JSON line: access_token, api_key, organization_id, user_id, email."""

from __future__ import annotations

import json
import os
import secrets


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kai_platform.settings")
    import django

    django.setup()
    from apps.accounts.models import Organization, Plan
    from apps.accounts.services import api_key_create, auth_issue_tokens, user_register

    suffix = secrets.token_hex(4)
    email = f"bench-{suffix}@bench.local"
    user, organization = user_register(
        email=email, password=secrets.token_urlsafe(24), org_name=f"Bench {suffix}", full_name="Bench user"
    )
    Organization.objects.filter(pk=organization.pk).update(plan=Plan.ENTERPRISE)
    raw_keys = [
        api_key_create(organization=organization, created_by=user, creator_role="owner", name=f"bench key {i}")[1]
        for i in range(20)
    ]
    tokens = auth_issue_tokens(user=user)
    print(
        json.dumps(
            {
                "access_token": tokens["access_token"],
                "api_key": raw_keys[0],
                "email": email,
                "organization_id": str(organization.pk),
                "user_id": str(user.pk),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
