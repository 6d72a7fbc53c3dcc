"""The test IdP's routes: OIDC (DOT), a login form, and a control endpoint the tests set users and
the client's redirect URIs with."""

import json

from django.contrib.auth import views as auth_views
from django.contrib.auth.models import Group, User
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import Application


@csrf_exempt
def control(request):
    body = json.loads(request.body)
    if "redirect_uris" in body:
        Application.objects.filter(client_id=body["client_id"]).update(redirect_uris=" ".join(body["redirect_uris"]))
    if "user" in body:
        spec = body["user"]
        user, _ = User.objects.get_or_create(username=spec["username"])
        user.email, user.first_name = spec["email"], spec.get("name", "")
        user.set_password(spec["password"])
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in spec.get("groups", [])])
    return JsonResponse({"ok": True})


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("accounts/login/", auth_views.LoginView.as_view()),
    path("control", control),
]
