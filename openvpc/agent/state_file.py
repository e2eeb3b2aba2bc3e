"""The agent's state file: the controller's last config and the learned addresses not yet
acknowledged by the controller, so that both survive an agent restart.

Written atomically and private (jsonfile.write_atomic), read back bounded; a file that cannot
be read or does not hold what we wrote is ignored with a log line, never a crash.
"""

import ipaddress
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openvpc.jsonfile import JsonFileError, read_bounded, write_atomic
from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import NodeConfig

log = logging.getLogger("openvpc.agent")

MAX_PENDING_LEARNS = 256  # addresses awaiting the controller; the oldest claim goes first
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 16  # a NodeConfig nests a handful of levels

Learns = Mapping[str, str]  # address -> the interface that claimed it last


class AgentState:
    """One agent's state file; both parts are rewritten together, from any thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._learns: dict[str, str] = {}
        self.config, self.learns = self._load()

    def _load(self) -> tuple[NodeConfig | None, dict[str, str]]:
        if self.path is None:
            return None, {}
        try:
            doc = read_bounded(self.path, MAX_BYTES, MAX_DEPTH)
        except FileNotFoundError:
            return None, {}
        except (OSError, JsonFileError) as e:
            log.warning("state file %s unreadable, ignored: %s", self.path, e)
            return None, {}
        if not isinstance(doc, dict):
            log.warning("state file %s holds no object, ignored", self.path)
            return None, {}
        if "config" not in doc and "learns" not in doc:
            doc = {"config": doc}  # written before learned addresses were kept
        config = self._parse_config(doc.get("config"))
        learns = self._parse_learns(doc.get("learns"))
        self._config = to_dict(config) if config is not None else None
        self._learns = dict(learns)
        return config, learns

    def _parse_config(self, raw: object) -> NodeConfig | None:
        if raw is None:
            return None
        try:
            return from_dict(NodeConfig, raw)
        except (ValueError, TypeError, KeyError) as e:
            log.warning("state file %s: config unreadable, ignored: %s", self.path, e)
            return None

    def _parse_learns(self, raw: object) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, list):
            log.warning("state file %s: learned addresses unreadable, ignored", self.path)
            return {}
        learns: dict[str, str] = {}
        for item in raw[-MAX_PENDING_LEARNS:]:
            ip = item.get("ip") if isinstance(item, dict) else None
            interface_id = item.get("interface_id") if isinstance(item, dict) else None
            if not isinstance(ip, str) or not isinstance(interface_id, str) or not interface_id:
                log.warning("state file %s: bad learned address %.80r ignored", self.path, item)
                continue
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                log.warning("state file %s: bad learned address %.80r ignored", self.path, ip)
                continue
            learns.pop(ip, None)
            learns[ip] = interface_id
        return learns

    def save_config(self, config: NodeConfig) -> None:
        with self._lock:
            self._config = to_dict(config)
            self._write()

    def save_learns(self, learns: Learns) -> None:
        with self._lock:
            self._learns = dict(learns)
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        doc = {
            "config": self._config,
            "learns": [{"ip": ip, "interface_id": i} for ip, i in self._learns.items()],
        }
        try:
            write_atomic(self.path, doc)
        except OSError as e:
            log.warning("cannot write state file %s: %s", self.path, e)
