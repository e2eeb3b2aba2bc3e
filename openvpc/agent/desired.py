"""The config the agent works towards, shared by its threads.

`config` is the controller's latest word, also kept in a state file. Until the controller has
spoken (an agent restarted while the controller is away), the proxies answer from that file's
config (DNS records included), else from what the vRouter holds: the adopted config.
"""

import json
import logging
import os
import threading
from pathlib import Path

from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import NodeConfig

log = logging.getLogger("openvpc.agent")


class Desired:
    def __init__(self, state: Path | None = None) -> None:
        self._cond = threading.Condition()
        self._config: NodeConfig | None = None
        self._adopted: NodeConfig | None = None
        self._version = 0  # bumped by every config from the controller, changed or not
        self._state = state
        self._saved = self._load()

    def _load(self) -> NodeConfig | None:
        if self._state is None or not self._state.exists():
            return None
        try:
            return from_dict(NodeConfig, json.loads(self._state.read_text()))
        except (OSError, ValueError, TypeError) as e:
            log.warning("state file %s unreadable, ignored: %s", self._state, e)
            return None

    def _save(self, config: NodeConfig) -> None:
        """Write-then-rename, so a crash leaves the old file or the new one, never half."""
        if self._state is None:
            return
        tmp = self._state.with_name(self._state.name + ".tmp")
        try:
            tmp.write_text(json.dumps(to_dict(config)))
            os.replace(tmp, self._state)
        except OSError as e:
            log.warning("cannot write state file %s: %s", self._state, e)

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
