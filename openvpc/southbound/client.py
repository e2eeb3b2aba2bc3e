"""The agent's end of the southbound: calls, and a subscription that reconnects forever.

While the controller is unreachable the follower only retries (bounded backoff); it never tells
the agent to change anything, so forwarding goes on with the last state (headless).
"""

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from openvpc.credentials import Credential
from openvpc.model.codec import from_dict
from openvpc.model.nodeconfig import NodeConfig, VmReport
from openvpc.southbound import wire
from openvpc.southbound.backoff import Backoff
from openvpc.southbound.delta import apply_delta

log = logging.getLogger("openvpc.southbound")

CHANNEL_OPTIONS = [
    # grpc's own reconnect backoff defaults to minutes; keep it as short as ours
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class SouthboundError(Exception):
    """The controller could not be reached, or refused the call."""


class Subscription:
    """An open Subscribe stream: iterate for NodeConfigs; `cancel` from any thread ends it."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[NodeConfig]:
        """The whole config first, then the config after each change. Raises SouthboundError
        when the stream breaks or a change cannot be applied (resubscribing starts afresh)."""
        current: NodeConfig | None = None
        try:
            for body in self._call:
                current = next_config(current, body)
                yield current
        except grpc.RpcError as e:
            raise SouthboundError(_describe(e)) from e

    def cancel(self) -> None:
        self._call.cancel()


def next_config(current: NodeConfig | None, body: wire.Body) -> NodeConfig:
    """The config a stream message leads to: a whole config, or a change to `current`."""
    try:
        if isinstance(body, dict) and "config" in body:
            return from_dict(NodeConfig, body["config"])
        if isinstance(body, dict) and "delta" in body and current is not None:
            return apply_delta(current, body["delta"])
    except (ValueError, TypeError, KeyError) as e:
        raise SouthboundError(f"malformed southbound message: {e}") from e
    raise SouthboundError("southbound message is neither a config nor a change to one")


class SouthboundClient:
    """Calls on the controller with `credential` in every call's metadata. A TCP target that
    is not loopback needs `tls_ca` (PEM): the secret never crosses a network in the clear."""

    def __init__(
        self,
        target: str,
        timeout: float = 5.0,
        credential: Credential | None = None,
        tls_ca: bytes | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.credential = credential
        self._metadata = credential.metadata() if credential is not None else ()
        address = wire.grpc_target(target)
        if tls_ca is not None:
            tls = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            self._channel = grpc.secure_channel(address, tls, options=CHANNEL_OPTIONS)
        elif wire.is_local(target):
            self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            raise ValueError(f"{target} is not a loopback address: TLS is required (--tls-ca)")
        self._subscribe = self._channel.unary_stream(
            wire.method_path(wire.SUBSCRIBE),
            request_serializer=wire.encode,
            response_deserializer=wire.decode,
        )
        self._unary = {
            m: self._channel.unary_unary(
                wire.method_path(m),
                request_serializer=wire.encode,
                response_deserializer=wire.decode,
            )
            for m in (wire.ACK, wire.LEARN, wire.STATUS)
        }

    def subscribe(self, node: str) -> Subscription:
        return Subscription(self._subscribe({"node": node}, metadata=self._metadata))

    def ack(self, node: str, generation: int, vms: "Sequence[VmReport] | None" = None) -> None:
        """`generation` is applied; `vms` (when the agent makes VMs) are the ready ones."""
        body: dict[str, Any] = {"node": node, "generation": generation}
        if vms is not None:
            body["vms"] = [wire.vm_body(vm) for vm in vms]
        self._call(wire.ACK, body)

    def learn(self, node: str, interface_id: str, ip: str) -> tuple[bool, str | None]:
        """Ask the controller to move `ip` to `interface_id`: (accepted, why not)."""
        reply = self._call(wire.LEARN, {"node": node, "interface_id": interface_id, "ip": ip})
        error = reply.get("error")
        return bool(reply.get("ok")), str(error) if error is not None else None

    def status(self) -> dict[str, Any]:
        return self._call(wire.STATUS, {})

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            reply: wire.Body = self._unary[method](
                body, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise SouthboundError(f"{method}: {_describe(e)}") from e
        if isinstance(reply, wire.BadBody):
            raise SouthboundError(f"{method}: bad reply: {reply.why}")
        return reply


class Follower:
    """Keeps `node`'s subscription open until stopped, handing every config to `on_config`.

    `on_config` runs on the follower's thread; the stream is read again only after it returns.
    """

    def __init__(
        self,
        client: SouthboundClient,
        node: str,
        on_config: Callable[[NodeConfig], None],
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.on_config = on_config
        self.backoff = backoff or Backoff()
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: Subscription | None = None

    def run(self) -> None:
        warned = False  # one warning per outage, not one per retry
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                sub = self._current = self.client.subscribe(self.node)
            try:
                for config in sub:
                    if not self.connected.is_set():
                        log.info("controller %s: subscribed as %s", self.client.target, self.node)
                        self.connected.set()
                        warned = False
                    self.backoff.reset()
                    self.on_config(config)
                if not self._stop.is_set():
                    raise SouthboundError("the stream ended")
            except SouthboundError as e:
                if not self._stop.is_set():
                    level = logging.DEBUG if warned else logging.WARNING
                    log.log(level, "controller %s: %s; retrying", self.client.target, e)
                    warned = True
            finally:
                self.connected.clear()
                with self._lock:
                    self._current = None
            self._stop.wait(self.backoff.delay())

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            if self._current is not None:
                self._current.cancel()


def _describe(e: grpc.RpcError) -> str:
    code = e.code() if isinstance(e, grpc.Call) else None
    details = e.details() if isinstance(e, grpc.Call) else None
    return f"{code.name if code else 'error'}: {details or e}"
