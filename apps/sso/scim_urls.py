"""SCIM 2.0 routes under /scim/v2/ (no trailing slash, as IdPs call them)."""

from django.urls import path

from apps.sso import scim_views as views

urlpatterns = [
    path("Users", views.ScimUsersView.as_view(), name="scim-users"),
    path("Users/<str:pk>", views.ScimUserView.as_view(), name="scim-user"),
    path("Groups", views.ScimGroupsView.as_view(), name="scim-groups"),
    path("Groups/<str:pk>", views.ScimGroupView.as_view(), name="scim-group"),
    path("ServiceProviderConfig", views.ServiceProviderConfigView.as_view(), name="scim-config"),
]
