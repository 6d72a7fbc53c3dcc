"""Outbound HTTP guard against server-side request forgery.

A URL may be fetched only if every address its host resolves to is public, unless an allow-list
(the organization's ``settings.network_allowlist`` plus ``KAI_NETWORK_ALLOWLIST``) names the
host or a network containing the address. Checked after DNS resolution, and again on every
redirect hop (an httpx request hook runs for each request the client sends).

DNS rebinding (a name that resolves to a public address for the check and to a private one for the
connection) is closed at connect time: the guarded client's network backend resolves the host
itself, checks every address, and connects to the checked address, never resolving twice.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

    import httpx2
    from httpcore2._backends.base import NetworkStream
    from httpcore2._backends.sync import SyncBackend
    from httpcore2._types import SOCKET_OPTION

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: cloud metadata endpoints, refused even when a broader allow-list would admit them
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


class BlockedAddress(Exception):
    """The URL's host is (or resolves to) a private, loopback, link-local or metadata address."""


def _network(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = field(default_factory=frozenset)
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, *entry_lists: Iterable[object] | None) -> AllowList:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entries in entry_lists:
            for raw in entries or []:
                entry = str(raw).strip().lower()
                if not entry:
                    continue
                network = _network(entry.strip("[]"))
                if network is not None:
                    networks.append(network)
                else:
                    hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self.hosts:
            return True
        return any(h.startswith("*.") and host.endswith(h[1:]) for h in self.hosts)

    def allows_ip(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and ip not in METADATA_ADDRESSES


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress(f"cannot resolve host {host!r}: {exc.strerror or exc}") from exc
    except UnicodeError as exc:  # a name IDNA cannot encode (a character no host name may hold)
        raise BlockedAddress(f"cannot resolve host {host!r}: not a valid host name ({exc})") from exc
    return sorted({ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}, key=str)


def check_host(host: str, port: int, allowlist: AllowList | None = None) -> list[IPAddress]:
    """Resolve ``host`` and raise ``BlockedAddress`` unless every address may be reached."""
    allowlist = allowlist or AllowList()
    host = host.rstrip(".")
    if host.lower() in METADATA_HOSTS:
        raise BlockedAddress(f"{host} is a cloud metadata endpoint")
    host_allowed = allowlist.allows_host(host)
    addresses = resolve(host, port)
    for ip in addresses:
        if ip in METADATA_ADDRESSES:
            raise BlockedAddress(f"{host} resolves to {ip}, a cloud metadata address")
        if not is_public(ip) and not host_allowed and not allowlist.allows_ip(ip):
            raise BlockedAddress(
                f"{host} resolves to {ip}, a private, loopback or link-local address; "
                "add it to the organization's network allow-list to permit it"
            )
    return addresses


def check_url(url: str, allowlist: AllowList | None = None) -> list[IPAddress]:
    """Raise ``BlockedAddress`` unless ``url`` is http(s) and its host may be reached.
    Returns the resolved addresses."""
    allowlist = allowlist or AllowList()
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https"):
        raise BlockedAddress(f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise BlockedAddress("the URL has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return check_host(host, port, allowlist)


class Aborter:
    """The sockets one client opened; ``abort()`` shuts them down, which ends a read blocked on any
    of them at once (called from another thread: ``kai_platform.llm.cancel``). A socket opened
    after the abort is shut down as it opens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.aborted = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            aborted = self.aborted
        if aborted:
            self._shut(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:  # the plain socket's shutdown, also under TLS: the TLS layer's would reset its state under the reader
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


def _pinned_backend(allowlist: AllowList | None, aborter: Aborter | None = None) -> SyncBackend:
    """An httpcore network backend that connects only to addresses ``check_host`` passed: the
    address checked is the address connected to (no second DNS lookup to rebind). With
    ``aborter``, every socket it opens (and its TLS successor) is handed to it."""

    # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
    from httpcore2._backends.base import NetworkStream
    from httpcore2._backends.sync import SyncBackend

    class AbortableStream(NetworkStream):
        def __init__(self, inner: NetworkStream, owner: Aborter) -> None:
            self.inner, self.owner = inner, owner
            owner.add(inner.get_extra_info("socket"))

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self.inner.read(max_bytes, timeout)

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self.inner.write(buffer, timeout)

        def close(self) -> None:
            self.inner.close()

        def start_tls(
            self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
        ) -> NetworkStream:
            return AbortableStream(self.inner.start_tls(ssl_context, server_hostname, timeout), self.owner)

        def get_extra_info(self, info: str) -> Any:
            return self.inner.get_extra_info(info)

    class PinnedBackend(SyncBackend):
        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[SOCKET_OPTION] | None = None,
        ) -> NetworkStream:
            # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
            import httpcore2

            last_error: Exception | None = None
            for ip in check_host(host, port, allowlist):
                try:
                    stream = super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
                    return AbortableStream(stream, aborter) if aborter is not None else stream
                except (TimeoutError, httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                    last_error = exc
            raise last_error or BlockedAddress(f"{host} has no address")

    return PinnedBackend()


def guarded_http_client(
    allowlist: AllowList | None,
    *,
    timeout: float,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    aborter: Aborter | None = None,
) -> httpx2.Client:
    """An ``httpx2.Client`` that checks every request it sends (redirect hops included); with
    ``aborter``, ``aborter.abort()`` ends its calls at once, even one waiting for its first byte."""
    # deferred: heavy — the HTTP client stack, loaded on first use to keep process start fast
    import httpx2

    def _guard(request: httpx2.Request) -> None:
        check_url(str(request.url), allowlist)

    transport = httpx2.HTTPTransport(trust_env=False)
    transport._pool._network_backend = _pinned_backend(allowlist, aborter)  # TLS still verifies the URL's host name
    return httpx2.Client(
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        event_hooks={"request": [_guard]},
        trust_env=False,
        transport=transport,
    )
