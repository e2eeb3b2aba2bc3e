"""The controller's end of the southbound: a grpc server over a ConfigHub.

Each Subscribe stream holds one worker thread while it is open, so the pool is sized for many
nodes; Ack, Learn and Status are short unary calls. Every call is authenticated from its
metadata before anything is remembered: Subscribe, Ack and Learn by a registered node's secret
(and only as that node), Status by the operator secret.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from openvpc.credentials import (
    NODE_KEY,
    OPERATOR_KEY,
    SECRET_KEY,
    parse_secret,
    same_secret,
)
from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import NodeConfig
from openvpc.process import claim_socket_path
from openvpc.southbound import wire
from openvpc.southbound.delta import config_delta
from openvpc.southbound.hub import ConfigHub, Refused

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
LOGGED_REFUSALS = 10  # then one line per 1000: a flood of bad calls must not flood the log


@dataclass(frozen=True, slots=True, repr=False)
class TlsFiles:
    """The server's certificate chain and private key (PEM)."""

    cert: bytes
    key: bytes


class SouthboundServer:
    """Serves `openvpc.Southbound` on `listen` (unix:/PATH or tcp:HOST:PORT).

    The controller calls `publish` with every compiled revision; subscribers of the nodes whose
    config changed get it at once.
    """

    def __init__(
        self,
        listen: str,
        learn: LearnFn,
        hub: ConfigHub | None = None,
        operator_secret: bytes | None = None,
        tls: TlsFiles | None = None,
        store_revision: Callable[[], int] | None = None,
    ) -> None:
        self.listen = listen
        self.hub = hub or ConfigHub()
        # the store's latest revision, for Status: an operator waits until it is compiled
        # and acked without opening the store itself
        self._store_revision = store_revision
        self._learn = learn
        self._operator = operator_secret
        self._tls = tls
        self._refusals = 0
        self._refusals_lock = threading.Lock()
        self._socket_path = wire.unix_path(listen)
        self._server: grpc.Server | None = None
        self._bound = False
        self.port: int | None = None

    def start(self) -> None:
        """Bind and serve; raises OSError if a live server already owns the unix socket, or
        if a TCP address other than loopback is asked for without TLS."""
        target = wire.grpc_target(self.listen)
        if self._tls is None and not wire.is_local(self.listen):
            raise OSError(
                f"{self.listen} is not a loopback address: TLS is required "
                "(--tls-cert and --tls-key)"
            )
        if self._socket_path is not None:
            claim_socket_path(self._socket_path, "controller")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=MAX_STREAMS + 16, thread_name_prefix="sb"),
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=MAX_STREAMS + 16,
        )
        server.add_generic_rpc_handlers((self._handlers(),))
        try:
            if self._tls is not None:
                creds = grpc.ssl_server_credentials([(self._tls.key, self._tls.cert)])
                port = server.add_secure_port(target, creds)
            else:
                port = server.add_insecure_port(target)
        except RuntimeError as e:
            raise OSError(f"cannot listen on {self.listen}: {e}") from e
        if port == 0:
            raise OSError(f"cannot listen on {self.listen}")
        self._bound = True
        self.port = port if self._socket_path is None else None
        server.start()
        self._server = server
        if self._socket_path is not None:
            os.chmod(self._socket_path, 0o600)  # root only, whatever the umask was
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

    @property
    def refusals(self) -> int:
        """Calls refused for their credentials since start."""
        with self._refusals_lock:
            return self._refusals

    def _refuse(self, context: grpc.ServicerContext, code: grpc.StatusCode, why: str) -> NoReturn:
        with self._refusals_lock:
            self._refusals += 1
            n = self._refusals
        if n <= LOGGED_REFUSALS or n % 1000 == 0:
            log.warning("refused call #%d: %s", n, why)
        context.abort(code, why)

    def _caller(self, request: wire.Body, context: grpc.ServicerContext) -> str:
        """The node a call comes from, proven by its secret; the body must name that node."""
        node = _metadata(context).get(NODE_KEY)
        secret = _secret(context)
        if not node or secret is None:
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "no node credential")
        if not self.hub.authenticate(node, secret):
            # the same answer for an unknown node and a wrong secret: names are not probed
            self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "bad node credential")
        claimed = _field(request, "node", str, context)
        if claimed != node:
            self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {node} may not act as node {claimed:.64}",
            )
        return node

    def _subscribe(
        self, request: wire.Body, context: grpc.ServicerContext
    ) -> Iterator[dict[str, Any]]:
        node = self._caller(request, context)
        secret = _secret(context)
        assert secret is not None  # _caller checked it

        def valid() -> bool:
            # a reissued secret ends the streams opened with the old one
            return context.is_active() and self.hub.authenticate(node, secret)

        try:
            self.hub.attach(node)
        except Refused as e:
            self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        context.add_callback(self.hub.wake)
        log.info("node %s subscribed", node)
        try:
            seen = 0
            last: NodeConfig | None = None  # what this stream's subscriber holds
            while valid() and not self.hub.closed:
                got = self.hub.next_config(node, seen, POLL, alive=valid)
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
        node = self._caller(request, context)
        generation = _field(request, "generation", int, context)
        vms = None
        if isinstance(request, dict) and request.get("vms") is not None:
            try:
                vms = wire.parse_vms(request["vms"])
            except ValueError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        self.hub.ack(node, generation, vms)
        return {}

    def _learn_rpc(self, request: wire.Body, context: grpc.ServicerContext) -> dict[str, Any]:
        node = self._caller(request, context)
        interface_id = _field(request, "interface_id", str, context)
        ip = _field(request, "ip", str, context)
        try:
            ok = self._learn(node, interface_id, ip)
        except Exception as e:  # the service's refusal, whatever its class: report, never crash
            log.warning("learn %s %s on %s refused: %s", ip, interface_id, node, e)
            return {"ok": False, "error": str(e)}
        return {"ok": bool(ok)}

    def _status(self, request: wire.Body, context: grpc.ServicerContext) -> dict[str, Any]:
        secret = parse_secret(_metadata(context).get(OPERATOR_KEY))
        if secret is None or self._operator is None or not same_secret(secret, self._operator):
            self._refuse(
                context, grpc.StatusCode.UNAUTHENTICATED, "Status needs the operator secret"
            )
        if isinstance(request, wire.BadBody):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.why)
        status = {**self.hub.status(), "refused_calls": self.refusals}
        if self._store_revision is not None:
            status["store_revision"] = self._store_revision()
        return status


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


def _secret(context: grpc.ServicerContext) -> bytes | None:
    return parse_secret(_metadata(context).get(SECRET_KEY))


def _field(request: wire.Body, name: str, kind: type[Any], context: grpc.ServicerContext) -> Any:
    """A required request field of type `kind`, or the call ends with INVALID_ARGUMENT."""
    if isinstance(request, wire.BadBody):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.why)
    value = request.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"field {name!r} must be a {kind.__name__}")
    return value
