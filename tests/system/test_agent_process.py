"""The controller, agent and vRouter as real processes for one compute node in a namespace.

Two VMs (namespaces with TAPs, static addresses) on the node ping each other through the
vRouter: ARP, first-packet punts and flow installs go through the agent. Then each process is
crashed or restarted in turn and forwarding is checked to survive as the design says.
"""

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import HostSnapshot
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from openvpc.compiler.compile import compile_all
from openvpc.credentials import Credential, new_secret, write_secret_file
from openvpc.lab import netns
from openvpc.lab.processes import openvpc_command
from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import object_kind, vrouter_objects
from openvpc.service import Service
from openvpc.southbound.client import SouthboundClient, SouthboundError
from openvpc.store import Store
from openvpc.vrouter.control import ControlClient

FABRIC_IP = "192.168.77.10"
START = 10.0  # seconds a process gets to come up
ETH_P_ALL = 0x0003
VIP = "10.0.1.100"  # vm1 owns it first; vm2 may claim it


@dataclass
class Node:
    """One compute node's namespaces, its VMs, the store, and the processes serving them."""

    prefix: str
    tmp: Path
    service: Service
    store: Store
    node_ns: str
    vm_ns: dict[str, str]
    vm_ip: dict[str, str]
    subnet: str
    secret: bytes  # node1's, issued at its registration
    operator: bytes
    procs: dict[str, "subprocess.Popen[bytes]"] = field(default_factory=dict)

    @property
    def sb(self) -> str:
        return f"unix:{self.tmp / 'sb.sock'}"

    @property
    def vr_sock(self) -> Path:
        return self.tmp / "vr.sock"

    def argv(self, role: str) -> list[str]:
        base = list(openvpc_command())
        secret, operator = str(self.tmp / "node1.secret"), str(self.tmp / "operator.secret")
        if role == "controller":
            return [*base, "controller", "--db", str(self.tmp / "ov.db"), "--listen", self.sb,
                    "--operator-secret-file", operator]  # fmt: skip
        if role == "vrouter":
            return [*base, "vrouter", "--control", str(self.vr_sock), "--fabric", "fab0",
                    "--netns", self.node_ns, "--secret-file", secret]  # fmt: skip
        return [*base, "agent", "--node", "node1", "--controller", self.sb,
                "--vrouter", str(self.vr_sock), "--netns", self.node_ns,
                "--secret-file", secret]  # fmt: skip

    def start(self, role: str) -> "subprocess.Popen[bytes]":
        log = open(self.tmp / f"{role}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(self.argv(role), stdout=log, stderr=log)
        finally:
            log.close()
        self.procs[role] = proc
        return proc

    def kill(self, role: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs.pop(role)
        proc.send_signal(sig)
        try:
            return proc.wait(START)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{role} ignored signal {sig}") from None

    def ping(self, vm: str, target: str, count: int = 1, interval: float = 0.2,
             wait: float = 1.0) -> int:  # fmt: skip
        """How many of `count` echo requests from `vm` to `target` were answered."""
        argv = ["ip", "netns", "exec", self.vm_ns[vm], "ping", "-n", "-q", "-c", str(count),
                "-i", str(interval), "-W", str(wait), target]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=count * 2 + 10)
        for line in out.stdout.splitlines():
            if "received" in line:
                return int(line.split(",")[1].split()[0])
        return 0

    def ping_in_background(self, vm: str, target: str, count: int) -> "subprocess.Popen[str]":
        """A ping printing a line per reply (see `_replies`) and its summary at the end."""
        argv = ["ip", "netns", "exec", self.vm_ns[vm], "ping", "-n", "-c", str(count),
                "-i", "0.05", "-W", "1", target]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def status(self) -> dict[str, Any]:
        client = SouthboundClient(
            self.sb, timeout=2.0, credential=Credential("operator", self.operator)
        )
        try:
            return client.status()
        finally:
            client.close()

    def wait_applied(self, revision: int, timeout: float = START) -> None:
        """Until the controller compiled `revision` and the connected agent acked node1's
        config as of then (its generation is the revision that last changed it)."""
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                st = self.status()
            except SouthboundError:
                time.sleep(0.05)
                continue
            node1 = next((n for n in st["nodes"] if n["node"] == "node1"), None)
            if (
                node1 is not None
                and st["revision"] >= revision
                and node1["connected"]
                and node1["generation_acked"] == node1["generation"]
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"revision {revision} not applied; status {st}")

    def vrouter_view(self) -> tuple[dict[str, object], str]:
        """The vRouter's dump and table text, read by an observer on its control channel."""
        vr = ControlClient(str(self.vr_sock), lambda _: None)
        try:
            vr.hello(self.secret, "observer")
            return vr.request("dump"), vr.request("show")["text"]
        finally:
            vr.close()

    def expected_objects(self) -> list[dict[str, object]]:
        config = compile_all(self.service.snapshot())["node1"]
        return sorted(
            ({"kind": object_kind(o), "obj": to_dict(o)} for o in vrouter_objects(config)),
            key=repr,
        )


@pytest.fixture
def node(tmp_path: Path, host_snapshot: HostSnapshot) -> Iterator[Node]:
    prefix = f"ova{uuid.uuid4().hex[:6]}"
    made: list[str] = []
    store = Store(tmp_path / "ov.db")
    n: Node | None = None
    try:
        node_ns, peer_ns = f"{prefix}-n1", f"{prefix}-ul"
        for ns in (node_ns, peer_ns):
            netns.create_netns(ns)
            made.append(ns)
        netns.add_veth(node_ns, "fab0", peer_ns, "n1", 1500)
        netns.add_address(node_ns, "fab0", f"{FABRIC_IP}/24")
        service = Service(store)
        service.register_node("node1", FABRIC_IP)
        secret, operator = service.issue_node_secret("node1"), new_secret()
        write_secret_file(tmp_path / "node1.secret", secret)
        write_secret_file(tmp_path / "operator.secret", operator)
        service.create_tenant("red")
        vpc = service.create_vpc("red", "prod", "10.0.0.0/16")
        web = service.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
        vm_ns, vm_ip = {}, {}
        for vm in ("vm1", "vm2", "vm3"):
            ns = vm_ns[vm] = f"{prefix}-{vm}"
            netns.create_netns(ns)
            made.append(ns)
            if vm != "vm3":  # vm3 is started by the test that needs it
                _, eni = service.run_instance(
                    "red", web.id, vm, "node1", ns, allowed_addresses=[VIP]
                )
                netns.add_tap(ns, "eth0", eni.mac)
                netns.add_address(ns, "eth0", f"{eni.ip}/24")
                vm_ip[vm] = eni.ip
        n = Node(prefix, tmp_path, service, store, node_ns, vm_ns, vm_ip, web.id, secret, operator)
        n.start("controller")
        n.start("vrouter")
        n.start("agent")
        n.wait_applied(service.revision())
        yield n
    finally:
        if n is not None:
            for role in ("agent", "vrouter", "controller"):
                if role in n.procs:
                    n.kill(role, signal.SIGTERM)
        for ns in reversed(made):
            netns.remove_netns(ns)
        store.close()
        leaks = HostSnapshot.take().leaks_since(host_snapshot, [prefix])
        assert not leaks, "; ".join(leaks)


def test_vms_on_the_node_reach_each_other(node: Node) -> None:
    assert node.ping("vm1", node.vm_ip["vm2"], count=3) == 3
    assert node.ping("vm2", "10.0.1.1") == 1  # the subnet gateway is the vRouter


def test_dhcp_discover_is_answered_by_the_agent_through_the_vrouter(node: Node) -> None:
    """A DHCP offer travels vRouter punt -> agent -> INJECT -> vRouter -> the VM's TAP."""
    eni = next(i for i in node.service.describe_interfaces("red") if i.ip == node.vm_ip["vm1"])
    sock = _raw_socket(node.vm_ns["vm1"])
    try:
        xid = 0x5EED
        discover = (
            Ether(src=eni.mac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(chaddr=bytes.fromhex(eni.mac.replace(":", "")), xid=xid, flags=0x8000)
            / DHCP(options=[("message-type", "discover"), "end"])
        )
        sock.send(bytes(discover))
        deadline = time.monotonic() + START
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
    assert offer[BOOTP].yiaddr == eni.ip
    assert options["message-type"] == 2  # offer
    assert options["router"] == "10.0.1.1"
    assert options["subnet_mask"] == "255.255.255.0"
    assert options["interface-mtu"] == compile_all(node.service.snapshot())["node1"].ports[0].mtu


def test_a_gratuitous_arp_moves_a_vip_through_the_controller(node: Node) -> None:
    """vm2 claims vm1's VIP: vRouter punt -> agent -> Learn -> store -> compiler -> agent."""
    eni2 = next(i for i in node.service.describe_interfaces("red") if i.ip == node.vm_ip["vm2"])
    owner = {o.ip: o.interface for o in node.service.describe_address_owners("red")}
    assert owner[VIP] != eni2.id
    netns.add_address(node.vm_ns["vm2"], "eth0", f"{VIP}/32")
    assert node.ping("vm1", VIP, wait=0.5) == 0  # vm1 owns it but does not answer for it
    garp = Ether(src=eni2.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=eni2.mac, psrc=VIP, hwdst="00:00:00:00:00:00", pdst=VIP
    )
    sock = _raw_socket(node.vm_ns["vm2"])
    try:
        sock.send(bytes(garp))
    finally:
        sock.close()
    deadline = time.monotonic() + START
    while {o.ip: o.interface for o in node.service.describe_address_owners("red")}[VIP] != (
        eni2.id
    ):
        assert time.monotonic() < deadline, "the VIP never moved"
        time.sleep(0.05)
    node.wait_applied(node.service.revision())
    assert node.ping("vm1", VIP, count=2) == 2


def test_vrouter_holds_exactly_the_compiled_config_and_a_new_agent_adopts_it(node: Node) -> None:
    assert node.ping("vm1", node.vm_ip["vm2"], count=2) == 2
    assert node.kill("agent") == -signal.SIGKILL
    dump, before = node.vrouter_view()
    assert sorted(dump["objects"], key=repr) == node.expected_objects()  # type: ignore[call-overload]
    assert dump["generation"] == node.service.revision()
    # the restarted agent finds everything in place: it writes nothing
    log = node.tmp / "agent.log"
    offset = log.stat().st_size
    node.start("agent")
    # its first reconcile ends in this line when it wrote nothing ("applied" when it did)
    _wait_for_line(log, offset, f"generation {dump['generation']} already in place")
    assert " applied: " not in log.read_text()[offset:]
    # the TAP exists before the config naming it reaches the agent: one batch, nothing refused
    netns.add_tap(node.vm_ns["vm3"], "eth0")
    _, eni = node.service.run_instance("red", node.subnet, "vm3", "node1", node.vm_ns["vm3"])
    netns.set_mac(node.vm_ns["vm3"], "eth0", eni.mac)
    node.wait_applied(node.service.revision())
    assert "applied: 3 sets, 0 deletes" in log.read_text()[offset:]  # vm3's vif, nh, route
    assert node.kill("agent") == -signal.SIGKILL
    dump, after = node.vrouter_view()
    assert sorted(dump["objects"], key=repr) == node.expected_objects()  # type: ignore[call-overload]
    # the flows and next hops are untouched, and the vifs kept counting (a re-added vif
    # would start from zero and lose its flows' cached state)
    assert _section(after, "Flow table") == _section(before, "Flow table")
    assert "entries 0" not in _section(before, "Flow table")[0]
    old_nhs = _section(before, "Id ")
    assert _section(after, "Id ")[: len(old_nhs)] == old_nhs
    for vif in ("vif0/2", "vif0/3"):
        assert _rx(after, vif) >= _rx(before, vif) > 0
    node.start("agent")


def test_agent_crash_loses_at_most_one_reply(node: Node) -> None:
    assert node.ping("vm1", node.vm_ip["vm2"]) == 1
    pinger = node.ping_in_background("vm1", node.vm_ip["vm2"], 60)
    _replies(pinger, 10)
    node.kill("agent")
    _replies(pinger, 10)  # while the agent is away
    node.start("agent")
    out, _ = pinger.communicate(timeout=30)
    received = int(out.split("received")[0].split(",")[-1])
    assert received >= 59, out
    node.wait_applied(node.service.revision())


def test_controller_restart_loses_nothing(node: Node) -> None:
    pinger = node.ping_in_background("vm1", node.vm_ip["vm2"], 60)
    _replies(pinger, 10)
    assert node.kill("controller", signal.SIGTERM) == 0
    assert not (node.tmp / "sb.sock").exists()
    _replies(pinger, 10)  # while the controller is away
    node.start("controller")
    out, _ = pinger.communicate(timeout=30)
    assert " 0% packet loss" in out, out
    node.wait_applied(node.service.revision())


def test_an_agent_restarted_while_the_controller_is_away_keeps_forwarding(node: Node) -> None:
    assert node.kill("controller", signal.SIGTERM) == 0
    node.kill("agent")
    log = node.tmp / "agent.log"
    offset = log.stat().st_size
    node.start("agent")
    _wait_for_line(log, offset, f"adopted {len(node.expected_objects())} objects")
    # each ping run is a new ICMP flow: its first packet is answered by the headless agent
    assert node.ping("vm1", node.vm_ip["vm2"], count=2) == 2
    assert node.ping("vm2", node.vm_ip["vm1"], count=2) == 2
    node.start("controller")
    node.wait_applied(node.service.revision())
    assert " applied: " not in log.read_text()[offset:]


def test_restarted_vrouter_is_reprogrammed(node: Node) -> None:
    """It comes back without anything else restarting (how fast is a benchmark matter)."""
    assert node.ping("vm1", node.vm_ip["vm2"]) == 1
    node.kill("vrouter")
    log = node.tmp / "agent.log"
    offset = log.stat().st_size
    node.start("vrouter")
    _wait_for_line(log, offset, "a new vRouter boot")
    deadline = time.monotonic() + START
    while node.ping("vm1", node.vm_ip["vm2"], wait=0.2) != 1:
        assert time.monotonic() < deadline, "forwarding did not come back"
    node.wait_applied(node.service.revision())


def test_processes_stop_cleanly_on_sigterm(node: Node) -> None:
    for role in ("agent", "vrouter", "controller"):
        assert node.kill(role, signal.SIGTERM) == 0, (node.tmp / f"{role}.log").read_text()
    assert not (node.tmp / "sb.sock").exists()
    assert not node.vr_sock.exists()


def _raw_socket(ns: str) -> socket.socket:
    """An AF_PACKET socket on the VM's eth0, opened inside its namespace."""
    with netns.inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.settimeout(0.2)
    return sock


def _replies(pinger: "subprocess.Popen[str]", count: int) -> None:
    """Read until `count` more echo replies came back (bounded: ping exits after its count)."""
    assert pinger.stdout is not None
    seen = 0
    while seen < count:
        line = pinger.stdout.readline()
        assert line, "ping ended before the replies came"
        seen += "bytes from" in line


def _wait_for_line(path: Path, offset: int, text: str, timeout: float = START) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text()[offset:]:
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}"
        time.sleep(0.05)


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
