"""Fixtures for the real-lab system tests (root; real namespaces, processes and traffic).

`lab` is a factory: `lab(topology_dict)` writes the dict to a YAML file with a unique lab
name, runs `up`, and returns a `LabHandle`; every lab it made is brought down afterwards, and
then the test fails if any namespace, interface, process, file or pinned BPF object of ours is
left behind. `tcx_programs` lists the programs attached at tcx in a namespace (eBPF tests).
"""

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from openvpc.lab import netns as lab_netns
from openvpc.lab import real, tenants
from openvpc.lab.naming import NETNS_DIR, RUN_ROOT
from openvpc.lab.nsexec import ETC_NETNS
from openvpc.lab.real import LabStatus
from openvpc.model.resources import Snapshot
from openvpc.service import Service
from openvpc.store import Store


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="real-lab tests need root (network namespaces)")
    for item in items:
        if "tests/system" in str(item.fspath):
            item.add_marker(skip)


def unique_name(prefix: str = "t") -> str:
    """A lab name no other test (or run) uses: namespaces are named after it."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# two nodes, a VM on each in one subnet: the smallest lab that crosses the underlay
TINY: dict[str, Any] = {
    "underlay": "l3",
    "nodes": ["a", "b"],
    "tenants": [
        {
            "name": "red",
            "vpcs": [
                {
                    "name": "prod",
                    "cidr": "10.0.0.0/16",
                    "subnets": [{"name": "web", "cidr": "10.0.1.0/24"}],
                    "vms": [
                        {"name": "v1", "subnet": "web", "node": "a"},
                        {"name": "v2", "subnet": "web", "node": "b"},
                    ],
                }
            ],
        }
    ],
}


@dataclass(frozen=True)
class HostSnapshot:
    """What the host shows of our kinds of things; compared before `up` and after `down`."""

    netns: frozenset[str]
    links: frozenset[str]
    run_dirs: frozenset[str]
    etc_netns: frozenset[str]
    processes: frozenset[tuple[int, str]]
    pinned: frozenset[str]
    resolv_conf: str

    @classmethod
    def take(cls) -> "HostSnapshot":
        return cls(
            netns=frozenset(_listdir(Path(NETNS_DIR))),
            links=frozenset(_listdir(Path("/sys/class/net"))),
            run_dirs=frozenset(_listdir(RUN_ROOT)) | _exists(RUN_ROOT),
            etc_netns=frozenset(_listdir(ETC_NETNS)) | _exists(ETC_NETNS),
            processes=frozenset(_our_kind_of_processes()),
            pinned=frozenset(_pinned(BPFFS)),
            resolv_conf=hashlib.sha256(Path("/etc/resolv.conf").read_bytes()).hexdigest(),
        )

    def leaks_since(self, before: "HostSnapshot", labs: Sequence[str]) -> list[str]:
        """What appeared since `before`: namespaces, directories and processes are counted
        only when they carry one of `labs`' names (other work may run on the machine), host
        interfaces always (a lab creates none in the host namespace), pinned BPF objects when
        they carry a lab's name or look like ours (nothing of ours is ever pinned: links and
        maps live by the vRouter's fds). /run/openvpc and /etc/netns themselves are shared by
        labs that overlap in time, so they are not counted here."""
        found = []
        for field in ("netns", "links", "run_dirs", "etc_netns", "processes", "pinned"):
            extra = getattr(self, field) - getattr(before, field)
            if field == "pinned":
                extra = {x for x in extra if _PINNED_OURS.search(x) or any(n in x for n in labs)}
            elif field != "links":
                extra = {x for x in extra if any(name in str(x) for name in labs)}
            if extra:
                found.append(f"{field}: {sorted(extra)}")
        if self.resolv_conf != before.resolv_conf:
            found.append("/etc/resolv.conf changed")
        return found


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _exists(path: Path) -> frozenset[str]:
    return frozenset({f"<{path}>"}) if path.exists() else frozenset()


_OURS = re.compile(r"openvpc|dhclient|iperf3|tcpdump|tshark")
BPFFS = Path("/sys/fs/bpf")
_PINNED_OURS = re.compile(r"openvpc|ov_|ovv|vif_in|fabric_in|slow_in")
_PINNED_MAX = 10_000  # entries walked under bpffs: a bound, not an expectation


def _pinned(root: Path) -> list[str]:
    """Every path pinned under the BPF filesystem (none when it is not mounted)."""
    if not os.path.ismount(root):
        return []
    found: list[str] = []
    for top, dirs, files in os.walk(root):
        found.extend(os.path.join(top, name) for name in (*dirs, *files))
        if len(found) > _PINNED_MAX:
            break
    return found


def _our_kind_of_processes() -> list[tuple[int, str]]:
    """Processes that look like ours (for a leak *check* only; nothing is killed by name)."""
    found = []
    me = os.getpid()
    for entry in _listdir(Path("/proc")):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and _OURS.search(cmd) and "pytest" not in cmd:
            found.append((int(entry), cmd.strip()))
    return found


class LabHandle:
    """A lab that is up: run commands in its VMs and nodes, and crash or restart processes."""

    def __init__(self, name: str, path: Path, status: LabStatus) -> None:
        self.name = name
        self.path = path  # the topology file it was brought up from
        self.started = status

    def status(self) -> LabStatus:
        return real.status(self.name)

    def vm_netns(self, vm: str) -> str:
        return real.vm_namespace(vm, self.name)

    def node_netns(self, node: str) -> str:
        for n in self.started.nodes:
            if n.name == node:
                return n.netns
        raise KeyError(node)

    def fabric_ip(self, node: str) -> str:
        for n in self.started.nodes:
            if n.name == node:
                return n.fabric_ip
        raise KeyError(node)

    def ip(self, vm: str) -> str:
        """The VM's address (without the prefix length): the lease its agent reports, or
        while the controller is down (no reports) the address it allocated at `up`."""
        address = self.status().vm(vm).ip
        if address is None:
            return real.vm_address(vm, self.name)
        return address.split("/")[0]

    def exec(
        self, vm: str, argv: Sequence[str], timeout: float = 30.0
    ) -> "subprocess.CompletedProcess[str]":
        return real.run_in_vm(vm, argv, timeout, self.name)

    def ping(self, vm: str, target: str, count: int = 1, wait: float = 2.0) -> bool:
        """True if `target` answered at least one of `count` echo requests from `vm`."""
        argv = ["ping", "-n", "-c", str(count), "-W", str(wait), target]
        return self.exec(vm, argv, timeout=count * (wait + 1) + 5).returncode == 0

    def node_exec(
        self, node: str, argv: Sequence[str], timeout: float = 30.0
    ) -> "subprocess.CompletedProcess[str]":
        """A command in a compute node's namespace (the underlay side of the lab)."""
        cmd = ["ip", "netns", "exec", self.node_netns(node), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def kill(self, role: str, node: str = "", sig: int = signal.SIGKILL, hold: bool = False) -> int:
        """Crash (SIGKILL) or stop (SIGTERM) the controller, or a node's agent or vRouter;
        its supervisor restarts it unless `hold` (then `start` does). Returns its old pid."""
        return real.kill_process(self.name, role, node, sig, hold=hold)

    def wait_process(self, role: str, node: str = "", other_than: int | None = None) -> int:
        """Until the daemon runs (with a pid other than `other_than`); its pid."""
        return real.wait_process(self.name, role, node, other_than).pid

    def start(self, role: str, node: str = "") -> int:
        return real.start_process(self.name, role, node)

    def restart(self, role: str, node: str = "") -> int:
        return real.restart_process(self.name, role, node)

    def wait_in_sync(self, timeout: float = 30.0) -> LabStatus:
        return real.wait_in_sync(self.name, timeout=timeout)

    def down(self) -> bool:
        return real.down(self.name)

    def store_snapshot(self) -> Snapshot:
        """The controller's whole desired state, read from its store: for white-box checks
        (VNIs, labels, MTUs) that no API answers."""
        store = Store(Path(self.started.state_dir) / "openvpc.db")
        try:
            return Service(store).snapshot()
        finally:
            store.close()

    def aws_env(self, tenant: str) -> dict[str, str]:
        """The environment a tenant's AWS CLI or boto3 runs with against this lab (the tenant
        is created, with a key, if it does not exist); this environment's bin dir first."""
        tenants.create_for_lab(Path(self.started.state_dir), tenant)
        key, secret = real.tenant_key(self.name, tenant)
        url, region = real.api_endpoint(self.name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            AWS_ACCESS_KEY_ID=key,
            AWS_SECRET_ACCESS_KEY=secret,
            AWS_DEFAULT_REGION=region,
            AWS_ENDPOINT_URL=url,
            AWS_PAGER="",
        )
        return env

    def ec2(self, tenant: str, **config: Any) -> Any:
        """A boto3 EC2 client of the tenant (created if missing) on this lab's endpoint."""
        env = self.aws_env(tenant)
        return boto3.client(
            "ec2",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=Config(**({"retries": {"max_attempts": 1}} | config)),
        )


LabFactory = Callable[..., LabHandle]


class Labs:
    """The one lab layer of the system tests: `make(topology)` writes the dict to a YAML
    file under a unique lab name and brings it up; `close()` brings every lab it made down
    and reports anything of theirs left on the host (compared with `before`)."""

    def __init__(self, directory: Path, before: HostSnapshot, prefix: str = "t") -> None:
        self.directory = directory
        self.before = before
        self.prefix = prefix
        self.made: list[str] = []

    def make(self, topology: dict[str, Any], dhcp: bool = True) -> LabHandle:
        name = unique_name(self.prefix)
        doc = {**topology, "name": name}
        path = self.directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.made.append(name)
        return LabHandle(name, path, real.up(path, dhcp=dhcp))

    def close(self) -> list[str]:
        """Down every lab; the errors and leaks found (empty when all is clean)."""
        errors = []
        for name in self.made:
            try:
                real.down(name)
            except Exception as exc:
                errors.append(f"down {name}: {exc!r}")
        return errors + HostSnapshot.take().leaks_since(self.before, self.made)


@contextlib.contextmanager
def checked_labs(
    directory: Path, prefix: str = "t", before: HostSnapshot | None = None
) -> Iterator[Labs]:
    """Labs made under `directory`; at the end every one is brought down, and anything of
    theirs left on the host (against `before`, or the host as it is now) fails the test."""
    labs = Labs(directory, before or HostSnapshot.take(), prefix=prefix)
    try:
        yield labs
    finally:
        problems = labs.close()
        assert not problems, "; ".join(problems)


@contextlib.contextmanager
def datapath_lab(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    topology: dict[str, Any],
    prefix: str,
) -> Iterator[LabHandle]:
    """The lab of a module fixture parametrized by datapath ("ebpf" skips where this host
    cannot run it), brought down and checked for leaks at the end of the module."""
    datapath = str(request.param)
    if datapath == "ebpf" and (why := real.ebpf_refusal()) is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    with checked_labs(tmp_path_factory.mktemp(prefix), prefix) as labs:
        yield labs.make({**topology, "datapath": datapath})


@pytest.fixture
def host_snapshot() -> HostSnapshot:
    return HostSnapshot.take()


@pytest.fixture
def lab(tmp_path: Path, host_snapshot: HostSnapshot) -> Iterator[LabFactory]:
    """`lab(topology, dhcp=True)`: up a topology dict (its name is replaced by a unique one)."""
    with checked_labs(tmp_path, before=host_snapshot) as labs:
        yield labs.make


def wait_for_line(proc: "subprocess.Popen[str]", text: str, timeout: float = 15.0) -> str:
    """Read `proc`'s output until a line containing `text` (a listener saying it is ready);
    fails if the process ends or `timeout` passes first. Reads the pipe's fd directly so that
    nothing after that line is consumed from a buffer `communicate` would not see."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)  # byte by byte: stop right after the line
        if not chunk:
            break
        seen += chunk
        if chunk == b"\n" and text.encode() in seen.rsplit(b"\n", 2)[-2]:
            return seen.decode(errors="replace")
    raise AssertionError(f"no line with {text!r} within {timeout:.0f} s: {seen!r:.300}")


# -- what is attached at tcx (the eBPF datapath) -------------------------------------------
_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_QUERY = 16
_BPF_TCX = {"ingress": 46, "egress": 47}  # BPF_TCX_INGRESS, BPF_TCX_EGRESS
_QUERY_MAX = 64


def _tcx_query(ifindex: int, attach_type: int) -> list[int]:
    """The ids of the programs attached at one tcx hook of a device of this thread's
    namespace: the kernel's own answer (BPF_PROG_QUERY), not the vRouter's."""
    libc = ctypes.CDLL(None, use_errno=True)
    ids = (ctypes.c_uint32 * _QUERY_MAX)()
    attr = (ctypes.c_uint8 * 64)()  # union bpf_attr's query: target, type, flags, ids, count
    ctypes.memmove(attr, (ctypes.c_uint32 * 2)(ifindex, attach_type), 8)
    ctypes.memmove(ctypes.addressof(attr) + 16, (ctypes.c_uint64 * 1)(ctypes.addressof(ids)), 8)
    ctypes.memmove(ctypes.addressof(attr) + 24, (ctypes.c_uint32 * 1)(_QUERY_MAX), 4)
    if libc.syscall(_SYS_BPF[platform.machine()], _BPF_PROG_QUERY, attr, len(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_QUERY on ifindex {ifindex}: {os.strerror(err)}")
    count = int.from_bytes(bytes(attr[24:28]), "little")
    return list(ids[: min(count, _QUERY_MAX)])


def tcx_programs(ns: str | None) -> dict[str, dict[str, list[str]]]:
    """The programs attached at tcx in namespace `ns` (None: this one), by device and
    direction, by name (bpftool names the ids: bpftool 7.1 itself shows tcx links without
    their device). Devices with nothing attached are left out."""
    shown = subprocess.run(
        ["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True
    )
    names = {int(p["id"]): str(p.get("name", "?")) for p in json.loads(shown.stdout or "[]")}
    found: dict[str, dict[str, list[str]]] = {}
    with lab_netns.inside(ns):
        for ifindex, ifname in socket.if_nameindex():
            for direction, attach_type in _BPF_TCX.items():
                progs = _tcx_query(ifindex, attach_type)
                if progs:
                    found.setdefault(ifname, {})[direction] = [
                        names.get(i, f"id {i}") for i in progs
                    ]
    return found


def vrouter_stats(h: LabHandle, node: str) -> dict[str, Any]:
    """The vRouter's counters (the `stats` op), read as an observer (real.observe)."""
    result = real.observe(node, "stats", h.name)
    if not isinstance(result, dict):
        raise AssertionError(f"stats reply is not an object: {result!r:.80}")
    return result
