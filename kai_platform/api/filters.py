"""Filters shared by the API's list endpoints."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Model, QuerySet
from django.http import QueryDict
from django_filters.fields import IsoDateTimeField, ModelChoiceField
from django_filters.rest_framework import DjangoFilterBackend, FilterSet
from rest_framework import exceptions

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class UTCIsoDateTimeField(IsoDateTimeField):  # type: ignore[misc]  # django-filter ships no types
    """ISO 8601 date-times normalised to UTC: Python accepts UTC offsets up to ±24 h, PostgreSQL only
    up to ±15:59, so an exotic offset would otherwise reach the database as an error (a 5xx)."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        parsed: datetime.datetime | None = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(datetime.UTC)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+10:00 is before year 1 in UTC
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):  # type: ignore[misc]  # django-filter ships no types
    field_class = UTCIsoDateTimeField


class AnyIdModelChoiceField(ModelChoiceField):  # type: ignore[misc]  # django-filter ships no types
    """A related object's id: a well-formed id of no visible object filters to nothing (as any other value
    that matches no row), not a 400 -- the OpenAPI document offers any uuid; existence is not a format."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except ValidationError:
            if value in self.empty_values:
                raise
            field = (
                self.queryset.model._meta.get_field(self.to_field_name)
                if self.to_field_name
                else self.queryset.model._meta.pk
            )
            try:
                return field.to_python(value)
            except ValidationError:
                raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice") from None


class AnyIdModelChoiceFilter(django_filters.ModelChoiceFilter):  # type: ignore[misc]  # django-filter ships no types
    field_class = AnyIdModelChoiceField


def _any_id(defaults: dict[str, Any]) -> dict[str, Any]:
    return {**defaults, "filter_class": AnyIdModelChoiceFilter}


class KaiFilterSet(FilterSet):  # type: ignore[misc]  # django-filter ships no types
    """The base of the API's filtersets (and of those ``filterset_fields`` make): a foreign key filters by
    any well-formed id (``AnyIdModelChoiceFilter``)."""

    FILTER_DEFAULTS = {
        **FilterSet.FILTER_DEFAULTS,
        models.ForeignKey: _any_id(FilterSet.FILTER_DEFAULTS[models.ForeignKey]),
        models.OneToOneField: _any_id(FilterSet.FILTER_DEFAULTS[models.OneToOneField]),
    }


class KaiFilterBackend(DjangoFilterBackend):  # type: ignore[misc]  # django-filter ships no types
    """django-filter's DRF backend, minus the work a request that filters on nothing does not need
    (the hottest lists are read unfiltered; B1/B3 in bench/):

    * the ``AutoFilterSet`` of a view's ``filterset_fields`` is made once per view class and model,
      not once per request;
    * when no query parameter names one of the filterset's filters, the queryset is returned as it
      is, without building the filterset and its form -- for filtersets where that is provably what
      django-filter would do: stock FilterSet methods and form, no required filter, and filters
      whose ``filter`` is django-filter's own (each returns the queryset unchanged for an empty
      value) or a ``method=`` (the same).
    """

    filterset_base = KaiFilterSet
    _auto_classes: dict[tuple[type[APIView], type[Model], str], type[KaiFilterSet]] = {}
    _skippable: dict[type[KaiFilterSet], tuple[str, ...] | None] = {}

    def get_filterset_class(self, view: APIView, queryset: QuerySet[Any] | None = None) -> type[KaiFilterSet] | None:
        filterset_fields = getattr(view, "filterset_fields", None)
        if getattr(view, "filterset_class", None) or not filterset_fields or queryset is None:
            filterset_class: type[KaiFilterSet] | None = super().get_filterset_class(view, queryset)
            return filterset_class
        key = (type(view), queryset.model, repr(filterset_fields))
        cls = self._auto_classes.get(key)
        if cls is None:
            cls = self._auto_classes[key] = super().get_filterset_class(view, queryset)
        return cls

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: APIView) -> QuerySet[Any]:
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None:
            return queryset
        try:
            names = self._skippable[filterset_class]
        except KeyError:
            names = self._skippable[filterset_class] = _filter_names_if_skippable(filterset_class)
        if names is not None and not any(key.startswith(names) for key in request.query_params):
            return queryset
        _check_booleans(filterset_class, request.query_params)
        filtered: QuerySet[Any] = super().filter_queryset(request, queryset, view)
        return filtered


#: what django-filter's BooleanWidget reads as a boolean; anything else it silently ignores
_BOOLEANS = frozenset({"true", "false", "1", "0"})


#: filters of a typed value (an id, a date, a number) or of a choice: the OpenAPI document gives them a
#: format or an enum, which the empty string is not
_TYPED = (
    django_filters.ChoiceFilter,
    django_filters.UUIDFilter,
    django_filters.ModelChoiceFilter,
    django_filters.DateFilter,
    django_filters.DateTimeFilter,
    django_filters.NumberFilter,
)


def _check_booleans(filterset_class: type[KaiFilterSet], params: QueryDict) -> None:
    """What django-filter would silently ignore is a 400, not an unfiltered list: a boolean filter given
    something that is not a boolean, a typed filter given an empty value."""
    errors: dict[str, list[str]] = {}
    for name, filter_ in filterset_class.base_filters.items():
        values = [str(value) for value in params.getlist(name)] if name in params else []
        if isinstance(filter_, django_filters.BooleanFilter) and any(v.lower() not in _BOOLEANS for v in values):
            errors[name] = ["Must be true or false."]
        elif isinstance(filter_, _TYPED) and any(not v.strip() for v in values):
            errors[name] = ["May not be empty (leave the parameter out to not filter)."]
    if errors:
        raise exceptions.ValidationError(errors)


_FILTERSET_METHODS = ("__init__", "is_valid", "errors", "filter_queryset", "qs", "get_form_class", "form")


def _stock(function: object) -> bool:
    return getattr(function, "__module__", "").split(".")[0] == "django_filters"


def _filter_names_if_skippable(filterset_class: type[KaiFilterSet]) -> tuple[str, ...] | None:
    """The filter names (form data keys start with them) when an unfiltered request may skip the
    filterset; None when it may not."""
    for klass in filterset_class.__mro__:
        if klass.__module__.split(".")[0] in ("django_filters", "builtins"):
            continue
        if any(name in klass.__dict__ for name in _FILTERSET_METHODS):
            return None
    if filterset_class._meta.form is not forms.Form:
        return None
    for filter_ in filterset_class.base_filters.values():
        if filter_.extra.get("required") or getattr(filter_, "required", False):
            return None
        if getattr(filter_, "method", None) is None and not _stock(type(filter_).filter):
            return None
    return tuple(filterset_class.base_filters)
