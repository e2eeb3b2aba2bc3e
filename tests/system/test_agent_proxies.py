"""The agent's proxies answer real clients: isc-dhcp-client and the glibc resolver in a VM
namespace, wired by a veth to a test loop that runs the real pipeline and `handle_punt`.

No vRouter or agent process is involved: the loop here is a minimal shell around the pure
parts (the pipeline's ARP proxy, flow misses, DHCP and DNS punts), so a failure points at them.
"""

import ipaddress
import select
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyroute2.netns import popns, pushns

from openvpc.agent.outcome import FlowKeyText
from openvpc.agent.punts import PuntState, handle_punt
from openvpc.lab import nsexec
from openvpc.model.forwarding import VROUTER_MAC, FlowKey
from openvpc.model.nodeconfig import (
    DnsRecord,
    NextHopConfig,
    NodeConfig,
    PortConfig,
    RouteConfig,
)
from openvpc.packet.ethernet import mac_from_str
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.nexthop import EncapNH, ReceiveNH
from openvpc.vrouter.pipeline import Emit, install_flow, process
from openvpc.vrouter.tables import Fabric, Route, Tables, Vif, VifKind, Vrf

pytestmark = pytest.mark.skipif(shutil.which("dhclient") is None, reason="needs isc-dhcp-client")

AGENT_VIF, VM_VIF, VRF = 1, 2, 1
ETH_P_ALL = 0x0003
OLD_LEASE = "10.0.2.7"  # the address the VM had before it "moved" here
PORT = PortConfig(
    vif=VM_VIF,
    interface_id="eni-1",
    instance_id="i-1",
    name="web1",
    netns="",
    ifname="eth0",
    vrf=VRF,
    mac="02:00:00:00:00:31",
    ip="10.0.1.5",
    prefix_len=24,
    gateway="10.0.1.1",
    dns="10.0.0.2",
    domain="ec2.internal",
    hostname="ip-10-0-1-5",
    mtu=1400,
)
CONFIG = NodeConfig(
    node="node1",
    generation=1,
    nexthops=(NextHopConfig("encap:2", "encap", vif=VM_VIF, dst_mac=PORT.mac),),
    ports=(PORT,),
    routes=(RouteConfig(VRF, "10.0.1.5/32", "encap:2", mac=PORT.mac),),
    dns=(
        DnsRecord(VRF, "web1.ec2.internal", "10.0.1.5"),
        DnsRecord(VRF, "db1.ec2.internal", "10.0.1.6"),
        DnsRecord(2, "other-tenant.ec2.internal", "10.0.1.7"),
    ),
)
SCRIPT = """#!/bin/sh
# dhclient hook for the test: record what was offered, configure nothing
env | grep -E '^(reason|new_[a-z_]+)=' | sort > "{out}/$reason"
"""
EXPIRED_NEVER = "4 2099/12/31 00:00:00"
LEASE = f"""lease {{
  interface "vm0";
  fixed-address {OLD_LEASE};
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 10.0.2.1;
  renew {EXPIRED_NEVER};
  rebind {EXPIRED_NEVER};
  expire {EXPIRED_NEVER};
}}
"""


def program() -> Tables:
    """One VRF with the VM's vif under flow policy, gateway and DNS receive routes."""
    t = Tables(Fabric(0, ip_to_bytes("192.0.2.1"), bytes.fromhex("020000000001")))
    t.add_vif(Vif(AGENT_VIF, VifKind.AGENT, "pkt0"))
    t.add_vrf(Vrf(VRF, "red/prod/main"))
    t.add_nexthop(1, ReceiveNH())
    t.add_nexthop(2, EncapNH(VM_VIF, mac_from_str(PORT.mac), VROUTER_MAC))
    for receive in (PORT.gateway, PORT.dns):
        t.add_route(VRF, ip_to_bytes(receive), 32, Route(1))
    t.add_route(VRF, ip_to_bytes(PORT.ip), 32, Route(2, mac=mac_from_str(PORT.mac)))
    t.add_vif(
        Vif(
            VM_VIF,
            VifKind.VIRTUAL,
            "vm0",
            VRF,
            mac_from_str(PORT.mac),
            ip_to_bytes(PORT.ip),
            PORT.prefix_len,
            ip_to_bytes(PORT.gateway),
            policy=True,
        )
    )
    return t


def _key(text: FlowKeyText) -> FlowKey:
    vrf, proto, src, dst, sport, dport = text
    return (vrf, proto, ip_to_bytes(src), ip_to_bytes(dst), sport, dport)


class VrouterLoop:
    """Frames from the veth through the pipeline; punts through `handle_punt`; answers back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.tables = program()
        self.state = PuntState()
        self.reasons: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="vrouter-loop", daemon=True)

    def run(self) -> None:
        deadline = time.monotonic() + 120  # bounded even if the test forgets to stop us
        while not self.stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            frame, address = self.sock.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            self.deliver(process(self.tables, frame, VM_VIF, time.monotonic()))

    def deliver(self, emits: list[Emit]) -> None:
        work = list(emits)
        for _ in range(100):  # a punt answer may release held packets, which may punt again
            if not work:
                return
            vif, data = work.pop(0)
            now = time.monotonic()
            if vif == VM_VIF:
                self.sock.send(data)
                continue
            if vif != AGENT_VIF:
                continue
            outcome = handle_punt(data, CONFIG, self.state, now)
            self.reasons[outcome.reason] += 1
            for packet in outcome.inject_packets():
                work += process(self.tables, packet, AGENT_VIF, now)
            for flow in outcome.flows:
                reverse = _key(flow.reverse) if flow.reverse is not None else None
                action = FlowAction(flow.action)
                work += install_flow(self.tables, _key(flow.key), action, now, reverse)


@dataclass
class Vm:
    netns: str
    workdir: Path
    loop: VrouterLoop

    def run(self, argv: list[str], timeout: float = 15.0) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            nsexec.command(self.netns, argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[Vm]:
    """A VM namespace whose vm0 is a veth; its peer, in a second namespace, is read by a
    `VrouterLoop`. Both namespaces (and so the veth) and the VM's /etc/netns entry go after."""
    tag = f"ovpx{uuid.uuid4().hex[:6]}"
    vm_ns, agent_ns = f"{tag}v", f"{tag}a"
    etc = nsexec.ETC_NETNS / vm_ns
    loop: VrouterLoop | None = None
    sock: socket.socket | None = None
    try:
        for ns in (vm_ns, agent_ns):
            _ip("netns", "add", ns)
        _ip(
            "-n",
            agent_ns,
            "link",
            "add",
            "ag0",
            "type",
            "veth",
            "peer",
            "name",
            "vm0",
            "netns",
            vm_ns,
        )
        _ip("-n", vm_ns, "link", "set", "vm0", "address", PORT.mac)
        for ns, dev in ((vm_ns, "vm0"), (vm_ns, "lo"), (agent_ns, "ag0")):
            _ip("-n", ns, "link", "set", dev, "up")
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {PORT.dns}\nsearch {PORT.domain}\n")
        pushns(agent_ns)  # a socket stays in the namespace it was made in
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind(("ag0", 0))
        finally:
            popns()
        loop = VrouterLoop(sock)
        loop.thread.start()
        yield Vm(vm_ns, tmp_path, loop)
    finally:
        if loop is not None:
            loop.stop.set()
            loop.thread.join(5)
        if sock is not None:
            sock.close()
        for ns in (vm_ns, agent_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)
    left = [ns for ns in (vm_ns, agent_ns) if Path(f"/run/netns/{ns}").exists()]
    assert not left and not etc.exists(), f"left behind: {left} {etc}"


def dhclient(vm: Vm, lease: str = "") -> dict[str, str]:
    """Run isc-dhcp-client until it is bound; returns what its hook saw for BOUND."""
    out = vm.workdir / "hook"
    out.mkdir()
    script = vm.workdir / "hook.sh"
    script.write_text(SCRIPT.format(out=out))
    script.chmod(0o755)
    leases = vm.workdir / "dhclient.leases"
    leases.write_text(lease)
    argv = ["dhclient", "-4", "-d", "-1", "-v", "-sf", str(script), "-lf", str(leases)]
    argv += ["-pf", str(vm.workdir / "dhclient.pid"), "vm0"]
    client = nsexec.popen(
        vm.netns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (out / "BOUND").exists() and time.monotonic() < deadline:
            if client.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        client.terminate()
        try:
            _, errors = client.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
            _, errors = client.communicate(timeout=10)
    assert (out / "BOUND").exists(), f"dhclient never bound: {errors}"
    lines = (out / "BOUND").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_dhclient_binds_with_every_option(vm: Vm) -> None:
    bound = dhclient(vm)
    assert bound["new_ip_address"] == PORT.ip
    assert bound["new_subnet_mask"] == "255.255.255.0"
    assert bound["new_broadcast_address"] == "10.0.1.255"
    assert bound["new_routers"] == PORT.gateway
    assert bound["new_domain_name_servers"] == PORT.dns
    assert bound["new_domain_name"] == PORT.domain
    assert bound["new_host_name"] == PORT.hostname
    assert bound["new_interface_mtu"] == str(PORT.mtu)
    assert bound["new_dhcp_server_identifier"] == PORT.gateway
    assert bound["new_dhcp_lease_time"] == "86400"
    assert vm.loop.reasons["dhcp_offer"] >= 1
    assert vm.loop.reasons["dhcp_ack"] >= 1


def test_dhclient_with_a_lease_from_elsewhere_is_nakked_then_binds(vm: Vm) -> None:
    bound = dhclient(vm, LEASE)
    assert bound["new_ip_address"] == PORT.ip
    assert vm.loop.reasons["dhcp_nak"] >= 1


def test_glibc_resolver_gets_names_of_its_vpc_only(vm: Vm) -> None:
    bound = dhclient(vm)
    network = ipaddress.IPv4Network(f"0.0.0.0/{bound['new_subnet_mask']}")
    vm.run(["ip", "addr", "add", f"{bound['new_ip_address']}/{network.prefixlen}", "dev", "vm0"])
    vm.run(["ip", "route", "add", "default", "via", bound["new_routers"]])
    # the search domain completes a short name; glibc reads the VM's own resolv.conf
    found = vm.run(["getent", "ahostsv4", "db1"])
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[0] == "10.0.1.6"
    assert vm.run(["getent", "hosts", "WEB1.EC2.INTERNAL"]).stdout.split()[0] == PORT.ip
    reverse = vm.run(["getent", "hosts", "10.0.1.6"])
    assert reverse.returncode == 0 and "db1.ec2.internal" in reverse.stdout
    assert vm.run(["getent", "hosts", "other-tenant"]).returncode != 0
    assert vm.loop.reasons["dns_answer"] >= 3
    assert vm.loop.reasons["dns_nxdomain"] >= 1
    assert vm.loop.reasons["flow_forward"] >= 1  # the queries went through first-packet policy
    assert vm.loop.reasons["agent_handler_error"] == 0
