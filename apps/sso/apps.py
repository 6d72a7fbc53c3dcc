from django.apps import AppConfig

from apps.agents.crypto import SECRET_ROTATORS


class SsoConfig(AppConfig):
    name = "apps.sso"
    label = "sso"
    verbose_name = "Single sign-on & SCIM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.accounts import hooks

        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.sso import policy, saml
        from apps.sso.services import connections_rotate_secrets

        hooks.register_password_login_check(policy.check_password_login)
        saml.configure_clock_skew()
        SECRET_ROTATORS["SSO client secret(s)"] = connections_rotate_secrets
