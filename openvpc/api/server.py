"""The API's HTTP server: waitress, threaded, keep-alive, bodies and headers bounded, run in a
thread of the controller and stopped with it."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress.server import BaseWSGIServer, create_server

from openvpc.api.app import ApiApp
from openvpc.api.query import MAX_BODY_BYTES

log = logging.getLogger("openvpc.api")

THREADS = 8  # requests served at once; more wait in waitress's queue
CONNECTION_LIMIT = 256
MAX_HEADER_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 60  # a keep-alive connection silent this long is closed


def parse_listen(listen: str) -> tuple[str, int]:
    """ "host:port" -> (host, port); port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {listen!r} is not host:port")
    return host.strip("[]"), int(port)


class ApiServer:
    def __init__(self, app: ApiApp, listen: str) -> None:
        host, port = parse_listen(listen)
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            max_request_body_size=MAX_BODY_BYTES,
            max_request_header_size=MAX_HEADER_BYTES,
            channel_timeout=IDLE_TIMEOUT_S,
            ident="openvpc",
            # how soon the loop notices it has nothing left: whole seconds (waitress takes an
            # int, so 0.1 was 0, a select that never waits: a core spent polling)
            asyncore_loop_timeout=1,
            expose_tracebacks=False,
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        server = self._server
        if not isinstance(server, BaseWSGIServer) or server.socket is None:
            raise RuntimeError("the API server listens on more than one socket")
        name = server.socket.getsockname()
        return str(name[0]), int(name[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)
        self._thread.start()
        log.info("EC2 API on http://%s:%d", *self.address)

    def _serve(self) -> None:
        # the loop ends with the sockets closed under it
        with contextlib.suppress(OSError, ValueError):
            self._server.run()

    def stop(self) -> None:
        """Close the listening socket and every connection (keep-alive ones would keep the
        loop running), then wait for the loop to end."""
        self._server.close()
        channels: dict[int, Any] = getattr(self._server, "_map", {})
        for channel in list(channels.values()):
            channel.close()
        self._server.task_dispatcher.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
