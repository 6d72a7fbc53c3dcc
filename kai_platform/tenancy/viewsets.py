"""The one way to serve tenant data over the API.

``TenantScopedViewSet`` builds every queryset from ``model.objects.for_org(request's org)``, so
another organization's object answers 404 exactly like a missing one. Subclasses narrow or
decorate the queryset in ``scope_queryset`` (select_related, visibility by role); overriding
``get_queryset`` itself is refused at class creation unless the class sets the loudly named
``unscoped_queryset_reviewed = True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from kai_platform.api.errors import NotFound, codes
from kai_platform.api.renderers import KaiJSONRenderer
from kai_platform.api.serializers import RowPlan, row_plan
from kai_platform.tenancy.context import get_auth_context, get_organization

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.serializers import BaseSerializer

_F = TypeVar("_F", bound=Callable[..., Any])
_M = TypeVar("_M", bound=Model)


def raise_not_found(model: type[Model]) -> NoReturn:
    """404 for a missing (or another organization's) object, with the model's seed error code
    (``not_found_code``, e.g. ``AGENT_001``) when it declares one."""
    name = model._meta.verbose_name
    raise NotFound(
        f"No {name} with this id in your organization.",
        code=getattr(model, "not_found_code", None) or codes.VALIDATION_ERROR,
    )


def not_offered(handler: _F) -> _F:
    """Marks a viewset method the API does not offer (e.g. ``create`` on a list whose rows are
    made elsewhere): it stays to answer 405 with a helpful detail, but the ``Allow`` header and
    the OpenAPI document leave its HTTP method out."""
    marked: Any = handler
    marked.kai_not_offered = True
    return extend_schema(exclude=True)(handler)


def check_request_rules(request: Request) -> None:
    """400 for what the OpenAPI document says every operation refuses: a PUT without a body (``{}``
    changes nothing; an absent body is a client that forgot it), U+0000 in the query string."""
    if (
        request.method == "PUT"
        and not request.META.get("HTTP_TRANSFER_ENCODING")
        and request.META.get("CONTENT_LENGTH", "") in ("", "0")
    ):
        raise ParseError("A PUT needs a body: the fields to change ({} changes nothing).")
    query = request.META.get("QUERY_STRING", "")
    if "%00" in query and any(
        "\x00" in key or "\x00" in value for key, values in request.query_params.lists() for value in values
    ):
        raise ParseError("The NUL character (%00) is not allowed in query parameters.")


def get_or_404(queryset: QuerySet[_M], **lookup: Any) -> _M:
    """``queryset.get(**lookup)`` or the model's 404 (see ``raise_not_found``)."""
    obj = queryset.filter(**lookup).first()
    if obj is None:
        raise_not_found(queryset.model)
    return obj


if TYPE_CHECKING:  # the mixins below extend DRF's generic view (its request, finalize_response, ...)
    from django.db import models
    from rest_framework.generics import GenericAPIView

    from kai_platform.tenancy.models import TenantModel

    _View = GenericAPIView[Any]
else:
    _View = object


class OrganizationContextMixin(_View):
    """Every API view's base: the request's organization and role, and errors always in the JSON
    envelope, whatever other format (SSE, Prometheus text, NDJSON) the route also answers; and the
    request rules of every operation (``kai_platform.api.schema.request_rules``)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        assert request.method is not None  # a request that reached a view has one
        method = request.method.lower()
        handler = getattr(self, method, None) if method in self.http_method_names else None
        if handler is not None and not getattr(handler, "kai_not_offered", False):  # else the 405 comes first
            check_request_rules(request)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        renderer = getattr(response, "accepted_renderer", None)
        if response.status_code >= 400 and renderer is not None and renderer.media_type != "application/json":
            response.accepted_renderer = KaiJSONRenderer()
            response.accepted_media_type = "application/json"
        return response

    @property
    def organization(self) -> Any:
        return get_organization(self.request)

    # Any, not Optional: the typed views of the apps read these behind permission classes that
    # guarantee a credential (IsAuthenticated, IsOrganizationMember)
    @property
    def auth_context(self) -> Any:
        return get_auth_context(self.request)

    @property
    def role(self) -> Any:
        ctx = get_auth_context(self.request)
        return ctx.role if ctx else None


class TenantScopedViewSetMixin(OrganizationContextMixin):
    model: type[models.Model] | None = None  # a model whose ``objects`` is a TenantManager
    lookup_value_regex = "[^/]+"
    unscoped_queryset_reviewed = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__ and not cls.unscoped_queryset_reviewed:
            raise TypeError(
                f"{cls.__name__} overrides get_queryset; narrow the tenant queryset in scope_queryset() instead."
            )

    def get_model(self) -> type[TenantModel]:
        model = self.model or getattr(getattr(self, "queryset", None), "model", None)
        if model is None:
            raise AssertionError(f"{type(self).__name__} must set `model`")
        return cast("type[TenantModel]", model)

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request org
            return self.get_model().objects.none()
        base = self.get_model().objects.for_org(self.organization)
        return self.scope_queryset(base)

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Narrow/decorate the organization's queryset (never widen it)."""
        return queryset

    @property
    def allowed_methods(self) -> list[str]:
        actions = getattr(self, "action_map", None) or {}
        hidden = {
            method.upper()
            for method, name in actions.items()
            if getattr(getattr(self, name, None), "kai_not_offered", False)
        }
        return [method for method in super().allowed_methods if method not in hidden]

    def get_object(self) -> Any:
        try:
            return super().get_object()
        except Http404:
            raise_not_found(self.get_model())

    # Writes: subclasses call their app's services; the defaults stamp owner and organization.
    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with transaction.atomic():
            serializer.save(organization=self.organization, created_by=self.request.user)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_destroy(self, instance: Any) -> None:
        with transaction.atomic():
            instance.delete()


class TenantScopedViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet[Any]):
    """Full CRUD over one tenant model; PUT accepts partial bodies (docs/decisions.md). Narrow the verbs
    with ``http_method_names`` (e.g. ``READ_ONLY``).

    ``list_as_rows = True`` reads list pages as plain rows (``api.serializers.RowPlan``: the same
    JSON, without model instances or per-field serializer calls) when the serializer allows it;
    ``list_row_properties`` names the model properties the serializer shows and the columns each
    reads. For the hottest lists (B3 in bench/)."""

    put_is_partial = True  # update() below; the OpenAPI document says so (kai_platform.api.schema.KaiAutoSchema)
    list_as_rows = False
    list_row_properties: dict[str, Sequence[str]] | None = None
    _row_plans: dict[tuple[type[TenantScopedViewSet], type[BaseSerializer[Any]]], RowPlan | None] = {}

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        plan = self._row_plan() if self.list_as_rows else None
        if plan is None:
            return super().list(request, *args, **kwargs)
        queryset = self.filter_queryset(self.get_queryset()).values_list(*plan.columns)
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response(plan.rows(queryset))
        return self.get_paginated_response(plan.rows(page))

    def _row_plan(self) -> RowPlan | None:
        key = (type(self), self.get_serializer_class())
        try:
            return self._row_plans[key]
        except KeyError:
            plan = self._row_plans[key] = row_plan(key[1], self.get_model(), self.list_row_properties)
            return plan

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        kwargs["partial"] = True
        return super().update(request, *args, **kwargs)


READ_ONLY = ["get", "head", "options"]
NO_UPDATE = ["get", "post", "delete", "head", "options"]
