"""API routes of apps.sso (the IdP callbacks and SCIM are mounted at / by ``site_urls``)."""

from django.urls import path

from apps.sso import views
from kai_platform.api.routers import router

router.register("sso/connections", views.SSOConnectionViewSet, basename="sso-connection")
router.register("sso/scim-tokens", views.ScimTokenViewSet, basename="scim-token")

urlpatterns = [
    path("auth/sso/exchange", views.SSOExchangeView.as_view(), name="auth-sso-exchange"),
    path("auth/sso/<slug:org_slug>/login", views.SSOLoginView.as_view(), name="auth-sso-login"),
]
