"""A TCP proxy the tests control, put between the platform and Postgres or Redis: ``stop()`` is
the service going away (every open connection is cut, new ones are reset at once), ``start()``
brings it back. The proxy holds its port from creation to ``close()``: no other process can take
it between an outage and the recovery (a port given back and bound again could be)."""

from __future__ import annotations

import socket
import struct
import threading


def postgres_upstream(host: str | None, port) -> tuple:
    """The (host, port) of a PostgreSQL server, or ``(socket path,)`` when ``host`` is a socket
    directory (the embedded pgserver listens on a Unix socket)."""
    port = int(port or 5432)
    if host and host.startswith("/"):
        return (f"{host}/.s.PGSQL.{port}",)
    return (host or "127.0.0.1", port)


class TCPProxy:
    """Listens on 127.0.0.1 (a free port); forwards to ``target_host:target_port``, or to the Unix
    socket ``target_host`` when no port is given."""

    def __init__(self, target_host: str, target_port: int | None = None):
        self.target = (target_host, target_port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self._up = False
        self._pairs: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.faults = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def start(self) -> None:
        self._up = True

    def stop(self) -> None:
        """The dependency is gone: cut the open connections and reset new ones."""
        self.faults += 1
        self._up = False
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for sock in pairs:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.stop()
        self._listener.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        sock.close()

    def _connect_upstream(self) -> socket.socket:
        host, port = self.target
        if port is None:
            upstream = socket.socket(socket.AF_UNIX)
            upstream.settimeout(5)
            try:
                upstream.connect(host)
            except OSError:
                upstream.close()
                raise
        else:
            upstream = socket.create_connection((host, port), timeout=5)
        upstream.settimeout(None)
        return upstream

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up:
                self._reset(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                if not self._up:
                    self._reset(client)
                    upstream.close()
                    continue
                self._pairs |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._pairs -= {source, sink}
