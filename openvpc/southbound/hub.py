"""The server's memory: the latest NodeConfig per node, who listens, what each node acked, and
the VMs it reports ready (with their leases).

Thread-safe; Subscribe streams block in `next_config` until their node's config changes
(compared without the generation) or the hub closes. Only registered nodes (those with a
credential) and compiled nodes ever get an entry: a name nobody registered costs nothing.
"""

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openvpc.credentials import matches
from openvpc.model.nodeconfig import NodeConfig, VmReport

MAX_SUBSCRIPTIONS = 2  # per node: the agent, and its successor while the old stream winds down


class Refused(Exception):
    """A subscription the hub does not take: an unregistered node, or too many streams."""


@dataclass
class _Node:
    version: int = 0  # bumped on every change of the config other than its generation
    config: NodeConfig | None = None
    subscribers: int = 0
    generation_sent: int | None = None
    generation_acked: int | None = None
    vms: dict[str, VmReport] = field(default_factory=dict)  # by interface id


def same_config(a: NodeConfig | None, b: NodeConfig | None) -> bool:
    """Equal apart from the generation: a new revision that changes nothing is not sent."""
    if a is None or b is None:
        return a is b
    return dataclasses.replace(a, generation=0) == dataclasses.replace(b, generation=0)


class ConfigHub:
    def __init__(self, max_subscriptions: int = MAX_SUBSCRIPTIONS) -> None:
        self._cond = threading.Condition()
        self._nodes: dict[str, _Node] = {}
        self._credentials: dict[str, str] = {}  # node -> SHA-256 of its secret
        self.max_subscriptions = max_subscriptions
        self._revision: int | None = None
        self._closed = False

    @property
    def revision(self) -> int | None:
        with self._cond:
            return self._revision

    def publish(self, revision: int, configs: dict[str, NodeConfig]) -> list[str]:
        """Take the compiled configs of one revision; returns the nodes whose config changed.

        A node that is known (listening, or compiled before) but absent from `configs` gets an
        empty config: nothing of the tenants' lives on it any more.
        """
        changed = []
        with self._cond:
            self._revision = revision
            for name in sorted(set(self._nodes) | set(configs)):
                node = self._nodes.setdefault(name, _Node())
                new = configs.get(name) or NodeConfig(node=name, generation=revision)
                if not same_config(node.config, new):
                    node.config = new
                    node.version += 1
                    changed.append(name)
            self._cond.notify_all()
        return changed

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def set_credentials(self, hashes: Mapping[str, str]) -> None:
        """The registered nodes and their secrets' hashes (from the store)."""
        with self._cond:
            if hashes != self._credentials:
                self._credentials = dict(hashes)
                self._cond.notify_all()  # streams of a revoked secret end

    def authenticate(self, name: str, secret: bytes) -> bool:
        """Whether `secret` is registered node `name`'s."""
        with self._cond:
            expected = self._credentials.get(name)
        return expected is not None and matches(secret, expected)

    def attach(self, name: str) -> None:
        """Count a stream of a registered node; raises Refused (remembering nothing)."""
        with self._cond:
            if name not in self._credentials:
                raise Refused(f"node {name!r} is not registered")
            node = self._nodes.get(name)
            if node is not None and node.subscribers >= self.max_subscriptions:
                raise Refused(f"node {name!r} already has {node.subscribers} subscriptions")
            if node is None:
                node = self._nodes[name] = _Node()
            node.subscribers += 1

    def detach(self, name: str) -> None:
        with self._cond:
            node = self._nodes.get(name)
            if node is not None and node.subscribers > 0:
                node.subscribers -= 1

    def next_config(
        self, name: str, seen: int, timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> tuple[int, NodeConfig] | None:
        """The node's config once its version is past `seen`; None on timeout, on close, or
        once `alive()` turns false (checked whenever `wake` is called)."""
        with self._cond:
            node = self._nodes.get(name)
            if node is None:  # only attached nodes wait here
                return None
            if node.config is None and self._revision is not None:
                # a node the compiler has never heard of: nothing to run there
                node.config = NodeConfig(node=name, generation=self._revision)
                node.version += 1
            ready = self._cond.wait_for(
                lambda: (
                    self._closed or not alive() or (node.config is not None and node.version > seen)
                ),
                timeout,
            )
            if not ready or self._closed or not alive() or node.config is None:
                return None
            return node.version, node.config

    def mark_sent(self, name: str, generation: int) -> None:
        with self._cond:
            node = self._nodes.get(name)
            if node is not None:
                node.generation_sent = generation

    def ack(self, name: str, generation: int, vms: tuple[VmReport, ...] | None = None) -> bool:
        """Record a registered node's ack, and the VMs it reports ready when it reports any
        (the whole set each time); False (nothing kept) for an unknown node."""
        with self._cond:
            node = self._nodes.get(name)
            if node is None:
                if name not in self._credentials:
                    return False
                node = self._nodes[name] = _Node()
            node.generation_acked = generation
            if vms is not None:
                node.vms = {vm.interface_id: vm for vm in vms}
            self._cond.notify_all()
            return True

    def acked(self, name: str) -> int | None:
        """The generation (store revision) the node last said it applied."""
        with self._cond:
            node = self._nodes.get(name)
            return node.generation_acked if node is not None else None

    def vm(self, name: str, interface_id: str) -> VmReport | None:
        """The node's report of the VM of `interface_id`, if it reports it ready."""
        with self._cond:
            node = self._nodes.get(name)
            return node.vms.get(interface_id) if node is not None else None

    def close(self) -> None:
        """Wake every waiting stream so the server can stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        """The Status body. `generation` is the node's latest compiled config: in sync when
        `generation_acked` has reached it."""
        with self._cond:
            return {
                "revision": self._revision,
                "nodes": [
                    {
                        "node": name,
                        "connected": node.subscribers > 0,
                        "generation": node.config.generation if node.config else None,
                        "generation_sent": node.generation_sent,
                        "generation_acked": node.generation_acked,
                        "vms": [dataclasses.asdict(vm) for _, vm in sorted(node.vms.items())],
                    }
                    for name, node in sorted(self._nodes.items())
                ],
            }
