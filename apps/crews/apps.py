from django.apps import AppConfig


class CrewsConfig(AppConfig):
    name = "apps.crews"
    label = "crews"
    verbose_name = "Crews & orchestrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from kai_platform.realtime.routing import add_websocket_route

        def consumers():
            from apps.crews import consumers

            return consumers

        add_websocket_route(r"^api/(?:v1/)?execution-logs/(?P<execution_id>[^/]+)/stream/?$",
                            lambda: consumers().ExecutionLogStreamConsumer.as_asgi())
        add_websocket_route(r"^api/(?:v1/)?orchestrations/(?P<orchestration_id>[^/]+)/stream/?$",
                            lambda: consumers().OrchestrationStreamConsumer.as_asgi())
        from apps.agents import orchestrations
        from apps.crews import client_events, runners, services  # noqa: F401 (hub client events, crew/orchestration runs)
        from apps.crews.models import Orchestration

        orchestrations.provide(
            get=lambda organization, pk: Orchestration.objects.for_org(organization).filter(pk=pk).first(),
            create=lambda organization, actor, data: services.orchestration_create(
                organization=organization, actor=actor, data=data),
            start=lambda orchestration, actor, inputs, params: services.orchestration_start(
                orchestration=orchestration, actor=actor, inputs=inputs, params=params))
