"""The controller's end of the southbound: a grpc server over a ConfigHub.

Each Subscribe stream holds one worker thread while it is open, so the pool is sized for many
nodes; Ack, Learn and Status are short unary calls.
"""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import NodeConfig
from openvpc.process import claim_socket_path
from openvpc.southbound import wire
from openvpc.southbound.delta import config_delta
from openvpc.southbound.hub import ConfigHub

log = logging.getLogger("openvpc.southbound")

LearnFn = Callable[[str, str, str], bool]  # (node, interface id, ip) -> accepted
MAX_STREAMS = 256
POLL = 1.0  # a stream re-checks that its client is still there at least this often
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


class SouthboundServer:
    """Serves `openvpc.Southbound` on `listen` (unix:/PATH or tcp:HOST:PORT).

    The controller calls `publish` with every compiled revision; subscribers of the nodes whose
    config changed get it at once.
    """

    def __init__(self, listen: str, learn: LearnFn, hub: ConfigHub | None = None) -> None:
        self.listen = listen
        self.hub = hub or ConfigHub()
        self._learn = learn
        self._socket_path = wire.unix_path(listen)
        self._server: grpc.Server | None = None
        self._bound = False
        self.port: int | None = None

    def start(self) -> None:
        """Bind and serve; raises OSError if a live server already owns the unix socket."""
        target = wire.grpc_target(self.listen)
        if self._socket_path is not None:
            claim_socket_path(self._socket_path, "controller")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_STREAMS + 16, thread_name_prefix="sb"),
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=MAX_STREAMS + 16,
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        try:
            port = server.add_insecure_port(target)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {self.listen}: {e}") from e
        if port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        self._bound = True
        self.port = port if self._socket_path is None else None
        server.start()
        self._server = server
        log.info("southbound listening on %s", self.listen)

    def publish(self, revision: int, configs: dict[str, NodeConfig]) -> list[str]:
        changed = self.hub.publish(revision, configs)
        if changed:
            log.info("revision %d changes %s", revision, ", ".join(changed))
        return changed

    def stop(self, grace: float = 1.0) -> None:
        """End every stream, stop serving and remove the socket file."""
        self.hub.close()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1.0)
            self._server = None
        if self._socket_path is not None and self._bound:
            # only a socket we bound: a refused start must not unlink a live server's
            self._bound = False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket_path)

    # -- handlers ---------------------------------------------------------------------
    def _handlers(self) -> "grpc.GenericRpcHandler[Any, Any]":
        def unary(fn: Callable[..., Any]) -> "grpc.RpcMethodHandler[Any, Any]":
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=wire.decode, response_serializer=wire.encode
            )

        return grpc.method_handlers_generic_handler(
            wire.SERVICE,
            {
                wire.SUBSCRIBE: grpc.unary_stream_rpc_method_handler(
                    self._subscribe,
                    request_deserializer=wire.decode,
                    response_serializer=wire.encode,
                ),
                wire.ACK: unary(self._ack),
                wire.LEARN: unary(self._learn_rpc),
                wire.STATUS: unary(self._status),
            },
        )

    def _subscribe(
        self, request: wire.Body, context: grpc.ServicerContext
    ) -> Iterator[dict[str, Any]]:
        node = _field(request, "node", str, context)
        self.hub.attach(node)
        context.add_callback(self.hub.wake)
        log.info("node %s subscribed", node)
        try:
            seen = 0
            last: NodeConfig | None = None  # what this stream's subscriber holds
            while context.is_active() and not self.hub.closed:
                got = self.hub.next_config(node, seen, POLL, alive=context.is_active)
                if got is None:
                    continue
                seen, config = got
                self.hub.mark_sent(node, config.generation)
                if last is None:
                    yield {"config": to_dict(config)}
                else:
                    yield {"delta": config_delta(last, config)}
                last = config
        finally:
            self.hub.detach(node)
            log.info("node %s unsubscribed", node)

    def _ack(self, request: wire.Body, context: grpc.ServicerContext) -> dict[str, Any]:
        node = _field(request, "node", str, context)
        generation = _field(request, "generation", int, context)
        self.hub.ack(node, generation)
        return {}

    def _learn_rpc(self, request: wire.Body, context: grpc.ServicerContext) -> dict[str, Any]:
        node = _field(request, "node", str, context)
        interface_id = _field(request, "interface_id", str, context)
        ip = _field(request, "ip", str, context)
        try:
            ok = self._learn(node, interface_id, ip)
        except Exception as e:  # the service's refusal, whatever its class: report, never crash
            log.warning("learn %s %s on %s refused: %s", ip, interface_id, node, e)
            return {"ok": False, "error": str(e)}
        return {"ok": bool(ok)}

    def _status(self, request: wire.Body, context: grpc.ServicerContext) -> dict[str, Any]:
        if isinstance(request, wire.BadBody):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.why)
        return self.hub.status()


def _field(request: wire.Body, name: str, kind: type[Any], context: grpc.ServicerContext) -> Any:
    """A required request field of type `kind`, or the call ends with INVALID_ARGUMENT."""
    if isinstance(request, wire.BadBody):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.why)
    value = request.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"field {name!r} must be a {kind.__name__}")
    return value
