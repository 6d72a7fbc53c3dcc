from django.apps import AppConfig

from kai_platform import ports
from kai_platform.tenancy import authcache


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts & organizations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # models and services are importable only once the app registry is ready
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.accounts import selectors, services
        from apps.accounts.models import Membership, Organization, User

        # cached credentials are re-read after any change of these rows
        authcache.connect_signals(user=User, membership=Membership, organization=Organization)
        ports.provide("user_and_membership", selectors.user_and_membership)
        ports.provide("api_key_authenticate", services.api_key_authenticate)
        ports.provide("live_api_key_ids", selectors.live_api_key_ids)
        ports.provide("live_members", selectors.live_members)
