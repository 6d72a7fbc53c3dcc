"""Routes: the API under /api/v1/ (canonical) and /api/ (docs/api.md), docs, health, admin."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from kai_platform.api.views import HealthView, MetricsView, OpenApiDocumentView

# Each app's urls module registers its viewsets on the shared router when imported.
API_APPS = [
    "apps.accounts.urls",
    "apps.events.urls",
    "apps.audit.urls",
    "apps.files.urls",
    "apps.agents.urls",
    "apps.crews.urls",
    "apps.scheduler.urls",
    "apps.workflows.urls",
    "apps.approvals.urls",
    "apps.webhooks.urls",
    "apps.quotas.urls",
    "apps.system.urls",
    "apps.voice.urls",
    "apps.stepup.urls",
    "apps.retention.urls",
    "apps.knowledge.urls",
    "apps.sso.urls",
    "apps.schemas.urls",
]
# Pages and protocols outside /api (dashboard, MCP deployments): each module's urlpatterns mount at /.
SITE_APPS = ["apps.console.site_urls", "apps.sso.site_urls"]

from kai_platform.api.routers import router  # noqa: E402

api_patterns: list[URLPattern | URLResolver] = []  # system/health lives in apps.system
for module in API_APPS:
    api_patterns.append(path("", include(module)))
api_patterns += router.urls

urlpatterns = [
    path("health", HealthView.as_view(), name="health"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/v1/", include((api_patterns, "api"), namespace="v1")),
    path("api/", include((api_patterns, "api"), namespace="api")),
    path("api-openapi.json", OpenApiDocumentView.as_view(), name="openapi-schema"),
    path("api-docs", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="api-docs"),
    path("api-redoc", SpectacularRedocView.as_view(url_name="openapi-schema"), name="api-redoc"),
    path("admin/", admin.site.urls),
]
urlpatterns += [path("", include(module)) for module in SITE_APPS]

handler400 = "kai_platform.api.exceptions.handler400"
handler403 = "kai_platform.api.exceptions.handler403"
handler404 = "kai_platform.api.exceptions.handler404"
handler500 = "kai_platform.api.exceptions.handler500"

admin.site.site_header = "kAI operator console"
admin.site.site_title = "kAI"
admin.site.index_title = "Operations"
admin.site.site_url = "/dashboard"  # the header's "View site" link opens the live dashboard
