from importlib import import_module

from django.apps import AppConfig

from apps.agents.crypto import SECRET_ROTATORS


class WorkflowsConfig(AppConfig):
    name = "apps.workflows"
    label = "workflows"
    verbose_name = "Workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        import_module("apps.workflows.hooks")  # registers the run-engine hooks
        import_module("apps.workflows.client_events")  # and its hub client events
        import_module("apps.workflows.mcp_methods")  # and its MCP socket methods
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.workflows.services import workflows_rotate_secrets

        SECRET_ROTATORS["workflow webhook secret(s)"] = workflows_rotate_secrets
