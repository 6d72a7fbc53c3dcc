"""The live dashboard (``/dashboard``): session login; staff see the platform, an organization
owner sees their organization; anyone else gets 403. Reads come from ``apps.console.selectors``."""

from __future__ import annotations

import uuid

from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from apps.accounts.models import Organization
from apps.console import selectors, services


class ConsoleScope:
    def __init__(self, *, platform: bool, organization=None, organizations=()):
        self.platform = platform
        self.organization = organization  # the one shown (None: every organization)
        self.organizations = list(organizations)  # what the picker offers


def resolve_scope(request) -> ConsoleScope | None:
    """Staff: the platform, optionally narrowed by ``?organization=<slug|id>``; an owner: one of the
    organizations they own (the first unless chosen); anyone else: None."""
    user = request.user
    wanted = request.GET.get("organization") or ""
    if user.is_staff:
        organization = None
        if wanted:
            organization = _pick(Organization.objects.filter(is_active=True), wanted)
            if organization is None:
                raise Http404("Unknown organization.")
        return ConsoleScope(platform=True, organization=organization)
    owned = selectors.owned_organizations(user)
    if not owned:
        return None
    organization = next((o for o in owned if wanted in (str(o.pk), o.slug)), None) if wanted else owned[0]
    if organization is None:
        return None
    return ConsoleScope(platform=False, organization=organization, organizations=owned)


def _pick(queryset, ref: str):
    try:
        return queryset.filter(pk=uuid.UUID(ref)).first()
    except ValueError:
        return queryset.filter(slug=ref).first()


class ConsoleView(View):
    """Session users only; anonymous users go to the console login."""

    json = False
    scope: ConsoleScope  # set by dispatch before any handler runs

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            if self.json:
                return JsonResponse({"detail": "Log in first.", "code": "UNAUTHORIZED"}, status=401)
            return redirect(f"{reverse('console-login')}?next={request.get_full_path()}")
        scope = resolve_scope(request)
        if scope is None:
            if self.json:
                raise PermissionDenied("The console is for staff and organization owners.")
            return HttpResponseForbidden(render(request, "console/forbidden.html").content)
        self.scope = scope
        return super().dispatch(request, *args, **kwargs)


class DashboardView(ConsoleView):
    def get(self, request):
        organization = self.scope.organization
        data = selectors.dashboard(organization=organization)
        return render(
            request,
            "console/dashboard.html",
            {
                "data": data,
                "scope": self.scope,
                "organization": organization,
                "config": {
                    "platform": self.scope.platform,
                    "staff": request.user.is_staff,
                    "organization_id": str(organization.pk) if organization else None,
                    "socket_organization": None if self.scope.platform else str(organization.pk),
                    "socket_path": "/api/v1/ws/console",
                    "token_url": reverse("console-token"),
                    "data_url": reverse("console-data"),
                    "run_url": reverse("console-run", args=["00000000-0000-0000-0000-000000000000"]),
                    "run_page_url": reverse("console-run-page", args=["00000000-0000-0000-0000-000000000000"]),
                    "charts_url": reverse("console-charts"),
                    "admin_url": reverse("admin:index") if request.user.is_staff else None,
                    "query": request.GET.urlencode(),
                },
            },
        )


class DashboardTokenView(ConsoleView):
    json = True

    def get(self, request):
        return JsonResponse(services.console_token_issue(user=request.user), headers={"Cache-Control": "no-store"})


class DashboardDataView(ConsoleView):
    json = True

    def get(self, request):
        return JsonResponse(selectors.dashboard(organization=self.scope.organization))


class DashboardRunView(ConsoleView):
    json = True

    def get(self, request, execution_id):
        row = selectors.run_detail(organization=self.scope.organization, execution_id=execution_id)
        if row is None:
            raise Http404("No such run in this scope.")
        return JsonResponse(row)


class ConsoleLoginView(auth_views.LoginView):
    """Staff and organization owners sign in here (the admin's login takes staff only)."""

    template_name = "console/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return reverse("console-dashboard")


class ConsoleLogoutView(auth_views.LogoutView):
    next_page = "console-login"
