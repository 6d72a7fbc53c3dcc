"""daphne's ``Server`` with the platform's WebSocket protocol and shutdown drain."""

from __future__ import annotations

import asyncio  # isort:skip
import daphne.server  # isort:skip  (installs the asyncio reactor before anything imports Twisted)

import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from daphne.cli import CommandLineInterface
from twisted.internet import defer

from kai_platform.asgitypes import Message, Scope
from kai_platform.server import body, drain
from kai_platform.server.protocol import CLOSE_GOING_AWAY, KaiWebSocketProtocol

if TYPE_CHECKING:
    from daphne.http_protocol import WebRequest
    from twisted.internet.interfaces import IListeningPort

logger = logging.getLogger("kai.server")


class KaiServer(daphne.server.Server):  # type: ignore[misc]  # daphne ships no types
    @property
    def ws_factory(self) -> Any:  # autobahn's WebSocketServerFactory, daphne's
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # daphne's run() builds the factory inline; its protocols are made from ``factory.protocol``
        factory.protocol = KaiWebSocketProtocol
        self._ws_factory = factory

    def create_application(self, protocol: WebRequest, scope: Scope) -> asyncio.Queue[Message] | None:
        """daphne's, with an HTTP body read from its spool file as the application asks (``body.py``)."""
        streamed = body.take_body(protocol) if scope.get("type") == "http" else None
        if streamed is None:
            queue: asyncio.Queue[Message] | None = super().create_application(protocol, scope)
            return queue
        assert "application_instance" not in self.connections[protocol]
        scope.setdefault("asgi", {"version": "3.0"})
        instance = self.application(scope=scope, receive=streamed.receive, send=partial(self.handle_reply, protocol))
        if protocol not in self.connections:
            streamed.close()
            return None
        future = asyncio.ensure_future(instance)
        future.add_done_callback(lambda _: streamed.close())  # a body the application never read
        self.connections[protocol]["application_instance"] = future
        return streamed.queue

    def listen_success(self, port: IListeningPort) -> None:
        self.__dict__.setdefault("ports", []).append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> defer.Deferred[None]:
        """Before daphne cancels every application: the drain (``drain.py``)."""
        finished = defer.Deferred.fromFuture(asyncio.ensure_future(self._drain()))
        finished.addErrback(lambda failure: logger.warning("drain failed: %s", failure.getErrorMessage()))
        finished.addCallback(lambda _: super(KaiServer, self).kill_all_applications())
        return finished

    async def _drain(self) -> None:
        for port in self.__dict__.get("ports", []):
            port.stopListening()
        seconds = drain.drain_seconds()
        if seconds and await drain.warn_sockets(seconds):
            await asyncio.sleep(seconds)
        sockets = [p for p in self.connections if isinstance(p, KaiWebSocketProtocol)]
        await drain.close_all(sockets, code=CLOSE_GOING_AWAY, reason="SERVER_SHUTDOWN")


class KaiCommandLineInterface(CommandLineInterface):  # type: ignore[misc]  # daphne ships no types
    server_class = KaiServer
