"""Who a JWT acts as, cached per process and re-validated on every request in one Redis round trip.

Authenticating a JWT needs the token's revocation, the user, membership and organization rows, and
the rate-limit count; done naively that is four round trips before the view runs (bench B3,
docs/benchmarks.md). Instead:

* ``probe`` sends ONE command (a server-side script): ``EXISTS`` the token's revocation key,
  ``MGET`` the user's and the organization's *authorization versions*, and (when the organization
  is known from the cache) the organization's rate-limit increment.
* The user/membership/organization rows live in a small per-process cache keyed by
  ``(user id, X-Organization)``. An entry is used only while both versions it was read under are
  still the current ones, and never longer than ``KAI_AUTH_CACHE_SECONDS``.
* Every save/delete of a User, Membership or Organization bumps the version (at once, and again
  after the transaction commits, so no request can cache the old row under the new version).
  Code that changes these rows with ``QuerySet.update()`` must call ``bump_user``/``bump_org``.

So a logout (revocation key), a role change, a removed member or a deactivated organization take
effect on the very next request, in every process. Each request gets fresh model instances built
from the cached rows (views may change them without touching the cache).
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from redis.exceptions import NoScriptError

from kai_platform.api import sharedcache

if TYPE_CHECKING:
    from redis import Redis

    from kai_platform.api.ratelimit import Counter

#: a model row as its concrete fields' values, in field order
Row = tuple[Any, ...]

#: entries kept per process at most: past it expired ones are swept (and all, if none had expired)
MAX_ENTRIES = 2_000
VERSION_TTL = 24 * 3600

_entries: dict[tuple[str, str | None], _Entry] = {}


def _ttl() -> float:
    return float(getattr(settings, "KAI_AUTH_CACHE_SECONDS", 5.0))


def user_version_key(user_id: object) -> str:
    return sharedcache.backend().make_key(f"authz:user:{user_id}")


def org_version_key(org_id: object) -> str:
    return sharedcache.backend().make_key(f"authz:org:{org_id}")


def _redis() -> Redis:
    return sharedcache.redis()


# --- invalidation ------------------------------------------------------------------------------


def _bump(keys: list[str]) -> None:
    pipe = _redis().pipeline(transaction=False)
    for key in keys:
        pipe.incr(key)
        pipe.expire(key, VERSION_TTL)
    pipe.execute()


def _bump_now_and_after_commit(keys: list[str]) -> None:
    _bump(keys)
    transaction.on_commit(lambda: _bump(keys), robust=True)


def bump_user(user_id: object) -> None:
    """The user's rows or memberships changed: cached credentials of that user are re-read."""
    _bump_now_and_after_commit([user_version_key(user_id)])


def bump_org(org_id: object) -> None:
    """The organization changed (plan, settings, active): its members' cached credentials are re-read."""
    _bump_now_and_after_commit([org_version_key(org_id)])


def _on_user_change(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    bump_user(instance.pk)


def _on_membership_change(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    bump_user(instance.user_id)


def _on_org_change(sender: type[Model], instance: Any, **kwargs: Any) -> None:
    bump_org(instance.pk)


class _Models:
    """The accounts app's User, Membership and Organization models (``connect_signals``)."""

    user: Any = None
    membership: Any = None
    organization: Any = None


_models = _Models()


def connect_signals(*, user: type[Model], membership: type[Model], organization: type[Model]) -> None:
    """Called from the accounts app's ready() with its models: every process that writes these
    rows bumps, and cached rows are rebuilt as instances of these models."""
    _models.user, _models.membership, _models.organization = user, membership, organization
    for model, receiver in (
        (user, _on_user_change),
        (membership, _on_membership_change),
        (organization, _on_org_change),
    ):
        post_save.connect(receiver, sender=model, dispatch_uid=f"authcache-save-{model.__name__}")
        post_delete.connect(receiver, sender=model, dispatch_uid=f"authcache-delete-{model.__name__}")


# --- the cache -----------------------------------------------------------------------------------


def _row(instance: Model) -> Row:
    return tuple(getattr(instance, f.attname) for f in instance._meta.concrete_fields)


def _json_copy(value: Any) -> Any:
    """A copy of a JSON column's value (dicts, lists and immutable scalars), ~10x cheaper than
    copy.deepcopy; anything else is deep-copied."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return copy.deepcopy(value)


def _attnames(model: type[Model]) -> list[str]:
    names = _ATTNAMES.get(model)
    if names is None:
        names = _ATTNAMES[model] = [f.attname for f in model._meta.concrete_fields]
    return names


_ATTNAMES: dict[type[Model], list[str]] = {}


def _build(model: type[Model], row: Row) -> Any:
    values = [_json_copy(v) if isinstance(v, (dict, list)) else v for v in row]
    return model.from_db("default", _attnames(model), values)


@dataclass(frozen=True)
class _Memberships:
    """All of a user's memberships with their organizations (``auth/me``), valid while the user's
    version and every one of those organizations' versions are the ones they were read under."""

    user_version: bytes | None
    org_ids: tuple[str, ...]
    org_versions: tuple[bytes | None, ...]
    rows: tuple[tuple[Row, Row], ...]  # ((membership row, organization row), ...)


#: a user in more organizations than this has the ``auth/me`` memberships read from the database
MAX_CACHED_MEMBERSHIPS = 20


@dataclass
class _Entry:
    versions: tuple[bytes | None, ...]
    expires: float
    org_id: str | None
    org_plan: str | None
    user_row: Row
    membership_row: Row | None
    org_row: Row | None
    memberships: _Memberships | None = None

    def materialize(self) -> tuple[Any, Any]:
        user = _build(_models.user, self.user_row)
        if self.membership_row is None:
            return user, None
        membership = _build(_models.membership, self.membership_row)
        membership.user = user
        membership.organization = _build(_models.organization, self.org_row or ())
        return user, membership


def lookup(user_id: str, organization_ref: str | None) -> _Entry | None:
    entry = _entries.get((user_id, organization_ref))
    if entry is None or entry.expires < time.monotonic():
        return None
    return entry


def store(
    user_id: str, organization_ref: str | None, versions: tuple[bytes | None, ...], user: Any, membership: Any
) -> None:
    if len(_entries) >= MAX_ENTRIES:
        now = time.monotonic()
        for key in [k for k, e in list(_entries.items()) if e.expires < now]:
            _entries.pop(key, None)
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
    org = membership.organization if membership is not None else None
    _entries[(user_id, organization_ref)] = _Entry(
        versions=versions,
        expires=time.monotonic() + _ttl(),
        org_id=str(org.pk) if org is not None else None,
        org_plan=org.plan if org is not None else None,
        user_row=_row(user),
        membership_row=_row(membership) if membership is not None else None,
        org_row=_row(org) if org is not None else None,
    )


def clear() -> None:
    _entries.clear()


# --- the one round trip ------------------------------------------------------------------------


@dataclass
class Probe:
    revoked: bool
    user_version: bytes | None
    org_version: bytes | None
    count: int | None  # the rate-limit count after this request's increment, when one was queued
    member_org_versions: tuple[bytes | None, ...] = ()  # the versions of ``member_org_ids``, in their order


#: the probe as one Redis command: KEYS = revoked key, the N version keys[, the rate-limit counter];
#: ARGV = N[, the counter's expiry]. Answers {revoked 0/1, {versions...}[, count]}.
PROBE_SCRIPT = """
local n = tonumber(ARGV[1])
local out = {redis.call('EXISTS', KEYS[1]), redis.call('MGET', unpack(KEYS, 2, 1 + n))}
if #KEYS > 1 + n then
  local counter = KEYS[#KEYS]
  redis.call('SET', counter, 0, 'EX', ARGV[2], 'NX')
  out[3] = redis.call('INCR', counter)
end
return out
"""
PROBE_SHA = hashlib.sha1(PROBE_SCRIPT.encode()).hexdigest()


def probe(
    *,
    revoked_key: str,
    user_id: str,
    org_id: str | None,
    counter: Counter | None = None,
    member_org_ids: tuple[str, ...] = (),
) -> Probe:
    """One round trip (one server-side script, the cheapest way for both ends): revocation, the
    authorization versions (the user's, the organization's and those of the organizations of
    cached ``auth/me`` memberships), and the rate-limit increment."""
    versions_keys = [user_version_key(user_id)] + ([org_version_key(org_id)] if org_id else [])
    versions_keys += [org_version_key(member_org) for member_org in member_org_ids]
    keys = [revoked_key, *versions_keys]
    args = [len(versions_keys)]
    if counter is not None:
        keys.append(counter.key)
        args.append(counter.ttl)
    redis = _redis()
    try:
        results = redis.execute_command("EVALSHA", PROBE_SHA, len(keys), *keys, *args)
    except NoScriptError:  # a Redis that has not seen the script yet (or flushed its scripts)
        results = redis.execute_command("EVAL", PROBE_SCRIPT, len(keys), *keys, *args)
    versions = results[1]
    first_member = 2 if org_id else 1
    return Probe(
        revoked=bool(results[0]),
        user_version=versions[0],
        org_version=versions[1] if org_id else None,
        count=int(results[2]) if counter is not None else None,
        member_org_versions=tuple(versions[first_member:]),
    )


# --- auth/me memberships -------------------------------------------------------------------------


@dataclass(frozen=True)
class Handle:
    """What a request's authentication learnt about its cache entry (``AuthContext.cache``)."""

    key: tuple[str, str | None]
    user_version: bytes | None  # read before any row this request reads
    memberships: _Memberships | None  # still valid at this request's probe


def handle_for(key: tuple[str, str | None], entry: _Entry | None, probe_result: Probe) -> Handle:
    cached = entry.memberships if entry is not None else None
    if cached is not None and (
        cached.user_version != probe_result.user_version or cached.org_versions != probe_result.member_org_versions
    ):
        cached = None
    return Handle(key=key, user_version=probe_result.user_version, memberships=cached)


def member_org_ids(entry: _Entry | None) -> tuple[str, ...]:
    return entry.memberships.org_ids if entry is not None and entry.memberships is not None else ()


def memberships_of(*, user: Any, handle: Handle | None, read: Callable[..., list[Any]]) -> list[Any]:
    """The user's memberships (organization selected), as ``read(user=user)`` returns them
    (``accounts.selectors.memberships_of``): from the cache entry when this request's probe found
    them current, else read (then cached on the entry for the next requests)."""
    if handle is not None and handle.memberships is not None:
        out = []
        for membership_row, org_row in handle.memberships.rows:
            membership = _build(_models.membership, membership_row)
            membership.organization = _build(_models.organization, org_row)
            out.append(membership)
        return out
    memberships = read(user=user)
    if handle is not None and 0 < len(memberships) <= MAX_CACHED_MEMBERSHIPS:
        entry = _entries.get(handle.key)
        if entry is not None and entry.versions[0] == handle.user_version:
            org_ids = tuple(str(m.organization_id) for m in memberships)
            # bytes: redis-py also types replies as str (for decode_responses clients, not these)
            versions = cast(
                tuple[bytes | None, ...], tuple(_redis().mget([org_version_key(org_id) for org_id in org_ids]))
            )
            entry.memberships = _Memberships(
                user_version=handle.user_version,
                org_ids=org_ids,
                org_versions=versions,
                rows=tuple((_row(m), _row(m.organization)) for m in memberships),
            )
    return memberships


def org_version(org_id: str) -> bytes | None:
    return cast(bytes | None, _redis().get(org_version_key(org_id)))  # bytes: see memberships_of
