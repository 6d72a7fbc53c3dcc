"""Secrets at rest: MultiFernet over ``KAI_SECRET_KEYS`` (newest first).

Without ``KAI_SECRET_KEYS`` (embedded mode only; production refuses to start) one key is kept in
``var/secret.keys``, created once with mode 0600 and reused by every process: a per-process key
would make stored secrets unreadable after a restart. ``rotate_secrets`` re-encrypts every value
under the newest key.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_lock = threading.Lock()

#: ``what → rotate() -> count``: other apps' stored secrets that ``rotate_secrets`` re-encrypts too
#: (each registers in its ``AppConfig.ready``; e.g. "webhook secret(s)")
SECRET_ROTATORS: dict = {}


class SecretUnreadable(Exception):
    """A stored value does not decrypt under any configured key."""


def key_id(key: str | bytes) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()[:12]


def _embedded_keys() -> list[str]:
    path = settings.KAI_SECRET_KEYS_FILE
    with _lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: read theirs
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(Fernet.generate_key().decode() + "\n")
        keys = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise ImproperlyConfigured(f"{path} holds no key")
    return keys


@lru_cache(maxsize=1)
def _keys() -> tuple[str, ...]:
    keys = list(settings.KAI_SECRET_KEYS) or _embedded_keys()
    for key in keys:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"a secret key (id {key_id(key)}) is not a valid Fernet key") from exc
    return tuple(keys)


def reset_keys_cache() -> None:
    _keys.cache_clear()
    _fernet.cache_clear()


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in _keys()])


def primary_key_id() -> str:
    return key_id(_keys()[0])


def encrypt(plaintext: str) -> tuple[str, str]:
    """→ (token, id of the key that encrypted it)."""
    return _fernet().encrypt(plaintext.encode()).decode(), primary_key_id()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("the stored secret does not decrypt under any configured key") from exc


def rotate(token: str) -> tuple[str, str]:
    """Re-encrypt under the newest key (MultiFernet.rotate)."""
    try:
        return _fernet().rotate(token.encode()).decode(), primary_key_id()
    except InvalidToken as exc:
        raise SecretUnreadable("the stored secret does not decrypt under any configured key") from exc


def mask(value: str) -> str:
    """``sk-…abcd``: a short recognizable prefix (up to the first dash, ≤ 4 chars) and the last 4."""
    value = value or ""
    if len(value) <= 8:
        return "…" + value[-2:] if len(value) > 4 else "…"
    head = value[:3] if "-" not in value[:5] else value[: value.index("-") + 1]
    return f"{head}…{value[-4:]}"
