"""Filters shared by the API's list endpoints."""
from __future__ import annotations

import datetime

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 date-times normalised to UTC: Python accepts UTC offsets up to ±24 h, PostgreSQL only
    up to ±15:59, so an exotic offset would otherwise reach the database as an error (a 5xx)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(datetime.timezone.utc)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00+10:00 is before year 1 in UTC
            raise ValidationError(self.error_messages["invalid"], code="invalid") from exc


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField
