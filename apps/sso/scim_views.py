"""SCIM 2.0 (RFC 7643/7644) over DRF: ``/scim/v2/Users`` and ``/scim/v2/Groups`` for one
organization, chosen by its bearer SCIM token. Errors use SCIM's error schema, as IdPs expect."""

from __future__ import annotations

import re
from typing import TypedDict, cast

from django.conf import settings
from rest_framework import authentication, exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.sso import scim
from apps.sso.models import ScimGroup, ScimToken, ScimUser

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_FILTER = re.compile(r'^\s*(userName|externalId|displayName)\s+eq\s+"([^"]*)"\s*$', re.I)


class ScimJSONParser(JSONParser):
    media_type = "application/scim+json"


class ScimJSONRenderer(JSONRenderer):
    media_type = "application/scim+json"


class _UserChanges(TypedDict, total=False):
    """The ``scim.user_update`` arguments a PATCH sets."""

    full_name: str
    external_id: str
    active: bool


class ScimTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if len(header) != 2 or header[0].lower() != "bearer":
            raise exceptions.NotAuthenticated("A SCIM bearer token is required.")
        token = scim.token_authenticate(header[1])
        if token is None:
            raise exceptions.AuthenticationFailed("The SCIM token is invalid or revoked.")
        return token.created_by, token

    def authenticate_header(self, request):
        return 'Bearer realm="scim"'


class ScimView(APIView):
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [AllowAny]
    parser_classes = [ScimJSONParser, JSONParser]
    renderer_classes = [ScimJSONRenderer, JSONRenderer]
    throttle_classes: list = []

    @property
    def organization(self):
        # the stubs type request.auth as DRF's authtoken Token; ScimTokenAuthentication sets a ScimToken
        return cast(ScimToken, self.request.auth).organization

    def handle_exception(self, exc):
        if isinstance(exc, scim.ScimError):
            return _error(exc.status, exc.detail, exc.scim_type)
        if isinstance(exc, exceptions.APIException):
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            response = _error(exc.status_code, detail)
            if exc.status_code == 401:
                response["WWW-Authenticate"] = 'Bearer realm="scim"'
            return response
        raise exc

    def _list(self, request, queryset, render, attribute_fields):
        match = _FILTER.match(request.query_params.get("filter", "")) if request.query_params.get("filter") else None
        if request.query_params.get("filter") and match is None:
            raise scim.ScimError(400, "Only 'attribute eq \"value\"' filters are supported.", "invalidFilter")
        if match:
            queryset = queryset.filter(**{f"{attribute_fields[match.group(1).lower()]}__iexact": match.group(2)})
        start = max(int(request.query_params.get("startIndex", 1) or 1), 1)
        count = min(max(int(request.query_params.get("count", 100) or 0), 0), 200)
        total = queryset.count()
        page = list(queryset[start - 1 : start - 1 + count])
        return Response(
            {
                "schemas": [LIST_SCHEMA],
                "totalResults": total,
                "startIndex": start,
                "itemsPerPage": len(page),
                "Resources": [render(item) for item in page],
            }
        )


def _error(status_code: int, detail: str, scim_type: str | None = None) -> Response:
    body = {"schemas": [ERROR_SCHEMA], "status": str(status_code), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return Response(body, status=status_code)


def _location(kind: str, pk) -> str:
    return f"{settings.KAI_PUBLIC_URL}/scim/v2/{kind}/{pk}"


# --- users ------------------------------------------------------------------------------------


def user_body(scim_user: ScimUser) -> dict:
    user = scim_user.user
    given, _, family = user.full_name.partition(" ")
    return {
        "schemas": [USER_SCHEMA],
        "id": str(user.pk),
        "externalId": scim_user.external_id or None,
        "userName": user.email,
        "displayName": user.full_name or user.email,
        "name": {"formatted": user.full_name, "givenName": given, "familyName": family},
        "emails": [{"value": user.email, "primary": True, "type": "work"}],
        "active": scim_user.active and user.is_active,
        "meta": {
            "resourceType": "User",
            "created": scim_user.created_at.isoformat(),
            "lastModified": scim_user.updated_at.isoformat(),
            "location": _location("Users", user.pk),
        },
    }


def _full_name(data: dict) -> str | None:
    name = data.get("name") or {}
    if name.get("formatted"):
        return name["formatted"]
    joined = " ".join(p for p in (name.get("givenName"), name.get("familyName")) if p)
    return joined or data.get("displayName")


def _email(data: dict) -> str:
    emails = data.get("emails") or []
    primary = next((e.get("value") for e in emails if e.get("primary")), None)
    return str(data.get("userName") or primary or (emails[0].get("value") if emails else "") or "")


class ScimUsersView(ScimView):
    def _users(self):
        return ScimUser.objects.for_org(self.organization).select_related("user").order_by("created_at")

    def get(self, request):
        return self._list(
            request,
            self._users(),
            user_body,
            {"username": "user__email", "externalid": "external_id", "displayname": "user__full_name"},
        )

    def post(self, request):
        data = request.data
        scim_user = scim.user_create(
            organization=self.organization,
            token=request.auth,
            email=_email(data),
            full_name=_full_name(data) or "",
            external_id=str(data.get("externalId") or ""),
            active=data.get("active", True) is not False,
        )
        response = Response(
            user_body(ScimUser.objects.select_related("user").get(pk=scim_user.pk)), status=status.HTTP_201_CREATED
        )
        response["Location"] = _location("Users", scim_user.user_id)
        return response


class ScimUserView(ScimView):
    def _get(self, pk) -> ScimUser:
        if not scim._uuid(pk):
            raise scim.ScimError(404, "User not found.")
        found = ScimUser.objects.for_org(self.organization).select_related("user").filter(user_id=pk).first()
        if found is None:
            raise scim.ScimError(404, "User not found.")
        return found

    def get(self, request, pk):
        return Response(user_body(self._get(pk)))

    def put(self, request, pk):
        data = request.data
        scim_user = scim.user_update(
            scim_user=self._get(pk),
            token=request.auth,
            full_name=_full_name(data),
            external_id=data.get("externalId"),
            active=data.get("active", True) is not False,
        )
        return Response(user_body(self._get(scim_user.user_id)))

    def patch(self, request, pk):
        scim_user = self._get(pk)
        changes: _UserChanges = {}
        for op in request.data.get("Operations") or []:
            if str(op.get("op", "")).lower() not in ("replace", "add"):
                raise scim.ScimError(400, f"Unsupported PATCH op {op.get('op')!r} on a user.", "invalidSyntax")
            path, value = op.get("path"), op.get("value")
            values = {path: value} if path else (value if isinstance(value, dict) else {})
            for key, item in values.items():
                if key == "active":
                    changes["active"] = item if isinstance(item, bool) else str(item).lower() == "true"
                elif key == "externalId":
                    changes["external_id"] = str(item)
                elif key in ("displayName", "name.formatted"):
                    changes["full_name"] = str(item)
                elif key == "name" and isinstance(item, dict):
                    changes["full_name"] = _full_name({"name": item}) or ""
        scim.user_update(scim_user=scim_user, token=request.auth, **changes)
        return Response(user_body(self._get(pk)))

    def delete(self, request, pk):
        scim.user_delete(scim_user=self._get(pk), token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- groups -----------------------------------------------------------------------------------


def group_body(group: ScimGroup) -> dict:
    members = [{"value": str(u.pk), "display": u.email} for u in group.members.all()]
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.pk),
        "externalId": group.external_id or None,
        "displayName": group.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": group.created_at.isoformat(),
            "lastModified": group.updated_at.isoformat(),
            "location": _location("Groups", group.pk),
        },
    }


def _member_ids(value) -> list[str]:
    return [str(m.get("value")) for m in (value or []) if isinstance(m, dict) and m.get("value")]


class ScimGroupsView(ScimView):
    def get(self, request):
        groups = ScimGroup.objects.for_org(self.organization).prefetch_related("members").order_by("created_at")
        return self._list(
            request,
            groups,
            group_body,
            {"displayname": "display_name", "externalid": "external_id", "username": "display_name"},
        )

    def post(self, request):
        data = request.data
        group = scim.group_save(
            organization=self.organization,
            token=request.auth,
            display_name=data.get("displayName"),
            external_id=data.get("externalId"),
            member_ids=_member_ids(data.get("members")),
        )
        response = Response(group_body(group), status=status.HTTP_201_CREATED)
        response["Location"] = _location("Groups", group.pk)
        return response


class ScimGroupView(ScimView):
    def _get(self, pk) -> ScimGroup:
        group = ScimGroup.objects.for_org(self.organization).filter(pk=pk).first() if scim._uuid(pk) else None
        if group is None:
            raise scim.ScimError(404, "Group not found.")
        return group

    def get(self, request, pk):
        return Response(group_body(self._get(pk)))

    def put(self, request, pk):
        data = request.data
        group = scim.group_save(
            organization=self.organization,
            token=request.auth,
            group=self._get(pk),
            display_name=data.get("displayName"),
            external_id=data.get("externalId"),
            member_ids=_member_ids(data.get("members")),
        )
        return Response(group_body(group))

    def patch(self, request, pk):
        group = self._get(pk)
        add, remove, display_name = [], [], None
        for op in request.data.get("Operations") or []:
            kind, path, value = str(op.get("op", "")).lower(), op.get("path") or "", op.get("value")
            member_filter = re.match(r'^members\[value eq "([^"]+)"\]$', path)
            if kind == "add" and path == "members":
                add += _member_ids(value)
            elif kind == "remove" and member_filter:
                remove.append(member_filter.group(1))
            elif kind == "remove" and path == "members":
                remove += _member_ids(value) if value else [str(u) for u in group.members.values_list("id", flat=True)]
            elif kind == "replace" and path == "displayName":
                display_name = str(value)
            elif kind == "replace" and not path and isinstance(value, dict) and "displayName" in value:
                display_name = str(value["displayName"])
            elif kind == "replace" and path == "members":
                remove += [str(u) for u in group.members.values_list("id", flat=True)]
                add += _member_ids(value)
            else:
                raise scim.ScimError(400, f"Unsupported PATCH operation {kind} {path!r} on a group.", "invalidSyntax")
        group = scim.group_save(
            organization=self.organization,
            token=request.auth,
            group=group,
            display_name=display_name,
            add=add,
            remove=[r for r in remove if r not in add],
        )
        return Response(group_body(group))

    def delete(self, request, pk):
        scim.group_delete(group=self._get(pk), token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ServiceProviderConfigView(ScimView):
    def get(self, request):
        return Response(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "patch": {"supported": True},
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": 200},
                "changePassword": {"supported": False},
                "sort": {"supported": False},
                "etag": {"supported": False},
                "authenticationSchemes": [
                    {
                        "type": "oauthbearertoken",
                        "name": "OAuth Bearer Token",
                        "description": "The organization's SCIM token (sso/scim-tokens).",
                    }
                ],
            }
        )
