from django.apps import AppConfig


class SchemasConfig(AppConfig):
    name = "apps.schemas"
    label = "schemas"
    verbose_name = "JSON Schemas (structured output)"
    default_auto_field = "django.db.models.BigAutoField"
