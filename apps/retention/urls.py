"""API routes of apps.retention."""

from django.urls import path

from apps.retention import views

urlpatterns = [path("retention", views.RetentionPolicyView.as_view(), name="retention-policy")]
