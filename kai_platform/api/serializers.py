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
  Stock fields whose representation is a builtin (``str`` of a CharField/UUIDField, ``int``, the
  value of a JSONField) are represented by it directly. When every readable field of a class is a
  stock field that depends on nothing but its own arguments, the class's plan is built once and
  shared: representing an object then builds no fields at all (``serializer.fields`` is still
  built, DRF's way, for whoever asks for it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.validators import URLValidator
from django.db.models import Model
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import fields, serializers
from rest_framework.fields import Field, SkipField
from rest_framework.relations import ManyRelatedField, PKOnlyObject, RelatedField
from rest_framework.settings import api_settings
from rest_framework.utils import model_meta

from kai_platform.api.renderers import dumps
from kai_platform.api.url_pattern import HTTP_URL_PATTERN, HTTP_URL_RULE, HTTP_URL_SCHEMES

if TYPE_CHECKING:
    from rest_framework.request import Request

#: the JSON types each field kind takes, as the OpenAPI document states them (DRF alone would
#: coerce 0 to "0", "1" to True, "5" to 5)
_JSON_TYPES = (
    (fields.BooleanField, (bool,), "a boolean"),
    (fields.CharField, (str,), "a string"),
    (fields.IntegerField, (int,), "an integer"),
    (fields.FloatField, (int, float), "a number"),
    (fields.UUIDField, (str,), "a string"),
    (fields.DateTimeField, (str,), "a string"),
    (fields.DateField, (str,), "a string"),
    (fields.ListField, (list,), "an array"),
    (fields.DictField, (dict,), "an object"),
)

AnyField = Field[Any, Any, Any, Any]
#: how a read plan represents a value (None: the value itself)
Representer = Callable[[Any], Any] | None
#: ``(name, field, representer, attribute or None)``
ReadPlan = list[tuple[str, AnyField, Representer, str | None]]
#: ``(name, None | (field_class, kwargs, nested keys))``
FieldRecipe = list[tuple[str, tuple[type[AnyField], dict[str, Any], tuple[str, ...]] | None]]


def _integral(field: AnyField, value: Any) -> Any:
    """JSON Schema 2020-12 (OpenAPI 3.1) counts ``1.0`` as an integer: an integer field takes it, as the
    whole number it is (DRF alone reads ``1e20`` as text and refuses it)."""
    if isinstance(field, fields.IntegerField) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(field, fields.ListField) and field.child is not None and isinstance(value, list):
        return [_integral(field.child, item) for item in value]
    if isinstance(field, fields.DictField) and field.child is not None and isinstance(value, dict):
        return {key: _integral(field.child, item) for key, item in value.items()}
    return value


def _type_error(field: AnyField, value: object) -> str | None:
    if value is None:
        return None  # null is the field's own rule (allow_null)
    for kind, types, name in _JSON_TYPES:
        if isinstance(field, kind):
            if isinstance(value, bool) and bool not in types:
                return f"Incorrect type: expected {name}."
            if not isinstance(value, types):
                return f"Incorrect type: expected {name}."
            if isinstance(field, fields.ListField) and field.child is not None:
                for item in value:  # type: ignore[union-attr]
                    if (error := _type_error(field.child, item)) is not None:
                        return error.replace("expected", "expected items of")
            if isinstance(field, fields.DictField) and field.child is not None:
                for item in value.values():  # type: ignore[union-attr]
                    if (error := _type_error(field.child, item)) is not None:
                        return error.replace("expected", "expected values of")
            return None
    return None


if TYPE_CHECKING:  # the mixin extends DRF's Serializer (its fields, to_internal_value)
    _Serializer = serializers.Serializer[Any]
else:
    _Serializer = object


class StrictFieldsMixin(_Serializer):
    """Refuses unknown fields and, in JSON bodies, values of another type than the field's."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(self.fields.keys())
            unknown = sorted(str(key) for key in data.keys() if key not in known)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
            form = hasattr(data, "getlist")  # multipart/query strings: every value is text
            if not form:
                data = {key: _integral(self.fields[key], value) for key, value in data.items()}
            errors: dict[str, Any] = {}
            for key, value in data.items():
                field = self.fields[key]
                if field.read_only:
                    continue
                if form:
                    if (
                        value == ""
                        and not getattr(field, "allow_blank", False)
                        and not isinstance(field, fields.FileField)
                    ):
                        errors[key] = ["This field may not be blank."]
                elif (error := _type_error(field, value)) is not None:
                    errors[key] = [error]
            if errors:  # reported beside the other fields' errors
                clean: MultiValueDict[str, Any] | dict[str, Any]
                if form:  # a shallow copy: a QueryDict's copy() deep-copies uploaded files (unpicklable)
                    clean = MultiValueDict({key: values for key, values in data.lists() if key not in errors})
                else:
                    clean = {key: value for key, value in data.items() if key not in errors}
                try:
                    super().to_internal_value(clean)
                except serializers.ValidationError as exc:
                    if isinstance(exc.detail, dict):
                        errors = {**exc.detail, **errors}
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class KaiSerializer(StrictFieldsMixin, serializers.Serializer[Any]):
    pass


#: methods the model introspection of ``ModelSerializer.get_fields`` goes through: a serializer class
#: overriding one of them builds its fields DRF's way every time (``get_fields`` itself may be
#: overridden: overrides post-process what ``super().get_fields()`` returns)
_RECIPE_METHODS = (
    "get_field_names",
    "get_default_field_names",
    "get_extra_kwargs",
    "get_uniqueness_extra_kwargs",
    "include_extra_kwargs",
    "build_field",
    "build_standard_field",
    "build_relational_field",
    "build_nested_field",
    "build_property_field",
    "build_url_field",
    "build_unknown_field",
)
_recipes: dict[type[KaiModelSerializer], FieldRecipe | None] = {}
_SLOW = object()


def _recipe_cacheable(cls: type[KaiModelSerializer]) -> bool:
    for klass in cls.__mro__:
        if klass in (KaiModelSerializer, serializers.ModelSerializer):
            return True
        if any(name in klass.__dict__ for name in _RECIPE_METHODS):
            return False
    return False


def _build(field_class: type[AnyField], kwargs: dict[str, Any], nested: tuple[str, ...]) -> AnyField:
    if nested:
        kwargs = {**kwargs, **{key: copy.deepcopy(kwargs[key]) for key in nested}}
    return field_class(**kwargs)


class KaiModelSerializer(StrictFieldsMixin, serializers.ModelSerializer[Any]):
    def get_fields(self) -> dict[str, AnyField]:
        cls = type(self)
        try:
            recipe = _recipes[cls]
        except KeyError:
            recipe = _recipes[cls] = self._field_recipe() if _recipe_cacheable(cls) else None
        if recipe is None:
            return super().get_fields()
        if self.url_field_name is None:
            self.url_field_name = serializers.api_settings.URL_FIELD_NAME  # type: ignore[misc,attr-defined]
        declared = copy.deepcopy(self._declared_fields)
        return {name: declared[name] if spec is None else _build(*spec) for name, spec in recipe}

    def _field_recipe(self) -> FieldRecipe | None:
        """``[(name, None | (field_class, kwargs))]`` in DRF's order (None: a declared field): DRF's
        ``ModelSerializer.get_fields`` up to the point where it instantiates the fields."""
        fields = super().get_fields()  # DRF's checks (Meta, abstract model, depth, many-to-many defaults)
        if self.url_field_name is None:
            self.url_field_name = serializers.api_settings.URL_FIELD_NAME  # type: ignore[misc,attr-defined]
        declared_fields = copy.deepcopy(self._declared_fields)
        model = self.Meta.model
        depth = getattr(self.Meta, "depth", 0)
        info = model_meta.get_field_info(model)
        field_names = self.get_field_names(declared_fields, info)
        extra_kwargs = self.get_extra_kwargs()
        extra_kwargs, hidden_fields = self.get_uniqueness_extra_kwargs(field_names, declared_fields, extra_kwargs)
        if hidden_fields or list(fields) != list(field_names):
            return None
        recipe: FieldRecipe = []
        for field_name in field_names:
            if field_name in declared_fields:
                recipe.append((field_name, None))
                continue
            extra_field_kwargs = extra_kwargs.get(field_name, {})
            source = extra_field_kwargs.get("source", "*")
            if source == "*":
                source = field_name
            field_class, field_kwargs = self.build_field(source, info, model, depth)
            field_kwargs = self.include_extra_kwargs(field_kwargs, extra_field_kwargs)  # type: ignore[assignment]
            if type(fields[field_name]) is not field_class:
                return None
            # fields given as arguments (a ListField's child) are bound to their parent: fresh each time
            nested = tuple(key for key, value in field_kwargs.items() if isinstance(value, Field))
            recipe.append((field_name, (field_class, field_kwargs, nested)))
        return recipe

    def to_representation(self, instance: Any) -> dict[str, Any]:
        if isinstance(instance, Mapping):
            return super().to_representation(instance)
        plan = self.__dict__.get("_kai_read_plan")
        if plan is None:
            if "fields" not in self.__dict__:  # nobody needed this instance's own fields yet
                plan = _class_read_plan(type(self))
            if plan is None:
                plan = _read_plan(self._readable_fields)
            self.__dict__["_kai_read_plan"] = plan
        ret: dict[str, Any] = {}
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
            elif represent is None:
                ret[name] = value
            else:
                ret[name] = represent(value)
        return ret


# --- the read plan ---------------------------------------------------------------------------------


def _bool(represent: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: value if value.__class__ is bool else represent(value)


def _representer(field: AnyField) -> Representer:
    """``field.to_representation``, or what it provably comes down to for DRF's stock fields (None:
    the value itself)."""
    method = type(field).to_representation
    if method is fields.CharField.to_representation:
        return str
    if method is fields.IntegerField.to_representation:
        return int
    if method is fields.UUIDField.to_representation and cast(fields.UUIDField, field).uuid_format == "hex_verbose":
        return str
    if method is fields.JSONField.to_representation and not cast(fields.JSONField, field).binary:
        return None
    if method is fields.ReadOnlyField.to_representation:
        return None
    if method is fields.BooleanField.to_representation:
        return _bool(field.to_representation)
    return field.to_representation


def _read_plan(readable_fields: Iterable[AnyField]) -> ReadPlan:
    """``[(name, field, representer, attribute or None)]``: a plain attribute is read with getattr,
    anything else (dotted or ``*`` sources, relations, method fields) through the field."""
    return [
        (
            cast(str, field.field_name),  # a bound field's name
            field,
            _representer(field),
            field.source_attrs[0]
            if len(field.source_attrs) == 1 and type(field).get_attribute is Field.get_attribute
            else None,
        )
        for field in readable_fields
    ]


#: overriding one of these makes a serializer's fields its own (context, arguments): no class plan
_INSTANCE_FIELD_METHODS = ("__init__", "get_fields", "fields", "_readable_fields")
_class_plans: dict[type[serializers.BaseSerializer[Any]], ReadPlan | None] = {}


def _shareable(field: AnyField) -> bool:
    """May one instance of this field represent values for every serializer of its class, in any
    thread? Stock DRF fields whose representation reads only their own arguments."""
    if isinstance(
        field,
        (
            serializers.BaseSerializer,
            RelatedField,
            ManyRelatedField,
            fields.SerializerMethodField,
            fields.HiddenField,
            fields.FileField,
        ),
    ):
        return False
    if type(field).get_attribute is not Field.get_attribute or field.source == "*":
        return False
    if getattr(field.default, "requires_context", False):
        return False
    if getattr(type(field).to_representation, "__module__", None) != "rest_framework.fields":
        return False
    child = getattr(field, "child", None)
    return child is None or (_shareable(child) if isinstance(child, Field) else False)


def _class_read_plan(cls: type[serializers.BaseSerializer[Any]]) -> ReadPlan | None:
    """The read plan of a serializer class whose fields are all shareable, built once: its
    instances then represent objects without building fields of their own."""
    try:
        return _class_plans[cls]
    except KeyError:
        pass
    plan = None
    for klass in cls.__mro__:
        if klass is KaiModelSerializer:
            try:
                readable = list(cast(type[KaiModelSerializer], cls)()._readable_fields)  # a subclass (its MRO)
            except Exception:  # needs arguments or context: per-instance fields
                readable = None
            if readable is not None and all(_shareable(field) for field in readable):
                plan = _read_plan(readable)
            break
        if any(name in klass.__dict__ for name in _INSTANCE_FIELD_METHODS):
            break
    _class_plans[cls] = plan
    return plan


def _holds_nul(value: object) -> bool:
    """U+0000 in a string or key: PostgreSQL text and jsonb cannot hold it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_holds_nul(v) for v in value)


@extend_schema_field(
    {
        "description": "Any JSON value but null.",
        "anyOf": [
            {"type": "object", "additionalProperties": True},
            {"type": "array", "items": {}},
            {"type": "string"},
            {"type": "number"},
            {"type": "boolean"},
        ],
    }
)
class JSONValueField(serializers.JSONField):
    """Any JSON value but null (DRF's JSONField refuses null unless ``allow_null``; the document says so)."""


@extend_schema_field({"type": "string", "pattern": HTTP_URL_PATTERN, "description": HTTP_URL_RULE})
class HttpURLField(serializers.URLField):
    """A URL the platform calls out to (a webhook's target): http or https only, as the document says."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["help_text"] = " ".join(filter(None, (kwargs.get("help_text"), HTTP_URL_RULE)))
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, URLValidator)]
        self.validators.append(URLValidator(schemes=HTTP_URL_SCHEMES, message="Enter a valid http or https URL."))


@extend_schema_field({"type": "object", "additionalProperties": True})
class JSONObjectField(serializers.JSONField):
    """A JSON object (dict), size-capped."""

    default_error_messages = {
        "not_object": "Must be a JSON object.",
        "too_large": "Must serialize to at most {max_bytes} bytes.",
        "nul": "The NUL character (\\u0000) is not allowed in strings or keys.",
    }

    def __init__(self, *args: Any, max_bytes: int = 65536, **kwargs: Any) -> None:
        self.max_bytes = max_bytes
        super().__init__(*args, **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_object")

        encoded = dumps(value)
        if len(encoded) > self.max_bytes:
            self.fail("too_large", max_bytes=self.max_bytes)
        if b"\\u0000" in encoded and _holds_nul(value):  # a form field's JSON (the parser refuses JSON bodies')
            self.fail("nul")
        return value


@extend_schema_field({"type": "object", "additionalProperties": True, "minProperties": 1})
class NonEmptyJSONObjectField(JSONObjectField):
    """A JSON object with at least one key."""

    default_error_messages = {"empty": "Give at least one field."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        value = super().to_internal_value(data)
        if not value:
            self.fail("empty")
        return value


def validated(
    serializer_class: type[serializers.BaseSerializer[Any]], request: Request, *, data: Any = None, **context: Any
) -> dict[str, Any]:
    """Validate the request body (or ``data``) with ``serializer_class``; 400 envelope on error."""
    serializer = serializer_class(data=request.data if data is None else data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    valid: dict[str, Any] = serializer.validated_data
    return valid


# --- list pages as plain rows ------------------------------------------------------------------------


class RowPlan:
    """A list page of a serializer read as plain rows: ``values_list(*columns)`` and a dict per row
    with the serializer's keys in its order, each value represented as the serializer's field would
    (``str`` of a UUID, the row's own str/int/bool/JSON...). No model instances, no per-field calls.

    A UTC datetime is left to the renderer: orjson writes it exactly as DRF's ISO 8601
    ``DateTimeField`` does (``…Z``), so the JSON is the same bytes (``response.data`` holds the
    datetime). Model properties the serializer shows are computed by the property itself, on an
    object carrying just the columns it reads (``properties``: name -> columns).
    """

    def __init__(self, columns: list[str], entries: list[tuple[Any, ...]], datetimes: list[int]) -> None:
        self.columns = columns
        self._entries = entries  # (name, column index | (fget, dependency indexes), representer | None)
        self._datetimes = datetimes  # entries whose representer is a DateTimeField's

    def rows(self, tuples: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
        entries = self._entries
        if self._datetimes and timezone.get_current_timezone_name() != "UTC":
            entries = [
                entry if index not in self._datetimes else entry[:2] + (entry[3],)
                for index, entry in enumerate(self._entries)
            ]
        out = []
        for values in tuples:
            row: dict[str, Any] = {}
            for entry in entries:
                name, source, represent = entry[0], entry[1], entry[2]
                if source.__class__ is int:
                    value = values[source]
                else:
                    fget, indexes = source
                    value = fget(_Columns(values, indexes))
                row[name] = None if value is None else value if represent is None else represent(value)
            out.append(row)
        return out


class _Columns:
    """What a model property sees of a row: the columns it was declared to read."""

    __slots__ = ("_values", "_indexes")

    def __init__(self, values: Sequence[Any], indexes: dict[str, int]) -> None:
        self._values, self._indexes = values, indexes

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[self._indexes[name]]
        except KeyError:
            raise AttributeError(f"{name!r} is not among the columns declared for this property") from None


def row_plan(
    serializer_class: type[serializers.BaseSerializer[Any]],
    model: type[Model],
    properties: dict[str, Sequence[str]] | None = None,
) -> RowPlan | None:
    """The ``RowPlan`` of ``serializer_class`` over ``model``, or None when a readable field is
    neither a concrete column (read as the field reads it) nor one of ``properties``, or when the
    serializer's fields are not the stock, context-free ones its class read plan requires."""
    properties = properties or {}
    plan = _class_read_plan(serializer_class)
    if plan is None:
        return None
    concrete = {}
    for model_field in model._meta.concrete_fields:
        concrete[model_field.attname] = model_field.attname
        concrete.setdefault(model_field.name, model_field.attname)
    columns: list[str] = []

    def column(attname: str) -> int:
        if attname not in columns:
            columns.append(attname)
        return columns.index(attname)

    entries: list[Any] = []
    datetimes: list[Any] = []
    for name, field, represent, attr in plan:
        if attr is None:
            return None
        datetime_field = type(field).to_representation is fields.DateTimeField.to_representation
        if datetime_field and not (
            settings.USE_TZ
            and not hasattr(field, "timezone")
            and str(getattr(field, "format", api_settings.DATETIME_FORMAT)).lower()
            == api_settings.DATETIME_FORMAT.lower()
            == "iso-8601"
        ):
            return None
        if attr in properties:
            prop = getattr(model, attr, None)
            unknown = [dependency for dependency in properties[attr] if dependency not in concrete]
            if not isinstance(prop, property) or unknown:
                raise ValueError(
                    f"{model.__name__}.{attr} must be a property reading only columns of "
                    f"{model.__name__} (unknown: {unknown})"
                )
            source: Any = (prop.fget, {dependency: column(concrete[dependency]) for dependency in properties[attr]})
        elif attr in concrete:
            source = column(concrete[attr])
        else:
            return None
        if datetime_field:
            datetimes.append(len(entries))
            entries.append((name, source, None, represent))
        else:
            entries.append((name, source, represent, represent))
    return RowPlan(columns, entries, datetimes)
