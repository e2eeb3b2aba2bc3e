"""The real lab: `up` a topology file on network namespaces with real processes, `status`,
`exec` into a VM, `down`; plus process kill/restart helpers for tests.

The VMs are made by the nodes' agents (from the config the controller compiles, in namespaces
named with the lab's VM prefix only); `up` waits until the agents report them ready with a
lease, `status` shows what they report, and `down` removes what their state files list.

Each daemon runs under a supervisor parent (openvpc.lab.supervisor) that restarts it when it
dies; the state file records the supervisor, its status file names the daemon's current pid.

Everything `up` creates is recorded in /run/openvpc/<lab>/state.json the moment it exists, and
`down` undoes those records, so `down` after a crash, a failed `up`, or a second `down` are all
safe; then it sweeps by the lab's names for whatever a damaged or lost state file no longer
records (after an intact one the sweep finds nothing).
The state directory is root's only (0700): it holds the store, the sockets and the secrets,
and VMs never see it (`nsexec`).
"""

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openvpc.api.app import DEFAULT_REGION
from openvpc.credentials import Credential, CredentialError, new_secret, read_secret_file
from openvpc.credentials import write_secret_file as _write_secret
from openvpc.lab import internet, netns, nsexec, supervise, sweep, tenants
from openvpc.lab.naming import RUN_ROOT, STATE_FILE, check_name, state_dir, vm_prefix
from openvpc.lab.preflight import check_topology
from openvpc.lab.processes import (
    AGENT,
    CONTROLLER,
    VROUTER,
    ProcessSpec,
    agent_spec,
    agent_state_file,
    controller_spec,
    controller_target,
    node_secret_file,
    openvpc_command,
    operator_secret_file,
    vrouter_socket,
    vrouter_spec,
)
from openvpc.lab.state import (
    Record,
    StateError,
    StateFile,
    latest_processes,
    of_kind,
    teardown_order,
)
from openvpc.lab.supervisor import STOP_GRACE
from openvpc.lab.topology import Topology, TopologyError, load_topology
from openvpc.lab.underlay import NodePlacement, UnderlayPlan, build_underlay
from openvpc.model.resources import Snapshot
from openvpc.model.vifnames import Datapath
from openvpc.vrouter.control import ROLE_OBSERVER, ControlClient, ControlError

log = logging.getLogger("openvpc.lab")

START_TIMEOUT = 30.0  # a process's socket appears within this (eBPF: after the verifier)
SYNC_TIMEOUT = 30.0  # every agent has acked the compiled generation within this
VM_TIMEOUT = 45.0  # the agents report every VM ready (with a lease) within this
SUPERVISOR_GRACE = STOP_GRACE + 2.0  # a supervisor stops its daemon first


class LabError(Exception):
    """The lab could not be brought up, found, or operated; the message says why."""


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    role: str
    node: str
    pid: int  # the daemon's current pid; 0 while it is down
    alive: bool
    log: str
    restarts: int = 0  # how often its supervisor started it again
    held: bool = False  # its supervisor does not restart it (kill_process(hold=True))
    supervised: bool = True  # its supervisor runs (without one nothing restarts it)
    last_exit: str | None = None  # how the daemon last ended ("killed by SIGKILL"), if it did


@dataclass(frozen=True, slots=True)
class ReportedVm:
    """An interface whose VM the node's agent reports ready, with its lease once bound."""

    interface_id: str
    netns: str
    ip: str | None
    instance_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class AgentStatus:
    node: str
    connected: bool
    generation: int | None  # the node's latest compiled config
    generation_acked: int | None
    vms: tuple[ReportedVm, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    name: str
    netns: str
    fabric_ip: str


@dataclass(frozen=True, slots=True)
class VmStatus:
    name: str
    node: str
    netns: str
    ip: str | None  # "a.b.c.d/len": the lease its agent reports
    interface: str = ""
    ready: bool = False  # its agent reports it made and its port attached


@dataclass(frozen=True, slots=True)
class LabStatus:
    name: str
    underlay: str
    state_dir: str
    ready: bool  # `up` finished
    nodes: tuple[NodeStatus, ...]
    processes: tuple[ProcessStatus, ...]
    revision: int | None  # the store revision the controller has compiled
    agents: tuple[AgentStatus, ...]
    vms: tuple[VmStatus, ...]
    controller_error: str | None = None
    store_revision: int | None = None  # the store's latest, as the controller reads it

    def vm(self, name: str) -> VmStatus:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise LabError(f"lab {self.name} has no VM {name}")

    def error_free(self) -> bool:
        return self.controller_error is None

    def in_sync(self) -> bool:
        return bool(self.agents) and all(
            a.connected and a.generation is not None and a.generation_acked == a.generation
            for a in self.agents
        )


def _state(name: str, root: Path) -> StateFile:
    return StateFile(state_dir(name, root) / STATE_FILE)


def labs(root: Path = RUN_ROOT) -> list[str]:
    """Labs that have a state directory (up, or left behind by a crash, perhaps without a
    readable state file: `down` still removes what carries their names)."""
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def resolve_name(name: str | None, root: Path = RUN_ROOT) -> str:
    """The named lab, or the only one there is."""
    if name is not None:
        return check_name("lab", name)
    found = labs(root)
    if len(found) == 1:
        return found[0]
    if not found:
        raise LabError("no lab is up")
    raise LabError(f"several labs are up ({', '.join(found)}): name one")


# --- up -------------------------------------------------------------------------------------


def up(
    path: str | Path,
    root: Path = RUN_ROOT,
    dhcp: bool = True,
    progress: Callable[[str], None] = log.info,
) -> LabStatus:
    """Bring the topology in `path` up; if that lab is already up, change nothing. The whole
    file is checked first (against a scratch store): a bad one creates nothing."""
    topo, plan = check_topology(path)
    name = check_name("lab", topo.name)
    datapath = choose_datapath(name, topo.datapath, progress)
    state = _state(name, root)
    if state.exists():
        try:
            current: LabStatus | None = status(name, root)
        except LabError:
            current = None  # an unreadable state: treat it as a crash's leftovers
        if current is not None and current.ready and all(p.alive for p in current.processes):
            progress(f"lab {name} is already up")
            return current
        progress(f"lab {name}: cleaning up what a previous run left behind")
        down(name, root)
    try:
        _up(topo, plan, Path(path), root, state, dhcp, datapath, progress)
    except BaseException as exc:
        tails = _log_tails(state)
        down(name, root)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise LabError(f"lab {name} failed to come up: {exc}{tails}") from exc
    return status(name, root)


def _up(
    topo: Topology,
    plan: UnderlayPlan,
    path: Path,
    root: Path,
    state: StateFile,
    dhcp: bool,
    datapath: Datapath,
    progress: Callable[[str], None],
) -> None:
    name = topo.name
    _check_free(plan.all_netns())
    sdir = state.path.parent
    first: list[Record] = []
    if not root.exists():
        root.mkdir(mode=0o700, parents=True)
        first.append({"kind": "dir", "path": str(root)})
    sdir.mkdir(mode=0o700)
    os.chmod(sdir, 0o700)  # whatever the umask
    first.append({"kind": "dir", "path": str(sdir), "tree": True})
    api = f"http://127.0.0.1:{free_port()}"
    meta = {
        "name": name,
        "topology": str(path.resolve()),
        "underlay": plan.kind,
        "state_dir": str(sdir),
        "controller": controller_target(sdir),
        "api": api,
        "region": DEFAULT_REGION,
        "dhcp": dhcp,
        "datapath": datapath,
    }
    StateFile.create(state.path, meta, *first)
    write_secret_file(state, operator_secret_file(sdir), new_secret())
    _build(topo, plan, state, progress)
    progress(f"processes: controller (EC2 API on {api}), a vRouter and an agent per node")
    _run_processes(state, plan.nodes, root, dhcp, api, topo.encap, datapath)
    if topo.internet is not None:
        progress(f"internet: a web server in the namespace behind {topo.internet}")
        internet.start_web_server(sdir, name)
    if topo.tenants:
        progress("tenants: the file applied through the EC2 API, as a client would")
        _apply(name, root, topo, progress)
    state.add("ready")


def choose_datapath(lab: str, wanted: str, progress: Callable[[str], None]) -> Datapath:
    """The vRouters' datapath: ebpf where this machine can run it when the file says auto
    (or nothing), python otherwise; an explicit ebpf that cannot run is refused."""
    if wanted == "python":
        return "python"
    why = ebpf_refusal()
    if why is None:
        return "ebpf"
    if wanted == "ebpf":
        raise LabError(f"lab {lab}: datapath ebpf: {why} (or use `datapath: python`)")
    progress(f"datapath: python, since the eBPF one cannot run here: {why}")
    return "python"


def ebpf_refusal() -> str | None:
    """Why this machine cannot run the eBPF datapath (object not built, kernel unable), or
    None when it can."""
    from openvpc.vrouter.ebpf import objects

    try:
        objects.datapath_object()
    except FileNotFoundError as exc:
        return str(exc)
    return objects.unsupported_reason()


def free_port() -> int:
    """A TCP port free on loopback now (the controller binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apply_file(
    path: str | Path, root: Path = RUN_ROOT, progress: Callable[[str], None] = log.info
) -> list[str]:
    """`openvpc apply`: bring the running lab the file names to what the file says (only the
    differences are applied); returns what was done."""
    topo = load_topology(path)
    name = check_name("lab", topo.name)
    if not _state(name, root).exists():
        raise LabError(f"lab {name} is not up: `openvpc up` it first")
    return _apply(name, root, topo, progress)


def _apply(name: str, root: Path, topo: Topology, progress: Callable[[str], None]) -> list[str]:
    """Apply the file's tenants through the lab's API, record its VMs, and wait until the
    agents report each of them ready (with a lease when the lab runs DHCP)."""
    state = _state(name, root)
    meta = state.meta()
    url, region = str(meta["api"]), str(meta.get("region", DEFAULT_REGION))
    sdir = Path(meta["state_dir"])
    try:
        done = tenants.apply_file(sdir / "openvpc.db", topo, url, region, progress)
    except TopologyError as exc:
        raise LabError(str(exc)) from exc
    _record_vms(state, topo, url, region)
    if of_kind(state.records(), "vm"):
        dhcp = bool(meta.get("dhcp", True))
        progress("VMs: made by the agents" + (", each configured by DHCP" if dhcp else ""))
        _wait_vms(name, root, lease=dhcp)
    return done


def _record_vms(state: StateFile, topo: Topology, url: str, region: str) -> None:
    """A `vm` record for each instance of the file (by name), a `vm_gone` for a recorded one
    the file dropped: what status, exec and the tests look VMs up by."""
    from openvpc.lab import apiview
    from openvpc.lab.apply import Endpoint

    sdir = state.path.parent
    store_keys = _keys(sdir)
    endpoint = Endpoint(url, region, store_keys)
    prefix = vm_prefix(sdir.name)
    current = recorded_vms(state.records())
    wanted: set[str] = set()
    for tenant in topo.tenants:
        view = apiview.read(endpoint.ec2(tenant.name), tenant.name)
        ips = {i.id: i.ip for i in view.interfaces}
        macs = {i.id: i.mac for i in view.interfaces}
        names = {vm.name for vpc in tenant.vpcs for vm in vpc.vms}
        for inst in view.instances:
            if inst.name not in names:
                continue
            wanted.add(inst.name)
            have = current.get(inst.name)
            if have is not None and have.get("instance") == inst.id:
                continue
            state.add(
                "vm",
                name=inst.name,
                node=inst.node,
                netns=prefix + inst.id,
                ifname="eth0",
                interface=inst.interface,
                instance=inst.id,
                mac=macs.get(inst.interface, ""),
                ip=ips.get(inst.interface, ""),
            )
    for vm in current.keys() - wanted:
        state.add("vm_gone", name=vm)


def _keys(sdir: Path) -> dict[str, tuple[str, str]]:
    from openvpc.service import Service
    from openvpc.store import Store

    store = Store(sdir / "openvpc.db")
    try:
        return tenants.keys(Service(store))
    finally:
        store.close()


def recorded_vms(records: list[Record]) -> dict[str, Record]:
    """The latest `vm` record of every VM name that no later `vm_gone` removed."""
    out: dict[str, Record] = {}
    for r in records:
        if r["kind"] == "vm":
            out[r["name"]] = r
        elif r["kind"] == "vm_gone":
            out.pop(r["name"], None)
    return out


def _check_free(namespaces: Sequence[str]) -> None:
    """Recorded things are removed by `down`: never record what someone else made."""
    taken = [ns for ns in namespaces if netns.netns_exists(ns)]
    taken += [str(nsexec.ETC_NETNS / ns) for ns in namespaces if (nsexec.ETC_NETNS / ns).exists()]
    if taken:
        raise LabError(f"not created by this lab, remove them first: {', '.join(taken)}")


def _build(
    topo: Topology, plan: UnderlayPlan, state: StateFile, progress: Callable[[str], None]
) -> None:
    """The underlay, then the store (through the service layer); the agents make the VMs."""
    progress(
        f"underlay {plan.kind}: {len(plan.fabric_ns)} fabric and {len(plan.nodes)} node namespaces"
    )
    build_underlay(
        plan,
        lambda ns: state.add("netns", name=ns),
        lambda ns, ifname: state.add("link", ns=ns, ifname=ifname),
    )
    for p in plan.nodes:
        state.add("node", name=p.node, netns=p.ns, fabric_ip=p.ip, ifname=p.ifname)

    progress("store: nodes, fabric MTU and the tenants' keys (the operator's part)")
    _seed_store(state.path.parent, topo, plan.nodes, state)
    # the agents make /etc/netns/<vm>; the parent is `down`'s to remove if we made it
    _mkdir(state, nsexec.ETC_NETNS)


def _mkdir(state: StateFile, path: Path) -> None:
    if path.exists():
        return  # not ours: /etc/netns may be shared with other labs and `ip netns`
    state.add("dir", path=str(path))
    path.mkdir(mode=0o755, exist_ok=True)


def _run_processes(
    state: StateFile,
    nodes: Sequence[NodePlacement],
    root: Path,
    dhcp: bool,
    api: str,
    encap: str,
    datapath: str = "python",
) -> None:
    """The controller, then every node's vRouter and agent (which makes the node's VMs);
    wait until all agents applied what the controller compiled from the store."""
    sdir = state.path.parent
    openvpc = openvpc_command()
    _start(state, controller_spec(sdir, openvpc, api.removeprefix("http://"), encap))
    for p in nodes:
        _start(state, vrouter_spec(sdir, openvpc, p.node, p.ns, datapath))
    prefix = vm_prefix(sdir.name)
    for p in nodes:
        _start(state, agent_spec(sdir, openvpc, p.node, p.ns, prefix, dhcp))
    _wait_in_sync(sdir.name, root, None, [p.node for p in nodes], strict=True)


def _seed_store(
    sdir: Path, topo: Topology, nodes: Sequence[NodePlacement], state: StateFile
) -> None:
    """A new store with what an operator sets up before the controller starts: nodes and
    their secrets, the fabric MTU, the VMs' namespace prefix, the tenants and their keys."""
    from openvpc.service import Service
    from openvpc.store import Store

    db = sdir / "openvpc.db"
    state.add("file", path=str(db))
    store = Store(db)
    try:
        service = Service(store)
        tenants.seed(service, topo, nodes, vm_prefix(sdir.name))
        for p in nodes:
            write_secret_file(
                state, node_secret_file(sdir, p.node), service.issue_node_secret(p.node)
            )
    finally:
        store.close()


def write_secret_file(state: StateFile, path: Path, secret: bytes) -> None:
    """A root-only secret file, recorded before it exists."""
    state.add("file", path=str(path))
    _write_secret(path, secret)


def _start(state: StateFile, spec: ProcessSpec) -> supervise.Started:
    def record(started: supervise.Started) -> None:
        state.add(
            "process",
            role=spec.role,
            node=spec.node,
            pid=started.pid,
            start=started.start,
            argv=list(spec.argv),
            log=spec.log,
            socket=spec.socket,
            status=spec.status,
        )

    # the log is private like everything else in the state directory
    os.close(os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    status_path = Path(spec.status) if spec.status else None
    started = supervise.spawn(spec.argv, Path(spec.log), record, _child_env(), status_path)
    if spec.socket is not None:
        _wait_for_socket(spec, started)
    return started


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_for_socket(spec: ProcessSpec, started: supervise.Started) -> None:
    assert spec.socket is not None
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(spec.socket):
        daemon = supervise.read_status(Path(spec.status)) if spec.status else None
        exited = daemon is not None and daemon.last_exit is not None
        if exited or not supervise.alive(started.pid, started.start):
            raise LabError(f"{_label(spec.role, spec.node)} exited at start; see {spec.log}")
        if time.monotonic() > deadline:
            raise LabError(
                f"{_label(spec.role, spec.node)} made no socket in "
                f"{START_TIMEOUT:.0f} s; see {spec.log}"
            )
        time.sleep(0.05)


def _label(role: str, node: str) -> str:
    return f"{role} {node}" if node else role


def _wait_in_sync(
    name: str,
    root: Path,
    revision: int | None,
    nodes: list[str],
    timeout: float = SYNC_TIMEOUT,
    strict: bool = False,
) -> LabStatus:
    """Until the agents acked `revision` (None: the store's latest, as the controller reads
    it when asked); a dead supervisor fails at once, and so does a dead daemon when `strict`
    (during `up`; later its supervisor brings it back)."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(name, root)
        dead = [
            p for p in current.processes if not p.supervised or (strict and p.last_exit is not None)
        ]
        if dead:
            raise LabError(f"{_label(dead[0].role, dead[0].node)} died; see {dead[0].log}")
        target = current.store_revision if revision is None else revision
        if (
            current.revision is not None
            and target is not None
            and current.revision >= target
            and current.in_sync()
            and {a.node for a in current.agents} >= set(nodes)
        ):
            return current
        if time.monotonic() > deadline:
            raise LabError(
                f"agents did not apply revision {target} within {timeout:.0f} s: "
                f"{current.agents or current.controller_error}"
            )
        time.sleep(0.1)


def wait_in_sync(name: str, root: Path = RUN_ROOT, timeout: float = SYNC_TIMEOUT) -> LabStatus:
    """Wait until the controller compiled the store's latest revision and every agent acked
    it (the controller answers both: nothing here opens its store)."""
    nodes = [r["name"] for r in of_kind(_state(name, root).records(), "node")]
    return _wait_in_sync(name, root, None, nodes, timeout)


def _wait_vms(
    name: str, root: Path, lease: bool, timeout: float = VM_TIMEOUT, expect: int = 0
) -> LabStatus:
    """Until the agents report every VM of the lab ready (and bound, when `lease`), and at
    least `expect` of them; a daemon that dies meanwhile fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(name, root)
        dead = [p for p in current.processes if not p.supervised or p.last_exit is not None]
        if dead:
            raise LabError(f"{_label(dead[0].role, dead[0].node)} died; see {dead[0].log}")
        waiting = [vm.name for vm in current.vms if not vm.ready or (lease and vm.ip is None)]
        if not waiting and len(current.vms) >= expect:
            return current
        if time.monotonic() > deadline:
            which = ", ".join(waiting) or f"(only {len(current.vms)} of {expect})"
            raise LabError(
                f"the agents did not report VMs {which} ready"
                f"{' with a lease' if lease else ''} within {timeout:.0f} s"
            )
        time.sleep(0.1)


def wait_vms(name: str, expect: int = 0, root: Path = RUN_ROOT) -> LabStatus:
    """Until at least `expect` VMs (and every VM the lab knows) are ready, with a lease when
    the lab runs DHCP."""
    lab = resolve_name(name, root)
    dhcp = bool(_state(lab, root).meta().get("dhcp", True))
    return _wait_vms(lab, root, lease=dhcp, expect=expect)


def _log_tails(state: StateFile, lines: int = 8) -> str:
    try:
        records = state.records()
    except StateError:
        return ""
    logs = [r["log"] for r in of_kind(records, "process")]
    logs += [r["path"] for r in of_kind(records, "file") if r["path"].endswith(".log")]
    logs += sorted(str(p) for p in state.path.parent.glob("dhclient-*.log"))  # the agents'
    out = []
    for path in logs:
        try:
            text = Path(path).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            out.append(f"\n--- {path} (last lines)\n" + "\n".join(text))
    return "".join(out)


# --- status ---------------------------------------------------------------------------------


def status(name: str | None = None, root: Path = RUN_ROOT) -> LabStatus:
    name = resolve_name(name, root)
    state = _state(name, root)
    try:
        records = state.records()
        meta = state.meta()
    except StateError as exc:
        raise LabError(f"lab {name}: {exc}") from exc
    processes = tuple(_process_status(r) for r in latest_processes(records).values())
    revision, stored, agents, error = _controller_status(
        meta["controller"], operator_secret_file(Path(meta["state_dir"]))
    )
    reported = {(a.node, vm.interface_id): vm for a in agents for vm in a.vms}
    vm_list = []
    for r in recorded_vms(records).values():
        interface = str(r.get("interface", ""))
        found = reported.pop((r["node"], interface), None)
        ready = found is not None and found.netns == r["netns"]
        ip = found.ip if found is not None and ready else None
        vm_list.append(VmStatus(r["name"], r["node"], r["netns"], ip, interface, ready))
    for (node, interface), vm in sorted(reported.items()):  # made through the API at runtime
        label = vm.name or vm.instance_id or interface
        vm_list.append(VmStatus(label, node, vm.netns, vm.ip, interface, True))
    return LabStatus(
        name=name,
        underlay=meta["underlay"],
        state_dir=meta["state_dir"],
        ready=bool(of_kind(records, "ready")),
        nodes=tuple(
            NodeStatus(r["name"], r["netns"], r["fabric_ip"]) for r in of_kind(records, "node")
        ),
        processes=processes,
        revision=revision,
        agents=agents,
        vms=tuple(vm_list),
        controller_error=error,
        store_revision=stored,
    )


def _daemon(record: Record) -> supervise.DaemonStatus | None:
    """What the record's supervisor publishes about its daemon (None: nothing readable)."""
    path = record.get("status")
    if not path:
        return None
    daemon = supervise.read_status(Path(path))
    return daemon if daemon is not None and daemon.supervisor == record["pid"] else None


def _process_status(r: Record) -> ProcessStatus:
    supervised = supervise.alive(r["pid"], r["start"])
    if not r.get("status"):  # recorded without a supervisor: the record is the daemon
        alive = supervised
        return ProcessStatus(r["role"], r["node"], r["pid"], alive, r["log"], supervised=alive)
    d = _daemon(r)
    if d is None:
        return ProcessStatus(r["role"], r["node"], 0, False, r["log"], supervised=supervised)
    running = supervised and d.alive()
    return ProcessStatus(
        r["role"],
        r["node"],
        d.pid if running and d.pid is not None else 0,
        running,
        r["log"],
        d.restarts,
        d.held,
        supervised,
        d.last_exit,
    )


def _controller_status(
    target: str, secret_file: Path
) -> tuple[int | None, int | None, tuple[AgentStatus, ...], str | None]:
    """(compiled revision, the store's revision, agents, error) from the controller."""
    from openvpc.southbound.client import SouthboundClient, SouthboundError

    try:
        credential = Credential("operator", read_secret_file(secret_file))
    except CredentialError as exc:
        return None, None, (), str(exc)
    client = SouthboundClient(target, timeout=2.0, credential=credential)
    try:
        body = client.status()
    except SouthboundError as exc:
        return None, None, (), str(exc)
    finally:
        client.close()
    agents = tuple(
        AgentStatus(
            n["node"],
            bool(n.get("connected")),
            n.get("generation"),
            n.get("generation_acked"),
            tuple(
                ReportedVm(
                    v["interface_id"],
                    v["netns"],
                    v.get("ip"),
                    str(v.get("instance_id", "")),
                    str(v.get("name", "")),
                )
                for v in n.get("vms", [])
            ),
        )
        for n in body.get("nodes", [])
    )
    return body.get("revision"), body.get("store_revision"), agents, None


# --- exec -----------------------------------------------------------------------------------


def vm_namespace(vm: str, name: str | None = None, root: Path = RUN_ROOT) -> str:
    """The namespace of a VM named in the topology, or of any instance by its id or name as
    its node's agent reports it (instances made at runtime through the API)."""
    name = resolve_name(name, root)
    for r in recorded_vms(_state(name, root).records()).values():
        if vm in (r["name"], r.get("instance")):
            return str(r["netns"])
    for agent in status(name, root).agents:
        for reported in agent.vms:
            if vm in (reported.instance_id, reported.name):
                return reported.netns
    raise LabError(f"lab {name} has no VM {vm} (by name or instance id)")


def vm_address(vm: str, name: str | None = None, root: Path = RUN_ROOT) -> str:
    """The address the controller allocated to the VM's interface when the lab came up (what
    DHCP gives it; known also while the controller is down)."""
    name = resolve_name(name, root)
    for r in recorded_vms(_state(name, root).records()).values():
        if r["name"] == vm:
            return str(r["ip"])
    raise LabError(f"lab {name} has no VM {vm}")


def run_in_vm(
    vm: str, argv: Sequence[str], timeout: float, name: str | None = None, root: Path = RUN_ROOT
) -> "subprocess.CompletedProcess[str]":
    return nsexec.run(vm_namespace(vm, name, root), argv, timeout)


def observe(
    node: str, op: str, name: str | None = None, root: Path = RUN_ROOT, **fields: Any
) -> Any:
    """A read-only request (`flows`, `stats`, ...) to a node's vRouter, as an observer on its
    control channel with the node's secret: an observer never displaces the agent."""
    name = resolve_name(name, root)
    sdir = state_dir(name, root)
    sock = vrouter_socket(sdir, node)
    if not sock.exists():
        raise LabError(f"lab {name} has no vRouter on node {node!r}")
    try:
        client = ControlClient(str(sock), lambda _: None, timeout=5.0)
    except OSError as exc:
        raise LabError(f"vRouter of {node}: {exc}") from None
    try:
        client.hello(read_secret_file(node_secret_file(sdir, node)), ROLE_OBSERVER)
        return client.request(op, **fields)
    except (ControlError, CredentialError, OSError) as exc:
        raise LabError(f"vRouter of {node}: {exc}") from None
    finally:
        client.close()


# --- processes ------------------------------------------------------------------------------


def _process(name: str, root: Path, role: str, node: str) -> Record:
    if role not in (CONTROLLER, VROUTER, AGENT):
        raise LabError(f"no process role {role!r}")
    found = latest_processes(_state(name, root).records()).get((role, node))
    if found is None:
        raise LabError(f"lab {name} has no {_label(role, node)}")
    return found


def kill_process(
    name: str,
    role: str,
    node: str = "",
    sig: int = signal.SIGKILL,
    root: Path = RUN_ROOT,
    hold: bool = False,
) -> int:
    """Signal a lab daemon (SIGKILL: a crash) and wait until it is gone; returns the pid it
    had. Its supervisor starts it again, unless `hold` (then `start_process` releases it)."""
    record = _process(name, root, role, node)
    if hold:
        _signal_supervisor(record, signal.SIGUSR1)
        _wait_daemon(name, root, role, node, lambda p: p.held, "held")
    daemon = _daemon(record)
    if daemon is None or daemon.pid is None or daemon.start is None or not daemon.alive():
        raise LabError(f"{_label(role, node)} is not running")
    supervise.signal_process(daemon.pid, daemon.start, sig)
    if not supervise.wait_gone(daemon.pid, daemon.start, 5.0):
        raise LabError(f"{_label(role, node)} (pid {daemon.pid}) did not exit")
    return daemon.pid


def start_process(name: str, role: str, node: str = "", root: Path = RUN_ROOT) -> int:
    """Have the daemon running: release a hold (`kill_process(hold=True)`), then wait until
    its supervisor has it up (at once if it already runs); its pid."""
    record = _process(name, root, role, node)
    if _process_status(record).held:
        _signal_supervisor(record, signal.SIGUSR2)
    return wait_process(name, role, node, other_than=None, root=root).pid


def restart_process(
    name: str, role: str, node: str = "", sig: int = signal.SIGKILL, root: Path = RUN_ROOT
) -> int:
    """Crash a daemon and wait until its supervisor has it running again; the new pid."""
    old = kill_process(name, role, node, sig, root)
    return wait_process(name, role, node, other_than=old, root=root).pid


def wait_process(
    name: str,
    role: str,
    node: str = "",
    other_than: int | None = None,
    timeout: float = START_TIMEOUT,
    root: Path = RUN_ROOT,
) -> ProcessStatus:
    """Until the daemon runs, not held, with a pid other than `other_than`."""
    return _wait_daemon(
        name,
        root,
        role,
        node,
        lambda p: p.alive and not p.held and p.pid != other_than,
        "running again",
        timeout,
    )


def _wait_daemon(
    name: str,
    root: Path,
    role: str,
    node: str,
    done: Callable[[ProcessStatus], bool],
    what: str,
    timeout: float = START_TIMEOUT,
) -> ProcessStatus:
    deadline = time.monotonic() + timeout
    while True:
        # the record and its supervisor's status file: not the whole `status` (no controller
        # call, no VM addresses) on every poll
        current = _process_status(_process(name, root, role, node))
        if done(current):
            return current
        if not current.supervised:
            raise LabError(f"the supervisor of {_label(role, node)} is gone; see {current.log}")
        if time.monotonic() > deadline:
            raise LabError(f"{_label(role, node)} not {what} within {timeout:.0f} s")
        time.sleep(0.05)


def _signal_supervisor(record: Record, sig: int) -> None:
    if not supervise.signal_process(record["pid"], record["start"], sig):
        raise LabError(f"the supervisor of {_label(record['role'], record['node'])} is gone")


# --- down -----------------------------------------------------------------------------------


def down(
    name: str | None = None, root: Path = RUN_ROOT, report: Callable[[str], None] = log.warning
) -> bool:
    """Stop and remove everything the lab's state records (as much of the file as is still
    readable), then whatever else still carries the lab's names, telling `report` what that
    sweep found; False if nothing of the lab was there."""
    name = resolve_name(name, root) if name is None else check_name("lab", name)
    sdir = state_dir(name, root)
    records: list[Record] = []
    problem = None
    if sdir.exists():
        records, problem = StateFile(sdir / STATE_FILE).salvaged()
        if problem is not None:
            report(
                f"lab {name}: {problem}; undoing the {len(records)} whole records left, "
                "then removing what still carries the lab's names"
            )
    steps = teardown_order(records)
    for step in (s for s in steps if s["kind"] in ("process", "netns")):
        _guarded(_stop, step)
    _remove_agent_vms(name, sdir, root, records)  # the agents are stopped: nothing remakes them
    for step in steps:
        _guarded(_undo, step)
    if sdir.exists() and problem is None:
        shutil.rmtree(sdir, ignore_errors=True)
    _remove_dirs(steps)  # before the sweep, which would otherwise report them as unrecorded
    others = [lab for lab in labs(root) if lab != name]
    swept = sweep.sweep(name, sdir, others)
    for line in swept.lines():
        report(f"lab {name}: removed {line}, which its state did not record")
    if swept.found():
        _remove_dirs(steps)  # parents the sweep has just emptied
    return bool(records) or problem is not None or swept.found()


def _remove_agent_vms(name: str, sdir: Path, root: Path, records: list[Record]) -> None:
    """The VMs the agents' state files list (only namespaces with the lab's VM prefix)."""
    from openvpc.agent.state_file import AgentState
    from openvpc.agent.vms import NetnsPlug

    others = [lab for lab in labs(root) if lab != name]
    paths = {agent_state_file(sdir, str(r.get("name"))) for r in of_kind(records, "node")}
    if sdir.exists():  # also those of nodes a damaged lab state no longer records
        paths |= {p for p in sdir.glob("agent-*.json") if not p.name.endswith(".proc.json")}
    plug = NetnsPlug()
    for path in sorted(p for p in paths if p.exists()):
        for ns, (vm, _) in sorted(AgentState(path).vms.items()):
            if not ns.startswith(vm_prefix(name)) or not sweep.lab_owns(ns, name, others):
                log.warning("lab %s: %s lists VM %s, which is not the lab's: left", name, path, ns)
                continue
            try:
                plug.unplug(vm)
            except (OSError, netns.NetnsError) as exc:
                log.warning("lab %s: VM %s: %s", name, ns, exc)


def _remove_dirs(steps: list[Record]) -> None:
    """The recorded directories that were not trees, if they are empty (newest first)."""
    for step in steps:
        if step["kind"] == "dir" and not step.get("tree"):
            _guarded(lambda s: _rmdir(Path(s["path"])), step)


def _guarded(fn: Callable[[Record], None], step: Record) -> None:
    """A salvaged record may be malformed: log it and go on with the others."""
    try:
        fn(step)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("skipped a malformed state record %r: %r", step, exc)


def _stop(step: Record) -> None:
    if step["kind"] == "process":
        daemon = _daemon(step)
        # the supervisor stops its daemon (TERM, then KILL after its own grace) and exits
        supervise.stop(int(step["pid"]), int(step["start"]), SUPERVISOR_GRACE)
        if daemon is not None and daemon.pid is not None and daemon.start is not None:
            supervise.stop(daemon.pid, daemon.start)
    else:
        # whatever still runs inside (a DHCP daemon, a command run by exec) pins it: stop it
        supervise.stop_pids(netns.pids_in_netns(str(step["name"])))


def _undo(step: Record) -> None:
    kind = step["kind"]
    if kind == "link":
        try:
            netns.delete_link(str(step["ns"]), str(step["ifname"]))
        except netns.NetnsError as exc:
            log.warning("%s", exc)
    elif kind == "netns":
        if "/" in str(step["name"]):
            raise ValueError("a namespace name has no '/'")
        netns.remove_netns(str(step["name"]))
    elif kind == "file":
        Path(str(step["path"])).unlink(missing_ok=True)


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.info("left %s in place: %s", path, exc.strerror)


def api_endpoint(name: str | None = None, root: Path = RUN_ROOT) -> tuple[str, str]:
    """(URL, region) of the lab's EC2 API."""
    lab = resolve_name(name, root)
    meta = _state(lab, root).meta()
    if "api" not in meta:
        raise LabError(f"lab {lab} serves no EC2 API")
    return str(meta["api"]), str(meta.get("region", DEFAULT_REGION))


def api_snapshot(name: str | None = None, root: Path = RUN_ROOT) -> Snapshot:
    """Every tenant's VPCs, subnets, route tables and instances as the lab's API answers them
    (each read with that tenant's key): what the connectivity matrix expects from."""
    from openvpc.lab import apiview
    from openvpc.lab.apply import Endpoint

    lab = resolve_name(name, root)
    url, region = api_endpoint(lab, root)
    endpoint = Endpoint(url, region, _keys(state_dir(lab, root)))
    return apiview.snapshot([apiview.read(endpoint.ec2(t), t) for t in sorted(endpoint.keys)])


def tenant_key(name: str, tenant: str, root: Path = RUN_ROOT) -> tuple[str, str]:
    """(access key id, secret) of the tenant's first key on the lab's controller."""
    found = _keys(state_dir(resolve_name(name, root), root)).get(tenant)
    if found is None:
        raise LabError(f"tenant {tenant} has no access key in lab {name}")
    return found
