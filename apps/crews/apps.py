from django.apps import AppConfig

from apps.agents import orchestrations
from kai_platform.realtime.routing import add_websocket_route


class CrewsConfig(AppConfig):
    name = "apps.crews"
    label = "crews"
    verbose_name = "Crews & orchestrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        def consumers():
            # deferred: app registry — the route's consumer (views, models) loads when the ASGI router is built
            from apps.crews import consumers

            return consumers

        add_websocket_route(
            r"^api/(?:v1/)?execution-logs/(?P<execution_id>[^/]+)/stream/?$",
            lambda: consumers().ExecutionLogStreamConsumer.as_asgi(),
        )
        add_websocket_route(
            r"^api/(?:v1/)?orchestrations/(?P<orchestration_id>[^/]+)/stream/?$",
            lambda: consumers().OrchestrationStreamConsumer.as_asgi(),
        )
        # deferred: app registry — ready() runs once every app's models are loaded; apps.py loads before them
        from apps.crews import client_events, runners, services  # noqa: F401 (hub client events, crew/orchestration runs)
        from apps.crews.models import Orchestration

        orchestrations.provide(
            get=lambda organization, pk: Orchestration.objects.for_org(organization).filter(pk=pk).first(),
            create=lambda organization, actor, data: services.orchestration_create(
                organization=organization, actor=actor, data=data
            ),
            start=lambda orchestration, actor, inputs, params: services.orchestration_start(
                orchestration=orchestration, actor=actor, inputs=inputs, params=params
            ),
        )
