"""The agent as its node's control plane, on a real one-node lab: a DHCP DISCOVER answered by
the agent through the vRouter's punt path, a vRouter that holds exactly the compiled config
(which a new agent adopts without rewriting it, and to which it adds a VM it makes itself), and
daemons that stop cleanly on SIGTERM.

Crashes and restarts (kill -9 of each daemon, headless restarts, VIP moves while the
controller is away) are covered by test_supervision.py and test_traffic.py.
"""

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import LabFactory, LabHandle
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from openvpc.compiler.compile import compile_all
from openvpc.credentials import read_secret_file
from openvpc.lab import netns
from openvpc.lab.naming import state_dir, vm_netns
from openvpc.lab.processes import node_secret_file, vrouter_socket
from openvpc.lab.real import ProcessStatus
from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import NodeConfig, PortConfig, object_kind, vrouter_objects
from openvpc.service import Service
from openvpc.store import Store
from openvpc.vrouter.control import ROLE_OBSERVER, ControlClient

ETH_P_ALL = 0x0003
WAIT = 15.0  # the longest a daemon gets to say or do what a test waits for

# one node, two VMs on it: what the vRouter holds is the whole of the node's config
ONE_NODE: dict[str, Any] = {
    "underlay": "l2",
    "nodes": ["a"],
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
                        {"name": "v2", "subnet": "web", "node": "a"},
                    ],
                }
            ],
        }
    ],
}


@contextmanager
def _service(h: LabHandle) -> Iterator[Service]:
    """The lab's own store (the controller watches it: writes here reach the agents)."""
    store = Store(_state_dir(h) / "openvpc.db")
    try:
        yield Service(store)
    finally:
        store.close()


def _state_dir(h: LabHandle) -> Path:
    return state_dir(h.name)  # no status call: it works while the controller is held down


def _config(h: LabHandle) -> NodeConfig:
    """Node a's config as the compiler makes it from the store now."""
    with _service(h) as service:
        return compile_all(service.snapshot())["a"]


def _port(config: NodeConfig, h: LabHandle, vm: str) -> PortConfig:
    return next(p for p in config.ports if p.netns == h.vm_netns(vm))


def _expected_objects(config: NodeConfig) -> list[dict[str, object]]:
    objects = ({"kind": object_kind(o), "obj": to_dict(o)} for o in vrouter_objects(config))
    return sorted(objects, key=repr)


def _vrouter_view(h: LabHandle) -> tuple[dict[str, Any], str]:
    """Node a's vRouter dump and table text, read by an observer (it displaces no agent)."""
    sdir = _state_dir(h)
    client = ControlClient(str(vrouter_socket(sdir, "a")), lambda _: None, timeout=5.0)
    try:
        client.hello(read_secret_file(node_secret_file(sdir, "a")), ROLE_OBSERVER)
        dump, text = client.request("dump"), client.request("show")["text"]
    finally:
        client.close()
    assert isinstance(dump, dict) and isinstance(text, str)
    return dump, text


def _static_addresses(h: LabHandle, config: NodeConfig) -> dict[str, str]:
    """Give v1 and v2 the addresses the controller allocated (the lab ran no DHCP)."""
    found = {}
    for vm in ("v1", "v2"):
        ip = _port(config, h, vm).ip
        done = h.exec(vm, ["ip", "addr", "add", f"{ip}/24", "dev", "eth0"])
        assert done.returncode == 0, done.stderr
        found[vm] = ip
    return found


def _raw_socket(ns: str) -> socket.socket:
    """An AF_PACKET socket on the VM's eth0, opened inside its namespace."""
    with netns.inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    return sock


def _wait_for_line(path: Path, offset: int, text: str) -> None:
    """Until the log says `text` after byte `offset` (bounded)."""
    deadline = time.monotonic() + WAIT
    while text not in path.read_text(errors="replace")[offset:]:
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}"
        time.sleep(0.05)


def test_dhcp_discover_is_answered_by_the_agent_through_the_vrouter(lab: LabFactory) -> None:
    """A DHCP offer travels vRouter punt -> agent -> INJECT -> vRouter -> the VM's TAP."""
    h = lab(ONE_NODE, dhcp=False)
    port = _port(_config(h), h, "v1")
    sock = _raw_socket(h.vm_netns("v1"))
    try:
        xid = 0x5EED
        discover = (
            Ether(src=port.mac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(port.mac.replace(":", "")), xid=xid, flags=0x8000)
            / DHCP(options=[("message-type", "discover"), "end"])
        )
        sock.send(bytes(discover))
        deadline = time.monotonic() + WAIT
        offer = None
        while offer is None and time.monotonic() < deadline:
            try:
                frame = Ether(sock.recv(65535))
            except TimeoutError:
                continue
            if frame.haslayer(BOOTP) and frame[BOOTP].op == 2 and frame[BOOTP].xid == xid:
                offer = frame
    finally:
        sock.close()
    assert offer is not None, "no DHCP offer"
    options = {o[0]: o[1] for o in offer[DHCP].options if isinstance(o, tuple)}
    assert offer[BOOTP].yiaddr == port.ip
    assert options["message-type"] == 2  # offer
    assert options["router"] == "10.0.1.1"
    assert options["subnet_mask"] == "255.255.255.0"
    assert options["interface-mtu"] == port.mtu


def test_vrouter_holds_exactly_the_compiled_config_and_a_new_agent_adopts_it(
    lab: LabFactory,
) -> None:
    """Read by an observer while no agent runs, the vRouter holds node a's compiled objects
    and generation; a new agent rewrites none of it, adds a VM in one batch, and leaves the
    flows, next hops and vif counters as they were."""
    h = lab(ONE_NODE, dhcp=False)
    config = _config(h)
    ips = _static_addresses(h, config)
    assert h.ping("v1", ips["v2"], count=2)
    vifs = [f"vif0/{_port(config, h, vm).vif}" for vm in ("v1", "v2")]
    h.kill("agent", "a", hold=True)
    dump, before = _vrouter_view(h)
    assert sorted(dump["objects"], key=repr) == _expected_objects(config)
    assert dump["generation"] == config.generation
    # the new agent finds everything in place: it writes nothing
    log = Path(next(p.log for p in h.status().processes if (p.role, p.node) == ("agent", "a")))
    offset = log.stat().st_size
    h.start("agent", "a")
    # each reconcile ends in this line when it wrote nothing ("applied" when it did)
    _wait_for_line(log, offset, f"generation {config.generation} already in place")
    h.wait_in_sync()
    assert " applied: " not in log.read_text()[offset:]
    # the agent makes the new VM's namespace and TAP before the config naming it reaches the
    # vRouter: one batch, nothing refused
    ns = vm_netns(h.name, "v3")
    with _service(h) as service:
        subnet = next(s for s in service.snapshot().subnets if s.name == "web")
        _, eni = service.run_instance("red", subnet.id, "v3", "a", ns)
    h.wait_in_sync()
    link = subprocess.run(["ip", "-n", ns, "link", "show", "eth0"], capture_output=True, text=True)
    assert eni.mac in link.stdout, link
    # v3's vif, next hop and route, and v1's and v2's vifs: their default group, whose rules
    # reference itself, has a new member
    assert "applied: 5 sets, 0 deletes" in log.read_text()[offset:]
    config = _config(h)
    h.kill("agent", "a", hold=True)
    dump, after = _vrouter_view(h)
    assert sorted(dump["objects"], key=repr) == _expected_objects(config)
    # the flows and next hops are untouched, and the vifs kept counting (a re-added vif
    # would start from zero and lose its flows' cached state)
    assert _section(after, "Flow table") == _section(before, "Flow table")
    assert "entries 0" not in _section(before, "Flow table")[0]
    old_nhs = _section(before, "Id ")
    assert _section(after, "Id ")[: len(old_nhs)] == old_nhs
    for vif in vifs:
        assert _rx(after, vif) >= _rx(before, vif) > 0
    h.start("agent", "a")
    h.wait_in_sync()


def _process(h: LabHandle, role: str, node: str) -> ProcessStatus:
    return next(p for p in h.status().processes if (p.role, p.node) == (role, node))


def _stopped(h: LabHandle, role: str, node: str) -> ProcessStatus:
    """Until the supervisor has collected the daemon and published how it ended."""
    deadline = time.monotonic() + WAIT
    while True:
        p = _process(h, role, node)
        if p.last_exit is not None and not p.alive:
            return p
        assert time.monotonic() < deadline, f"{role} {node}: no exit status published: {p}"
        time.sleep(0.05)


def test_processes_stop_cleanly_on_sigterm(lab: LabFactory) -> None:
    """Held by their supervisors (so nothing restarts them), each daemon is sent SIGTERM:
    it exits with status 0 and removes the unix socket it listened on."""
    h = lab({"underlay": "l2", "nodes": ["a"], "tenants": []}, dhcp=False)
    sdir = _state_dir(h)
    sockets: dict[str, Path | None] = {
        "agent": None,  # it listens on nothing
        "vrouter": vrouter_socket(sdir, "a"),
        "controller": sdir / "sb.sock",
    }
    for role, node in (("agent", "a"), ("vrouter", "a"), ("controller", "")):
        listened = sockets[role]
        assert listened is None or listened.exists()
        before = _process(h, role, node)
        assert before.alive and before.last_exit is None
        h.kill(role, node, sig=signal.SIGTERM, hold=True)
        after = _stopped(h, role, node)
        assert after.held and after.restarts == 0
        assert after.last_exit == "exited with code 0", Path(after.log).read_text()[-2000:]
        assert listened is None or not listened.exists(), f"{role} left {listened}"


def _section(text: str, title: str) -> list[str]:
    """The lines of one table of `show` (from its title line to the next blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _rx(text: str, vif: str) -> int:
    """A vif's received packets, from the `RX-pkts/bytes` column of the vif table."""
    lines = text.splitlines()
    column = next(line for line in lines if line.startswith("Vif ")).index("RX-pkts/bytes")
    row = next(line for line in lines if line.startswith(vif + " "))
    return int(row[column:].split("/")[0])
