"""The config the agent works towards, shared by its threads.

`config` is the controller's latest word, also kept in the state file. Until the controller has
spoken (an agent restarted while the controller is away), forwarding is rebuilt towards that
file's config and the proxies answer from it (DNS records included); without one, from what
the vRouter holds: the adopted config.
"""

import threading

from openvpc.agent.state_file import AgentState
from openvpc.model.nodeconfig import NodeConfig


class Desired:
    def __init__(self, state: AgentState | None = None) -> None:
        self._cond = threading.Condition()
        self._config: NodeConfig | None = None
        self._adopted: NodeConfig | None = None
        self._version = 0  # bumped by every config from the controller, changed or not
        self._state = state
        self._saved = state.config if state is not None else None

    def _save(self, config: NodeConfig) -> None:
        if self._state is not None:
            self._state.save_config(config)

    def offer(self, config: NodeConfig) -> None:
        """A config from the controller (also the same one again after a resubscribe)."""
        with self._cond:
            changed = config != self._config
            self._config = config
            self._version += 1
            self._cond.notify_all()
        if changed:
            self._save(config)

    def adopt(self, config: NodeConfig) -> None:
        """What the vRouter holds, for the proxies while the controller has not spoken."""
        with self._cond:
            self._adopted = config

    def latest(self) -> tuple[int, NodeConfig | None]:
        """(version, the controller's config or None)."""
        with self._cond:
            return self._version, self._config

    def saved(self) -> NodeConfig | None:
        """The config the state file held at start (the controller's word before a restart)."""
        return self._saved

    def for_proxies(self) -> NodeConfig | None:
        with self._cond:
            for config in (self._config, self._saved, self._adopted):
                if config is not None:
                    return config
            return None

    def wait_past(self, version: int, timeout: float) -> int:
        """Block until a config newer than `version` arrives or `timeout` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._version != version, timeout)
            return self._version
