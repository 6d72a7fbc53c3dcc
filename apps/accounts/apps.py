from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts & organizations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from kai_platform.tenancy import authcache

        authcache.connect_signals()  # cached credentials are re-read after any change of these rows
