from django.apps import AppConfig


class CrewsConfig(AppConfig):
    name = "apps.crews"
    label = "crews"
    verbose_name = "Crews, orchestrations & runs"
    default_auto_field = "django.db.models.BigAutoField"
