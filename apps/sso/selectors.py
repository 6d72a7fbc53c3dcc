"""Reads of the SSO app."""

from __future__ import annotations

from apps.sso.models import SSOConnection

#: tests replace this with a resolver of their own (``dns.resolver.Resolver``-like)
_resolver = None


def dns_resolver():
    return _resolver


def set_dns_resolver(resolver) -> None:
    global _resolver
    _resolver = resolver


def active_connection_for_slug(*, slug: str) -> SSOConnection | None:
    return (
        SSOConnection.objects.select_related("organization")
        .filter(organization__slug=slug, organization__is_active=True, is_active=True)
        .first()
    )
