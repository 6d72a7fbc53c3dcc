"""Reads of the event log."""

from django.db.models import Q

from apps.events.models import Event
from kai_platform.tenancy.roles import Role


def visible_events(*, queryset, user, role):
    """Seed 000: a member with role ``user`` sees only the events they caused or that concern
    their own resources; other roles see the organization's whole log."""
    if role == Role.USER:
        queryset = queryset.filter(Q(actor=user) | Q(owner=user))
    return queryset


def events_after(*, organization, after: int, limit: int = 1000):
    return list(Event.objects.for_org(organization).filter(id__gt=after).order_by("id")[:limit])
