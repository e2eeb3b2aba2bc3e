"""The agent's state file: the controller's last config, the learned addresses not yet
acknowledged by the controller, and the VMs the agent made, so that all survive an agent
restart (a restarted agent adopts its VMs; it never touches one it did not make).

Written atomically and private (jsonfile.write_atomic), read back bounded; a file that cannot
be read or does not hold what we wrote is ignored with a log line, never a crash.
"""

import ipaddress
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openvpc.agent.vm_plan import Tap, VmSpec
from openvpc.jsonfile import JsonFileError, read_bounded, write_atomic
from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import NodeConfig

log = logging.getLogger("openvpc.agent")

MAX_PENDING_LEARNS = 256  # addresses awaiting the controller; the oldest claim goes first
MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 16  # a NodeConfig nests a handful of levels

Learns = Mapping[str, str]  # address -> the interface that claimed it last
MadeVms = Mapping[str, tuple[VmSpec, int]]  # netns -> (the VM, its plug's token)
MAX_VMS = 4096


class AgentState:
    """One agent's state file; both parts are rewritten together, from any thread."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._learns: dict[str, str] = {}
        self._vms: list[dict[str, Any]] = []
        self.config, self.learns, self.vms = self._load()

    def _load(self) -> tuple[NodeConfig | None, dict[str, str], dict[str, tuple[VmSpec, int]]]:
        if self.path is None:
            return None, {}, {}
        try:
            doc = read_bounded(self.path, MAX_BYTES, MAX_DEPTH)
        except FileNotFoundError:
            return None, {}, {}
        except (OSError, JsonFileError) as e:
            log.warning("state file %s unreadable, ignored: %s", self.path, e)
            return None, {}, {}
        if not isinstance(doc, dict):
            log.warning("state file %s holds no object, ignored", self.path)
            return None, {}, {}
        if "config" not in doc and "learns" not in doc:
            doc = {"config": doc}  # written before learned addresses were kept
        config = self._parse_config(doc.get("config"))
        learns = self._parse_learns(doc.get("learns"))
        vms = parse_vms(doc.get("vms"), str(self.path))
        self._config = to_dict(config) if config is not None else None
        self._learns = dict(learns)
        self._vms = _vms_doc(vms)
        return config, learns, vms

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

    def save_vms(self, vms: MadeVms) -> None:
        """Written before a VM is made and after it is removed: a crash in between leaves a
        record of something that may not exist, never something that exists unrecorded."""
        with self._lock:
            self._vms = _vms_doc(vms)
            self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        doc = {
            "config": self._config,
            "learns": [{"ip": ip, "interface_id": i} for ip, i in self._learns.items()],
            "vms": self._vms,
        }
        try:
            write_atomic(self.path, doc)
        except OSError as e:
            log.warning("cannot write state file %s: %s", self.path, e)


def _vms_doc(vms: MadeVms) -> list[dict[str, Any]]:
    return [
        {"netns": vm.netns, "token": token, "taps": [to_dict(t) for t in vm.taps]}
        for vm, token in vms.values()
    ]


def parse_vms(raw: object, where: str) -> dict[str, tuple[VmSpec, int]]:
    """The VMs a state file records (netns -> (VM, token)); bad entries are logged, skipped."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        log.warning("state file %s: VMs unreadable, ignored", where)
        return {}
    vms: dict[str, tuple[VmSpec, int]] = {}
    for item in raw[:MAX_VMS]:
        try:
            if not isinstance(item, dict) or not isinstance(item.get("taps"), list):
                raise TypeError("not a VM record")
            netns, token = item.get("netns"), item.get("token")
            if not isinstance(netns, str) or not netns or "/" in netns:
                raise ValueError("bad namespace")
            if not isinstance(token, int) or isinstance(token, bool):
                raise ValueError("bad token")
            taps = tuple(from_dict(Tap, t) for t in item["taps"])
        except (ValueError, TypeError, KeyError) as e:
            log.warning("state file %s: bad VM record %.80r ignored: %s", where, item, e)
            continue
        vms[netns] = (VmSpec(netns, taps), token)
    return vms
