"""Operator console building blocks shared by every app's admin."""

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

if TYPE_CHECKING:  # generic in django-stubs only
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class ReadOnlyAdmin(_ModelAdmin):
    """For records nobody edits by hand (events, audit rows)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def admin_link(obj: Model | None, text: object = None) -> str:
    """A link to ``obj``'s change page in the admin (``-`` for None). Reads only what the row
    already holds: pass objects fetched with ``list_select_related``."""
    if obj is None:
        return "-"
    try:
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(text if text is not None else obj)
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def id_link(model: type[Model] | str, pk: object, text: object = None) -> str:
    """A link to the change page of ``model`` (a class, or ``"app_label.Model"`` so lower layers
    link to higher ones without importing them) row ``pk`` without fetching it (``-`` for None)."""
    if pk is None:
        return "-"
    if isinstance(model, str):
        model = apps.get_model(model)
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else str(pk)[:8])


def changelist_link(model: type[Model], text: object, **filters: Any) -> str:
    """A link to ``model``'s changelist narrowed by ``filters`` (e.g. ``execution__id__exact=…``)."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), text)


#: the created-at filter every changelist offers
CREATED = ("created_at", admin.DateFieldListFilter)


class TenantAdmin(_ModelAdmin):
    """Base of tenant models' admins: organization shown, joined and filterable."""

    list_select_related: ClassVar[tuple[str, ...]] = ("organization",)
    list_filter: ClassVar[tuple[str | tuple[str, type[admin.FieldListFilter]], ...]] = ("organization", CREATED)
    search_fields: ClassVar[tuple[str, ...]] = ("=id", "organization__slug")
    readonly_fields: ClassVar[tuple[str, ...]] = ("id", "organization", "created_by", "created_at", "updated_at")
