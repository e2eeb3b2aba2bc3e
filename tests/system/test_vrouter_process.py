"""The `openvpc vrouter` process with real TAPs, a veth fabric and the control channel.

The test plays the agent: it programs the vRouter with `ControlClient` (from the node's network
namespace, with the node secret, as the channel demands), and VMs (namespaces holding persistent
TAPs, addressed statically) exchange real pings and TCP between them, on one node and across
two nodes over each encapsulation.
"""

import dataclasses
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2.netns import popns, pushns
from scapy.layers.l2 import ARP, Ether

from openvpc.credentials import new_secret, write_secret_file
from openvpc.model.codec import to_dict
from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.nodeconfig import (
    EncapName,
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    object_kind,
)
from openvpc.packet.arp import ARP_REQUEST, build_arp
from openvpc.packet.ethernet import BROADCAST, ETH_P_ARP, build_ethernet, parse_ethernet
from openvpc.packet.ipv4 import ip_to_bytes, ip_to_str, parse_ipv4
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter.control import ControlClient, ControlError
from openvpc.vrouter.punt import Punt, build_punt, parse_punt

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

OPENVPC = Path(sys.executable).parent / "openvpc"
VM_MTU = 1400
VNI, VLAN = 5001, 101
LABELS = {"a": (17, 18), "b": (27, 28)}  # each node's own labels for VRF 1
FABRIC_IPS = {"a": "192.168.78.1", "b": "192.168.78.2"}
SERVER = r"""
import hashlib, socket, sys
s = socket.socket()
s.bind(("0.0.0.0", 5555)); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20)
h, n = hashlib.sha256(), 0
while d := c.recv(1 << 16):
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
"""
CLIENT = r"""
import hashlib, random, socket, sys
data = random.Random(7).randbytes(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], 5555), timeout=20)
s.sendall(data); s.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def run(*argv: str, timeout: float = 20.0) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def sh(*argv: str) -> None:
    done = run(*argv)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"


@dataclass
class Vm:
    netns: str
    vif: int
    mac: str
    ip: str
    gateway: str

    def ping(self, target: str, count: int = 3) -> bool:
        done = run(
            "ip", "netns", "exec", self.netns,
            "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", target,
            timeout=count * 3 + 5,
        )  # fmt: skip
        return done.returncode == 0 and f"{count} received" in done.stdout

    def port(self, vrf: int = 1, policy: bool = False) -> PortConfig:
        return PortConfig(
            vif=self.vif,
            interface_id=f"eni-{self.vif}",
            instance_id=f"i-{self.vif}",
            name=self.netns,
            netns=self.netns,
            ifname="eth0",
            vrf=vrf,
            mac=self.mac,
            ip=self.ip,
            prefix_len=24,
            gateway=self.gateway,
            dns="10.0.0.2",
            domain="ec2.internal",
            hostname="ip-" + self.ip.replace(".", "-"),
            mtu=VM_MTU,
            policy=policy,
        )


@dataclass
class Vrouter:
    proc: "subprocess.Popen[bytes]"
    control: Path
    log: Path
    node_ns: str
    secret: bytes
    punts: "queue.Queue[bytes]" = field(default_factory=queue.Queue)
    clients: list[ControlClient] = field(default_factory=list)

    def connect(self, role: str = "agent") -> ControlClient:
        """A client that said hello: the agent from the node's namespace, as the real one
        runs; an observer from here (observers may be anywhere on the host)."""
        if role == "agent":
            pushns(self.node_ns)  # the vRouter checks the peer process's namespace
        try:
            client = ControlClient(str(self.control), self.punts.put, timeout=10.0)
            self.clients.append(client)
            client.hello(self.secret, role)
        finally:
            if role == "agent":
                popns()
        return client

    def stop(self) -> int:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def punt(self, want: Callable[[int, int, bytes], bool], timeout: float = 5.0) -> bytes:
        """The first punted frame (header reason, vif, frame) that `want` accepts."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = self.punts.get(timeout=left)
            except queue.Empty:
                break
            header, frame = parse_punt(data)
            if want(header.reason, header.vif, frame):
                return data
        raise AssertionError("no such punt arrived")


class Lab:
    """Namespaces, TAPs and vRouter processes made by one test, all removed by `close`."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"ovt{uuid.uuid4().hex[:6]}"
        self.tmp = tmp
        self.namespaces: list[str] = []
        self.vrouters: list[Vrouter] = []

    def netns(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def vm(self, suffix: str, vif: int, mac: str, ip: str) -> Vm:
        ns = self.netns(suffix)
        gateway = ip.rsplit(".", 1)[0] + ".1"
        sh("ip", "-n", ns, "tuntap", "add", "dev", "eth0", "mode", "tap")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(VM_MTU), "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
        return Vm(ns, vif, mac, ip, gateway)

    def vrouter(self, node_ns: str, fabric: str) -> Vrouter:
        control = self.tmp / f"vr-{node_ns}.sock"
        log = self.tmp / f"vr-{node_ns}.log"
        secret, secret_file = new_secret(), self.tmp / f"vr-{node_ns}.secret"
        write_secret_file(secret_file, secret)
        argv = [str(OPENVPC), "vrouter", "--control", str(control)]
        argv += ["--fabric", fabric, "--netns", node_ns, "--secret-file", str(secret_file)]
        with log.open("wb") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        vrouter = Vrouter(proc, control, log, node_ns, secret)
        self.vrouters.append(vrouter)
        deadline = time.monotonic() + 15
        while not control.exists():
            assert proc.poll() is None, f"vrouter exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"vrouter did not listen: {log.read_text()}"
            time.sleep(0.05)
        return vrouter

    def close(self) -> None:
        errors = []
        for vrouter in self.vrouters:
            code = vrouter.stop()
            if code != 0:
                errors.append(f"vrouter exit {code}: {vrouter.log.read_text()[-2000:]}")
            if vrouter.control.exists():
                errors.append(f"{vrouter.control} left behind")
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name)
        left = [n for n in os.listdir("/run/netns") if n.startswith(self.prefix)]
        assert not errors and not left, "; ".join([*errors, f"namespaces left: {left}"])


@pytest.fixture
def vlab(tmp_path: Path) -> Iterator[Lab]:
    made = Lab(tmp_path)
    try:
        yield made
    finally:
        made.close()


def program(client: ControlClient, objects: list[VrouterObject], generation: int = 1) -> None:
    ops = [{"op": "set", "kind": object_kind(o), "obj": to_dict(o)} for o in objects]
    assert client.request("batch", ops=ops, generation=generation) == {"applied": len(ops)}


def tcp_transfer(src: Vm, dst: Vm, size: int) -> None:
    """`size` random bytes from `src` to `dst` over TCP; the receiver's hash must match."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst.netns, sys.executable, "-c", SERVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        sent = run(
            "ip", "netns", "exec", src.netns, sys.executable, "-c", CLIENT, dst.ip, str(size),
            timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        received, _ = server.communicate(timeout=30)
        assert received.split() == sent.stdout.split()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)


# -- one node ------------------------------------------------------------------------------
@dataclass
class OneNode:
    vrouter: Vrouter
    client: ControlClient
    vm1: Vm
    vm2: Vm
    objects: list[VrouterObject]


def one_node(vlab: Lab, policy: bool = False) -> OneNode:
    node = vlab.netns("n1")
    sh("ip", "-n", node, "link", "add", "fab0", "type", "veth", "peer", "name", "fab0p")
    sh("ip", "-n", node, "addr", "add", "192.168.77.1/24", "dev", "fab0")
    sh("ip", "-n", node, "link", "set", "fab0", "up")
    sh("ip", "-n", node, "link", "set", "fab0p", "up")
    vm1 = vlab.vm("vm1", 2, "02:00:00:00:01:05", "10.0.1.5")
    vm2 = vlab.vm("vm2", 3, "02:00:00:00:01:06", "10.0.1.6")
    vrouter = vlab.vrouter(node, "fab0")
    client = vrouter.connect()
    objects: list[VrouterObject] = [
        VrfConfig(1, "red/prod/main", "l3", "vxlan", VNI, None, 17, 18),
        NextHopConfig("receive", "receive"),
        *(NextHopConfig(f"encap:{v.vif}", "encap", vif=v.vif, dst_mac=v.mac) for v in (vm1, vm2)),
        vm1.port(policy=policy),
        vm2.port(policy=policy),
        RouteConfig(1, "10.0.1.1/32", "receive"),
        *(RouteConfig(1, f"{vm.ip}/32", f"encap:{vm.vif}", mac=vm.mac) for vm in (vm1, vm2)),
    ]  # fmt: skip
    program(client, objects, generation=7)
    return OneNode(vrouter, client, vm1, vm2, objects)


def test_vms_on_one_node_ping_each_other_and_the_gateway(vlab: Lab) -> None:
    n = one_node(vlab)
    assert n.vm1.ping(n.vm2.ip)
    assert n.vm2.ping(n.vm1.ip)
    assert n.vm1.ping("10.0.1.1")
    # TSO super-frames from the sender's TAP are cut to the MTU and arrive intact
    tcp_transfer(n.vm1, n.vm2, 4_000_000)
    shown = n.client.request("show")["text"]
    assert "vif0/2" in shown and "vif0/3" in shown


def test_control_channel_dump_errors_and_punts(vlab: Lab) -> None:
    n = one_node(vlab)
    client, vrouter = n.client, n.vrouter
    hello = client.request("hello")
    assert hello["generation"] == 7 and len(hello["boot_id"]) >= 16
    dump = client.request("dump")
    assert dump["generation"] == 7
    assert dump["objects"] == [{"kind": object_kind(o), "obj": to_dict(o)} for o in n.objects]

    # refusals come back as errors; the process lives on and keeps its state
    bad = RouteConfig(9, "10.9.0.0/16", "receive")
    with pytest.raises(ControlError, match="unknown vrf 9"):
        program(client, [bad], generation=8)
    with pytest.raises(ControlError, match="unknown next hop 'nope'"):
        program(client, [RouteConfig(1, "10.9.0.0/16", "nope")], generation=8)
    with pytest.raises(ControlError, match="unknown op"):
        client.request("reboot")
    with pytest.raises(ControlError, match="missing field"):
        client.request("batch", ops=[{"op": "set", "kind": "vrf", "obj": {"id": 2}}])
    ghost = dataclasses.replace(n.vm1.port(), vif=9, netns=vlab.prefix + "-none")
    with pytest.raises(ControlError, match="cannot enter network namespace"):
        program(client, [ghost])
    assert client.request("hello") == hello
    assert client.request("dump") == dump
    assert vrouter.proc.poll() is None

    # an ARP for an address the vRouter does not know goes up to the agent
    assert not n.vm1.ping("10.0.1.99", count=1)
    raw = vrouter.punt(lambda reason, vif, f: reason == Punt.ARP and f[12:14] == b"\x08\x06")
    header, frame = parse_punt(raw)
    assert (header.vif, header.vrf) == (2, 1)
    assert Ether(frame)[ARP].pdst == "10.0.1.99" and Ether(frame)[ARP].op == 1

    # an injected ARP request reaches the VM, whose reply comes back up as a punt
    gateway, target = ip_to_bytes(n.vm1.gateway), ip_to_bytes(n.vm1.ip)
    arp = build_arp(ARP_REQUEST, VROUTER_MAC, gateway, b"\0" * 6, target)
    request = build_ethernet(BROADCAST, VROUTER_MAC, ETH_P_ARP, arp)
    client.send_packet(build_punt(Punt.INJECT, 2, 1, request))
    raw = vrouter.punt(lambda reason, vif, f: reason == Punt.ARP and Ether(f)[ARP].op == 2)
    reply = Ether(parse_punt(raw)[1])[ARP]
    assert reply.psrc == n.vm1.ip and reply.hwsrc == n.vm1.mac


def test_agent_comes_and_goes_while_forwarding_continues(vlab: Lab) -> None:
    n = one_node(vlab)
    boot_id = n.client.request("hello")["boot_id"]
    # a framing error drops that connection only, and displaces nobody
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bogus:
        bogus.settimeout(5)
        bogus.connect(str(n.vrouter.control))
        bogus.sendall(b"\xff\xff\xff\xff\x4a")
        assert bogus.recv(16) == b""
    assert n.client.request("hello")["boot_id"] == boot_id
    # neither a wrong secret nor the right one from outside the node's namespace displaces it
    impostor = ControlClient(str(n.vrouter.control), lambda _: None, timeout=5.0)
    with pytest.raises(ControlError, match="bad node secret"):
        impostor.hello(new_secret())
    assert impostor.closed.wait(5)
    outsider = ControlClient(str(n.vrouter.control), lambda _: None, timeout=5.0)
    with pytest.raises(ControlError, match="network namespace"):
        outsider.hello(n.vrouter.secret)  # this test process is in the host's namespace
    assert outsider.closed.wait(5)
    assert not n.client.closed.is_set()
    # an observer reads, and only reads, next to the agent
    observer = n.vrouter.connect("observer")
    assert observer.request("dump")["generation"] == 7
    for op, fields in (("batch", {"ops": [], "generation": 99}), ("flow", {})):
        with pytest.raises(ControlError, match="observer may not"):
            observer.request(op, **fields)
    assert observer.request("hello")["generation"] == 7
    assert not n.client.closed.is_set() and n.vm1.ping(n.vm2.ip)
    # a new agent that proves itself replaces the old one
    second = n.vrouter.connect()
    assert n.client.closed.wait(5)
    assert second.request("hello")["boot_id"] == boot_id
    third = n.vrouter.connect()
    assert second.closed.wait(5)
    third.close()
    # no agent at all: forwarding goes on, punts are counted as drops
    assert n.vm1.ping(n.vm2.ip)
    assert not n.vm1.ping("10.0.1.98", count=1)
    assert "agent_disconnected" in observer.request("show")["text"]
    observer.close()
    # SIGTERM: exit 0, socket file removed (checked again by the fixture)
    assert n.vrouter.stop() == 0
    assert not n.vrouter.control.exists()


GARBAGE = r"""
import socket
me = "192.168.77.1"
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.sendto(b"\x00", (me, 4789))
udp.sendto(bytes.fromhex("0800000000999900") + b"junk" * 10, (me, 4789))
udp.sendto(b"\x01", (me, 6635))
gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
gre.sendto(bytes.fromhex("00000800") + b"junk" * 10, (me, 0))
"""


def test_malformed_fabric_input_is_counted_not_fatal(vlab: Lab) -> None:
    n = one_node(vlab)
    node = vlab.namespaces[0]
    sent = run("ip", "netns", "exec", node, sys.executable, "-c", GARBAGE)
    assert sent.returncode == 0, sent.stderr
    deadline = time.monotonic() + 5
    wanted = ("short_vxlan", "invalid_vni", "short_mpls", "gre_not_mpls")
    while True:
        drops = n.client.request("show")["text"].split("Reason")[1]
        if all(reason in drops for reason in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(reason in drops for reason in wanted), drops
    assert n.vrouter.proc.poll() is None
    assert n.vm1.ping(n.vm2.ip)


def test_flow_misses_answered_over_the_channel(vlab: Lab) -> None:
    """Ports under policy: the first packet of each flow waits for the agent's `flow` op."""
    n = one_node(vlab, policy=True)
    stop = threading.Event()
    answered: list[list[object]] = []

    def allow_all() -> None:
        # the client's reader thread cannot wait for replies: answer from this thread
        while not stop.is_set():
            try:
                data = n.vrouter.punts.get(timeout=0.1)
            except queue.Empty:
                continue
            header, frame = parse_punt(data)
            if header.reason != Punt.FLOW_MISS:
                continue
            eth = parse_ethernet(frame)
            ip = parse_ipv4(frame, eth.offset)
            sport, dport = l4_ports(frame[eth.offset :], ip)
            src, dst = ip_to_str(ip.src), ip_to_str(ip.dst)
            key = [header.vrf, ip.proto, src, dst, sport, dport]
            reverse = [header.vrf, ip.proto, dst, src, dport, sport]
            n.client.request("flow", key=key, reverse=reverse, action="forward")
            answered.append(key)

    thread = threading.Thread(target=allow_all, daemon=True)
    thread.start()
    try:
        assert n.vm1.ping(n.vm2.ip)
    finally:
        stop.set()
        thread.join(5)
    assert answered and answered[0][2:4] == [n.vm1.ip, n.vm2.ip]
    assert "10.0.1.5" in n.client.request("show")["text"].split("Flow table")[1]
    with pytest.raises(ControlError, match="flow key"):
        n.client.request("flow", key=[1, 1, "10.0.1.5"], action="forward")


# -- two nodes -----------------------------------------------------------------------------
def node_objects(
    me: str, peer: str, local: Vm, remote: Vm, encap: EncapName
) -> list[VrouterObject]:
    l3, l2 = LABELS[me]
    label = {"vxlan": VNI, "vlan": VLAN}.get(encap, LABELS[peer][0])
    return [
        VrfConfig(1, "red/prod/main", "l3", encap, VNI, VLAN if encap == "vlan" else None, l3, l2),
        NextHopConfig("receive", "receive"),
        NextHopConfig(f"encap:{local.vif}", "encap", vif=local.vif, dst_mac=local.mac),
        NextHopConfig(f"tunnel:{peer}", "tunnel", encap=encap, dst_ip=FABRIC_IPS[peer]),
        local.port(),
        RouteConfig(1, f"{local.gateway}/32", "receive"),
        RouteConfig(1, f"{local.ip}/32", f"encap:{local.vif}", mac=local.mac),
        RouteConfig(1, f"{remote.ip}/32", f"tunnel:{peer}", label=label, mac=remote.mac),
    ]  # fmt: skip


CAPTURE = {
    "vxlan": f"udp dst port 4789 and udp[12:4] = {VNI << 8:#x}",
    "mplsoudp": f"udp dst port 6635 and (udp[8:4] >> 12) = {LABELS['b'][0]}",
    "mplsogre": f"ip proto 47 and (ip[24:4] >> 12) = {LABELS['b'][0]}",
    "vlan": f"vlan {VLAN}",
}


@pytest.mark.parametrize("encap", ["vxlan", "mplsoudp", "mplsogre", "vlan"])
def test_vms_on_two_nodes_ping_over_each_encapsulation(vlab: Lab, encap: EncapName) -> None:
    na, nb = vlab.netns("na"), vlab.netns("nb")
    sh("ip", "-n", na, "link", "add", "faba", "type", "veth", "peer", "name", "fabb", "netns", nb)
    for ns, dev, ip in ((na, "faba", FABRIC_IPS["a"]), (nb, "fabb", FABRIC_IPS["b"])):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
    vma = vlab.vm("vma", 2, "02:00:00:00:01:05", "10.0.1.5")
    vmb = vlab.vm("vmb", 2, "02:00:00:00:02:06", "10.0.2.6")
    vra, vrb = vlab.vrouter(na, "faba"), vlab.vrouter(nb, "fabb")
    program(vra.connect(), node_objects("a", "b", vma, vmb, encap))
    program(vrb.connect(), node_objects("b", "a", vmb, vma, encap))

    # watch node B's fabric for the encapsulation we asked for, with the right VNI/label/VLAN
    capture = subprocess.Popen(
        ["ip", "netns", "exec", nb, "tcpdump", "-i", "fabb", "-nn", "-c", "2", "-Q", "in",
         CAPTURE[encap]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert capture.stderr is not None
        lines = [capture.stderr.readline() for _ in range(2)]
        assert "listening on" in lines[-1], lines
        assert vma.ping(vmb.ip)
        assert vmb.ping(vma.ip)
        out, err = capture.communicate(timeout=10)
        assert "2 packets captured" in err, out + err
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait(5)
    tcp_transfer(vma, vmb, 2_000_000)
