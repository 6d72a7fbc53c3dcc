"""Run the test IdP: ``python -m tests.sso.oidc_idp.serve PORT CLIENT_ID CLIENT_SECRET``.
Migrates its SQLite database, registers the confidential client, serves on 127.0.0.1:PORT."""

import os
import sys

import django


def main() -> None:
    port, client_id, client_secret = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.sso.oidc_idp.settings"
    django.setup()
    from django.core.management import call_command
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    Application.objects.update_or_create(
        client_id=client_id,
        defaults=dict(
            name="kai",
            client_secret=client_secret,
            hash_client_secret=False,
            skip_authorization=True,
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            algorithm=Application.RS256_ALGORITHM,
            redirect_uris="",
        ),
    )
    run("127.0.0.1", int(port), get_wsgi_application(), threading=True)


if __name__ == "__main__":
    main()
