"""The config the agent works towards, shared by its threads.

`config` is the controller's latest word. Until it has spoken (an agent restarted while the
controller is away), the proxies answer from what the vRouter holds: the adopted config.
"""

import threading

from openvpc.model.nodeconfig import NodeConfig


class Desired:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._config: NodeConfig | None = None
        self._adopted: NodeConfig | None = None
        self._version = 0  # bumped by every config from the controller, changed or not

    def offer(self, config: NodeConfig) -> None:
        """A config from the controller (also the same one again after a resubscribe)."""
        with self._cond:
            self._config = config
            self._version += 1
            self._cond.notify_all()

    def adopt(self, config: NodeConfig) -> None:
        """What the vRouter holds, for the proxies while the controller has not spoken."""
        with self._cond:
            self._adopted = config

    def latest(self) -> tuple[int, NodeConfig | None]:
        """(version, the controller's config or None)."""
        with self._cond:
            return self._version, self._config

    def for_proxies(self) -> NodeConfig | None:
        with self._cond:
            return self._config if self._config is not None else self._adopted

    def wait_past(self, version: int, timeout: float) -> int:
        """Block until a config newer than `version` arrives or `timeout` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)
            return self._version
