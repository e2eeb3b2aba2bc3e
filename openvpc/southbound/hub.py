"""The server's memory: the latest NodeConfig per node, who listens, and what each node acked.

Thread-safe; Subscribe streams block in `next_config` until their node's config changes
(compared without the generation) or the hub closes.
"""

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openvpc.model.nodeconfig import NodeConfig


@dataclass
class _Node:
    version: int = 0  # bumped on every change of the config other than its generation
    config: NodeConfig | None = None
    subscribers: int = 0
    generation_sent: int | None = None
    generation_acked: int | None = None


def same_config(a: NodeConfig | None, b: NodeConfig | None) -> bool:
    """Equal apart from the generation: a new revision that changes nothing is not sent."""
    if a is None or b is None:
        return a is b
    return dataclasses.replace(a, generation=0) == dataclasses.replace(b, generation=0)


class ConfigHub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._nodes: dict[str, _Node] = {}
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

    def attach(self, name: str) -> None:
        with self._cond:
            self._nodes.setdefault(name, _Node()).subscribers += 1

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
            node = self._nodes.setdefault(name, _Node())
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
            self._nodes.setdefault(name, _Node()).generation_sent = generation

    def ack(self, name: str, generation: int) -> None:
        with self._cond:
            self._nodes.setdefault(name, _Node()).generation_acked = generation
            self._cond.notify_all()

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
                    }
                    for name, node in sorted(self._nodes.items())
                ],
            }
