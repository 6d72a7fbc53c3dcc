"""Serializer bases: unknown body fields are refused (400 naming them) rather than silently dropped.
Read-only fields (ids, organization, owner, counters) are known, and ignored on input.

``KaiModelSerializer`` also keeps two things off the hot path of every list response (B1/B3 in
bench/), with output identical to DRF's:

* the *field recipe*: DRF's ``ModelSerializer.get_fields`` introspects the model for every field of
  every serializer instance (labels, validators, choices). The result of that introspection -- the
  field class and keyword arguments of each model-built field -- is the same every time, so it is
  computed once per serializer class and each instance builds fresh fields from it. A class that
  overrides one of the methods that introspection goes through keeps DRF's path.
* the *read plan*: ``to_representation`` reads a plain attribute with ``getattr`` instead of DRF's
  generic ``get_attribute`` (which handles dict instances, dotted sources, callables and missing
  attributes); anything else, or any surprise (a callable value, an exception), takes DRF's path.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.fields import Field, SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.utils import model_meta


class StrictFieldsMixin:
    def to_internal_value(self, data):
        if isinstance(data, dict):
            known = set(self.fields.keys())
            unknown = sorted(str(key) for key in data.keys() if key not in known)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class KaiSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


#: methods the model introspection of ``ModelSerializer.get_fields`` goes through: a serializer class
#: overriding one of them builds its fields DRF's way every time (``get_fields`` itself may be
#: overridden: overrides post-process what ``super().get_fields()`` returns)
_RECIPE_METHODS = ("get_field_names", "get_default_field_names", "get_extra_kwargs",
                   "get_uniqueness_extra_kwargs", "include_extra_kwargs", "build_field", "build_standard_field",
                   "build_relational_field", "build_nested_field", "build_property_field", "build_url_field",
                   "build_unknown_field")
_recipes: dict[type, list | None] = {}
_SLOW = object()


def _recipe_cacheable(cls) -> bool:
    for klass in cls.__mro__:
        if klass in (KaiModelSerializer, serializers.ModelSerializer):
            return True
        if any(name in klass.__dict__ for name in _RECIPE_METHODS):
            return False
    return False


def _build(field_class, kwargs: dict, nested: tuple):
    if nested:
        kwargs = {**kwargs, **{key: copy.deepcopy(kwargs[key]) for key in nested}}
    return field_class(**kwargs)


class KaiModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    def get_fields(self):
        cls = type(self)
        try:
            recipe = _recipes[cls]
        except KeyError:
            recipe = _recipes[cls] = self._field_recipe() if _recipe_cacheable(cls) else None
        if recipe is None:
            return super().get_fields()
        if self.url_field_name is None:
            self.url_field_name = serializers.api_settings.URL_FIELD_NAME
        declared = copy.deepcopy(self._declared_fields)
        return {name: declared[name] if spec is None else _build(*spec) for name, spec in recipe}

    def _field_recipe(self) -> list | None:
        """``[(name, None | (field_class, kwargs))]`` in DRF's order (None: a declared field): DRF's
        ``ModelSerializer.get_fields`` up to the point where it instantiates the fields."""
        fields = super().get_fields()  # DRF's checks (Meta, abstract model, depth, many-to-many defaults)
        if self.url_field_name is None:
            self.url_field_name = serializers.api_settings.URL_FIELD_NAME
        declared_fields = copy.deepcopy(self._declared_fields)
        model = self.Meta.model
        depth = getattr(self.Meta, "depth", 0)
        info = model_meta.get_field_info(model)
        field_names = self.get_field_names(declared_fields, info)
        extra_kwargs = self.get_extra_kwargs()
        extra_kwargs, hidden_fields = self.get_uniqueness_extra_kwargs(field_names, declared_fields, extra_kwargs)
        if hidden_fields or list(fields) != list(field_names):
            return None
        recipe = []
        for field_name in field_names:
            if field_name in declared_fields:
                recipe.append((field_name, None))
                continue
            extra_field_kwargs = extra_kwargs.get(field_name, {})
            source = extra_field_kwargs.get("source", "*")
            if source == "*":
                source = field_name
            field_class, field_kwargs = self.build_field(source, info, model, depth)
            field_kwargs = self.include_extra_kwargs(field_kwargs, extra_field_kwargs)
            if type(fields[field_name]) is not field_class:
                return None
            # fields given as arguments (a ListField's child) are bound to their parent: fresh each time
            nested = tuple(key for key, value in field_kwargs.items() if isinstance(value, Field))
            recipe.append((field_name, (field_class, field_kwargs, nested)))
        return recipe

    def to_representation(self, instance):
        if isinstance(instance, Mapping):
            return super().to_representation(instance)
        plan = self.__dict__.get("_kai_read_plan")
        if plan is None:
            plan = self.__dict__["_kai_read_plan"] = [
                (field.field_name, field, field.to_representation,
                 field.source_attrs[0] if len(field.source_attrs) == 1
                 and type(field).get_attribute is Field.get_attribute else None)
                for field in self._readable_fields]
        ret = {}
        for name, field, represent, attr in plan:
            value = _SLOW
            if attr is not None:
                try:
                    value = getattr(instance, attr)
                except Exception:  # ObjectDoesNotExist, AttributeError, ...: DRF's handling below
                    value = _SLOW
                else:
                    if callable(value):
                        value = _SLOW
            if value is _SLOW:
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
            if value is None or (isinstance(value, PKOnlyObject) and value.pk is None):
                ret[name] = None
            else:
                ret[name] = represent(value)
        return ret


class JSONObjectField(serializers.JSONField):
    """A JSON object (dict), size-capped."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must serialize to at most {max_bytes} bytes.",
    }

    def __init__(self, *args, max_bytes: int = 65536, **kwargs):
        self.max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")
        from kai_platform.api.renderers import dumps

        if len(dumps(value)) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        return value


def validated(serializer_class, request, *, data=None, **context) -> dict:
    """Validate the request body (or ``data``) with ``serializer_class``; 400 envelope on error."""
    serializer = serializer_class(data=request.data if data is None else data,
                                  context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
