"""Routes outside /api: allauth's OIDC and SAML endpoints (callbacks, ACS, SP metadata) and SCIM 2.0."""

from django.urls import include, path

from apps.sso import saml

urlpatterns = [
    # /sso/oidc/<provider id>/login/callback/ and /sso/saml/<provider id>/{login,acs,metadata}/
    path("sso/", include("allauth.socialaccount.providers.openid_connect.urls")),
    path("sso/saml/<str:organization_slug>/acs/finish/", saml.finish_acs, name="sso-saml-finish-acs"),
    path("sso/", include("allauth.socialaccount.providers.saml.urls")),
    path("scim/v2/", include("apps.sso.scim_urls")),
]
