"""The console socket ``/api/v1/ws/console``: the hub socket's protocol (auth, subscribe, replay,
reconcile) for the live dashboard, at the dashboard's scope.

* staff: the whole platform — the socket joins every organization's event group, and catch-up
  reads the event table of all organizations;
* an organization owner: their organization (the credential's), exactly like the hub socket;
* anyone else is refused (``PERMISSION_DENIED``).

The dashboard page mints the short-lived access token it connects with
(``apps.console.services.console_token_issue``). The socket only listens: commands are refused.
"""

from __future__ import annotations

from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from apps.accounts.models import Organization
from apps.events.consumers import HubConsumer
from apps.events.models import Event
from apps.events.services import serialize_event
from kai_platform.realtime import relay
from kai_platform.realtime.groups import org_group
from kai_platform.tenancy.roles import Role

#: platform-wide event ids are only ordered per organization: on every catch-up the console re-reads
#: this many ids below its watermark (if recent) so an event that committed late is not skipped
PLATFORM_SLACK_IDS = 2000


def console_scope(user, auth) -> str | None:
    """``"platform"`` (staff), ``"organization"`` (an owner of the credential's organization) or None."""
    if user is not None and user.is_active and user.is_staff:
        return "platform"
    if auth is not None and auth.organization is not None and auth.role == Role.OWNER:
        return "organization"
    return None


def _organization_ids() -> list:
    return list(Organization.objects.filter(is_active=True).values_list("id", flat=True))


def _platform_latest_seq() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def _platform_events_after(after: int, limit: int) -> list[dict]:
    return [serialize_event(e) for e in Event.objects.filter(id__gt=after).order_by("id")[:limit]]


def _platform_recent_before(after: int, floor: int) -> list[dict]:
    since = timezone.now() - timedelta(seconds=max(30.0, 4 * settings.KAI_WS_RECONCILE_SECONDS))
    rows = Event.objects.filter(
        id__gt=max(after - PLATFORM_SLACK_IDS, floor), id__lte=after, created_at__gte=since
    ).order_by("id")
    return [serialize_event(e) for e in rows[:PLATFORM_SLACK_IDS]]


class ConsoleConsumer(HubConsumer):
    requires_organization = False
    _floor: int | None = None  # platform scope: the seq the recent-events replay starts below

    async def on_authenticated(self):
        self.scope_kind = console_scope(self.user, self.auth)
        if self.scope_kind is None:
            await self.refuse("PERMISSION_DENIED", "The console is for staff and organization owners.")
            return
        await super().on_authenticated()

    async def join_groups(self):
        if self.scope_kind == "platform":
            self.groups_joined = [org_group(pk) for pk in await database_sync_to_async(_organization_ids)()]
        else:
            self.groups_joined = [org_group(self.authenticated_identity.organization_id)]
        for group in self.groups_joined:
            await relay.join(group, self)

    async def on_disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await relay.leave(group, self)

    async def send_envelope(self, type_: str, data: dict, **extra) -> None:
        if type_ == "connection_established":
            data = {
                **data,
                "scope": self.scope_kind,
                "organization_id": str(self.authenticated_identity.organization_id)
                if self.scope_kind == "organization"
                else None,
            }
        await super().send_envelope(type_, data, **extra)

    async def handle_message(self, message: dict):
        if message["type"] == "command":
            await self.send_error("PERMISSION_DENIED", "The console socket only listens; use the API for commands.")
            return
        await super().handle_message(message)

    def _wanted(self, event: dict) -> list[str]:
        names = super()._wanted(event)
        if (
            names
            and self.scope_kind == "organization"
            and event.get("organization_id") != str(self.authenticated_identity.organization_id)
        ):
            return []
        return names

    # --- the event table at the console's scope --------------------------------------------
    def table_latest_seq(self) -> int:
        if self.scope_kind == "platform":
            latest = _platform_latest_seq()
            self._floor = latest if self._floor is None else self._floor
            return latest
        return super().table_latest_seq()

    def table_events_after(self, after: int, limit: int) -> list[dict]:
        if self.scope_kind == "platform":
            return _platform_events_after(after, limit)
        return super().table_events_after(after, limit)

    async def _replay(self, *, after: int):
        if self.scope_kind == "platform":
            if self._floor is None:
                self._floor = after  # nothing at or below where the client asked to start
            for event in await database_sync_to_async(_platform_recent_before)(after, self._floor):
                await self._deliver(event)  # seqs already sent are skipped
        await super()._replay(after=after)
