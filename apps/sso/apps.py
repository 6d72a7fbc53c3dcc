from django.apps import AppConfig


class SsoConfig(AppConfig):
    name = "apps.sso"
    label = "sso"
    verbose_name = "Single sign-on & SCIM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from apps.accounts import hooks
        from apps.agents.crypto import SECRET_ROTATORS
        from apps.sso import policy, saml
        from apps.sso.services import connections_rotate_secrets

        hooks.register_password_login_check(policy.check_password_login)
        saml.configure_clock_skew()
        SECRET_ROTATORS["SSO client secret(s)"] = connections_rotate_secrets
