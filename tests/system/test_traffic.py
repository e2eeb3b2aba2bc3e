"""Real traffic between VMs on two compute nodes, for every encapsulation on both underlays.

One lab per underlay and datapath (module-scoped, so each comes up once): one tenant per
encapsulation, all with the same 10.0.0.0/16 and the same three subnets (web and app reach
each other; db's route table blackholes web). Real dhclient, ping, TCP, iperf3, tcpdump and
tshark. The main cross-node tests (the connectivity matrix, bulk TCP, PMTU) run on both
datapaths (`dp_world`); the rest on the default datapath only (`world`), so the other one keeps
a smaller set whichever is the default.
"""

import ipaddress
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import LabHandle, checked_labs, wait_for_line

from openvpc.compiler.compile import compile_node, mtu_for, subnet_tables
from openvpc.lab import netns, nsexec
from openvpc.lab.kernel_vtep import DEVICE, KernelVtep, add_kernel_vtep
from openvpc.lab.real import choose_datapath, ebpf_refusal
from openvpc.model.resources import Snapshot
from openvpc.tools.matrix import expected_probes, run_probes
from openvpc.tools.showcase import Responders

ENCAPS = {"l2": ("vxlan", "mplsoudp", "mplsogre", "vlan"), "l3": ("vxlan", "mplsoudp", "mplsogre")}
LETTER = {"vxlan": "x", "mplsoudp": "u", "mplsogre": "g", "vlan": "v"}
VIP = "10.0.1.100"
PY = sys.executable
WORLDS = [(underlay, dp) for dp in ("ebpf", "python") for underlay in ("l2", "l3")]


def tenant(encap: str) -> dict[str, Any]:
    x = LETTER[encap]
    vip = {"allowed_addresses": [VIP]}
    return {
        "name": encap,
        "vpcs": [
            {
                "name": "prod",
                "cidr": "10.0.0.0/16",
                "encap": encap,
                "route_tables": [
                    {"name": "app"},
                    {
                        "name": "isolated",
                        "routes": [{"destination": "10.0.1.0/24", "target": "blackhole"}],
                    },
                ],
                "subnets": [
                    {"name": "web", "cidr": "10.0.1.0/24"},
                    {"name": "app", "cidr": "10.0.2.0/24", "route_table": "app"},
                    {"name": "db", "cidr": "10.0.3.0/24", "route_table": "isolated"},
                ],
                "vms": [
                    {"name": f"{x}1", "subnet": "web", "node": "node1", **vip},
                    {"name": f"{x}2", "subnet": "web", "node": "node2", **vip},
                    {"name": f"{x}3", "subnet": "app", "node": "node2"},
                    {"name": f"{x}4", "subnet": "db", "node": "node1"},
                ],
            }
        ],
    }


@dataclass
class World:
    underlay: str
    datapath: str
    lab: LabHandle
    snapshot: Snapshot

    def run(
        self, vm: str, argv: list[str], timeout: float = 30.0
    ) -> "subprocess.CompletedProcess[str]":
        return self.lab.exec(vm, argv, timeout)

    def popen(self, vm: str, argv: list[str]) -> "subprocess.Popen[str]":
        return nsexec.popen(
            self.lab.vm_netns(vm), argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def ip(self, vm: str) -> str:
        iface = next(i for i in self.snapshot.interfaces if self._name(i.instance) == vm)
        return iface.ip

    def _name(self, instance: str) -> str:
        return next(i.name for i in self.snapshot.instances if i.id == instance)


@pytest.fixture(scope="module", params=WORLDS, ids=[f"{u}-{dp}" for u, dp in WORLDS])
def dp_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A lab on one underlay with one datapath: for the tests that run on both."""
    underlay, dp = request.param
    if dp == "ebpf" and (why := ebpf_refusal()) is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    with checked_labs(tmp_path_factory.mktemp(f"{underlay}-{dp}"), "w") as labs:
        lab = labs.make(
            {
                "underlay": underlay,
                "encap": "vxlan",
                "fabric_mtu": 1500,
                "datapath": dp,
                "nodes": ["node1", "node2"],
                "tenants": [tenant(e) for e in ENCAPS[underlay]],
            }
        )
        with Responders(lab.started):
            yield World(underlay, dp, lab, lab.store_snapshot())


@pytest.fixture
def world(dp_world: World) -> World:
    """The same labs, for the tests that run on the default datapath only: the one a lab
    file without `datapath` gets on this machine."""
    default = choose_datapath("default", "auto", lambda _: None)
    if dp_world.datapath != default:
        pytest.skip(f"on the default datapath ({default}) only")
    return dp_world


def encaps(world: World) -> tuple[str, ...]:
    return ENCAPS[world.underlay]


@pytest.fixture(params=["vxlan", "mplsoudp", "mplsogre", "vlan"])
def encap(request: pytest.FixtureRequest, dp_world: World) -> str:
    if request.param not in encaps(dp_world):
        pytest.skip("VLAN needs the l2 underlay")
    return str(request.param)


def test_dhcp_gives_each_vm_its_address_mtu_and_dns(world: World) -> None:
    st = world.lab.status()
    vpcs = {v.id: v for v in world.snapshot.vpcs}
    subnets = {s.id: s for s in world.snapshot.subnets}
    names = {i.id: i.name for i in world.snapshot.instances}
    for iface in world.snapshot.interfaces:
        vm = names[iface.instance]
        subnet = ipaddress.IPv4Network(subnets[iface.subnet].cidr)
        assert st.vm(vm).ip == f"{iface.ip}/{subnet.prefixlen}", vm
        link = world.run(vm, ["cat", "/sys/class/net/eth0/mtu"]).stdout.strip()
        assert int(link) == mtu_for(1500, vpcs[subnets[iface.subnet].vpc]), vm
        route = world.run(vm, ["ip", "-4", "route", "show", "default"]).stdout
        assert f"via {subnet.network_address + 1}" in route, (vm, route)
    for e in encaps(world):
        x = LETTER[e]
        answer = world.run(f"{x}1", ["getent", "hosts", f"{x}3"]).stdout.split()
        assert answer[:2] == [world.ip(f"{x}3"), f"{x}3.ec2.internal"]


def test_connectivity_matrix_route_tables_and_tenant_isolation(dp_world: World) -> None:
    world = dp_world

    def run(vm: str, argv: list[str]) -> tuple[int, str]:
        out = world.run(vm, argv, timeout=15)
        return out.returncode, out.stdout

    results = run_probes(expected_probes(world.snapshot), run, PY)
    bad = [r for r in results if not r.ok]
    assert not bad, bad
    # the matrix holds cross-tenant probes and blackholed paths, not only successes
    assert sum(1 for r in results if not r.probe.expect) >= 4 * len(encaps(world))


def test_ten_megabytes_cross_node_intact(dp_world: World, encap: str) -> None:
    world = dp_world
    x = LETTER[encap]
    sink = world.popen(f"{x}2", [PY, "-m", "openvpc.tools.probe", "sink", "7100"])
    try:
        wait_for_line(sink, "listening")
        sent = world.run(
            f"{x}1",
            [PY, "-m", "openvpc.tools.probe", "source", world.ip(f"{x}2"), "7100", "10000000"],
        )
        received, _ = sink.communicate(timeout=60)
    finally:
        sink.kill()
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert sent.stdout.split() == received.split()
    assert sent.stdout.split()[0] == "10000000"


def test_gateways_ttl_and_broadcast(world: World, encap: str) -> None:
    x = LETTER[encap]
    assert world.lab.ping(f"{x}1", "10.0.1.1")
    assert not world.lab.ping(f"{x}1", "10.0.2.1", wait=1)  # another subnet's gateway
    # routed across nodes and subnets, the datagram keeps the TTL it was sent with
    listener = world.popen(f"{x}3", [PY, "-m", "openvpc.tools.probe", "ttl-listen", "7200"])
    try:
        wait_for_line(listener, "listening")
        world.run(
            f"{x}1", [PY, "-m", "openvpc.tools.probe", "ttl-send", world.ip(f"{x}3"), "7200", "9"]
        )
        ttl, _ = listener.communicate(timeout=15)
    finally:
        listener.kill()
    assert ttl.strip() == "9"
    # every VM would answer a broadcast echo; nothing but the sender's own stack may
    for i in (1, 2):
        world.run(f"{x}{i}", ["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"])
    out = world.run(f"{x}1", ["ping", "-n", "-b", "-c", "3", "-i", "0.3", "-W", "1", "10.0.1.255"])
    repliers = set(re.findall(r"bytes from ([\d.]+)", out.stdout))
    assert repliers <= {world.ip(f"{x}1")}, out.stdout


def test_df_packet_over_overlay_mtu_gets_frag_needed_and_tcp_still_works(
    dp_world: World, encap: str
) -> None:
    world = dp_world
    if encap == "vlan":
        pytest.skip("VLAN adds no overhead: the overlay MTU is the fabric's")
    x = LETTER[encap]
    overlay = int(world.run(f"{x}1", ["cat", "/sys/class/net/eth0/mtu"]).stdout)
    dst = world.ip(f"{x}2")
    world.run(f"{x}1", ["ip", "link", "set", "eth0", "mtu", "1500"])
    world.run(f"{x}1", ["ip", "route", "flush", "cache"])
    try:
        out = world.run(
            f"{x}1", ["ping", "-n", "-M", "do", "-s", "1472", "-c", "2", "-W", "1", dst]
        )
        text = out.stdout + out.stderr
        assert f"mtu = {overlay}" in text or f"mtu={overlay}" in text, text
        assert f"mtu {overlay}" in world.run(f"{x}1", ["ip", "route", "get", dst]).stdout
        test_ten_megabytes_cross_node_intact(world, encap)
    finally:
        world.run(f"{x}1", ["ip", "link", "set", "eth0", "mtu", str(overlay)])


def _labels(world: World, encap: str) -> set[int]:
    """The VNI / label / VLAN id the two directions between x1 and x2 must carry."""
    x = LETTER[encap]
    found = set()
    for vm, peer in ((f"{x}1", f"{x}2"), (f"{x}2", f"{x}1")):
        node = "node1" if vm.endswith("1") else "node2"
        config = compile_node(world.snapshot, node)
        vrf = next(p.vrf for p in config.ports if p.name == vm)
        route = next(
            r for r in config.routes if r.vrf == vrf and r.prefix == f"{world.ip(peer)}/32"
        )
        assert route.label is not None
        found.add(route.label)
    return found


DECODE = {
    "vxlan": (["-Y", "vxlan"], "vxlan.vni"),
    "mplsoudp": (["-d", "udp.port==6635,mpls", "-Y", "mpls && udp"], "mpls.label"),
    "mplsogre": (["-Y", "gre && mpls"], "mpls.label"),
    "vlan": (["-Y", "vlan"], "vlan.id"),
}


def test_tshark_decodes_the_underlay(world: World, encap: str, tmp_path: Path) -> None:
    x = LETTER[encap]
    pcap = tmp_path / "fabric.pcap"
    capture = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            world.lab.node_netns("node1"),
            "tcpdump",
            "-U",
            "-n",
            "-i",
            "fabric0",
            "-c",
            "40",
            "-w",
            str(pcap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert capture.stderr is not None
        capture.stderr.readline()  # "listening on ...": the capture is armed
        assert world.lab.ping(f"{x}1", world.ip(f"{x}2"), count=5)
        # -U writes each packet as it is captured: wait until the ten echoes are on disk
        for _ in range(40):
            if len(_echoes(pcap, encap)) >= 10:
                break
    finally:
        capture.send_signal(signal.SIGINT)
        capture.wait(10)
    echoes = _echoes(pcap, encap)
    assert len(echoes) >= 10, echoes
    assert {label for label, _ in echoes} == _labels(world, encap), echoes


def _echoes(pcap: Path, encap: str) -> list[tuple[int, str]]:
    """(label or VNI or VLAN id, ICMP type) of each echo request or reply tshark decodes."""
    args, field = DECODE[encap]
    out = subprocess.run(
        ["tshark", "-r", str(pcap), *args, "-T", "fields", "-e", field, "-e", "icmp.type"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # a capture still being written may end mid-packet: take what decodes
    ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return [(int(v.split(",")[0]), kind) for v, kind in rows if kind in ("0", "8")]


def test_ecmp_spreads_flows_over_both_spines(world: World) -> None:
    if world.underlay != "l3":
        pytest.skip("the l2 underlay has no spines")

    def spine_packets() -> list[int]:
        counts = []
        for spine in ("spine1", "spine2"):
            ns = f"ov-{world.lab.name}-u-{spine}"
            text = subprocess.run(
                ["ip", "netns", "exec", ns, "cat", "/proc/net/dev"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            counts.append(
                sum(
                    int(line.split(":")[1].split()[1])
                    for line in text.splitlines()
                    if "leaf" in line
                )
            )
        return counts

    before = spine_packets()
    server = world.popen("x2", ["iperf3", "-s", "-1", "-p", "7300", "--forceflush"])
    try:
        wait_for_line(server, "Server listening")
        out = world.run("x1", ["iperf3", "-c", world.ip("x2"), "-p", "7300", "-P", "8", "-t", "2"])
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        server.kill()
        server.wait()
    delta = [a - b for a, b in zip(spine_packets(), before, strict=True)]
    assert min(delta) > 500, delta


def test_moved_vip_is_reachable_at_its_new_place(world: World) -> None:
    if world.underlay != "l3":
        pytest.skip("once is enough")
    connect = [PY, "-m", "openvpc.tools.probe", "connect", VIP]
    world.run("x1", ["ip", "addr", "add", f"{VIP}/24", "dev", "eth0"])
    try:
        assert world.run("x3", connect).stdout.strip() == "x1"
        world.run("x1", ["ip", "addr", "del", f"{VIP}/24", "dev", "eth0"])
        world.run("x2", ["ip", "addr", "add", f"{VIP}/24", "dev", "eth0"])
        world.run("x2", ["arping", "-U", "-c", "2", "-I", "eth0", VIP])
        deadline = time.monotonic() + 10
        answer = ""
        while time.monotonic() < deadline and answer != "x2":
            answer = world.run("x3", connect).stdout.strip()
        assert answer == "x2"
    finally:
        world.run("x1", ["ip", "addr", "del", f"{VIP}/24", "dev", "eth0"])
        world.run("x2", ["ip", "addr", "del", f"{VIP}/24", "dev", "eth0"])


def test_linux_kernel_vxlan_pings_a_vm_behind_our_vrouter(world: World) -> None:
    """A namespace with the kernel's own VXLAN device on the underlay, registered as a VTEP
    holding one address of the vxlan tenant. Last in the module: its node has no agent."""
    from openvpc.service import Service
    from openvpc.store import Store

    kv_ns = f"ov-{world.lab.name}-kv"
    if world.underlay == "l2":
        bridge_ns, kv_ip, gateway = f"ov-{world.lab.name}-u-sw", "192.168.0.200", None
    else:
        bridge_ns, kv_ip, gateway = f"ov-{world.lab.name}-u-leaf1", "172.16.1.200", "172.16.1.1"
    web = next(s for s in world.snapshot.subnets if s.tenant == "vxlan" and s.name == "web")
    store = Store(Path(world.lab.status().state_dir) / "openvpc.db")
    try:
        service = Service(store)
        service.register_node("kvtep", kv_ip)
        _, iface = service.run_instance("vxlan", web.id, "kv", "kvtep", kv_ns)
        rtb = next(
            t
            for t in service.snapshot().route_tables
            if t.id == subnet_tables(world.snapshot)[web.id]
        )
    finally:
        store.close()
    vtep = KernelVtep(
        kv_ns,
        bridge_ns,
        "kvb",
        f"{kv_ip}/24",
        rtb.vni,
        world.lab.fabric_ip("node1"),
        f"{iface.ip}/24",
        gateway,
        iface.mac,
    )
    try:
        add_kernel_vtep(vtep)
        # an l3 VPC forwards IP only: its gateway MAC stands for every address, as in AWS
        netns.add_neighbor(kv_ns, DEVICE, world.ip("x1"), "00:00:5e:00:01:00")
        ping = ["ip", "netns", "exec", kv_ns, "ping", "-n", "-c", "1", "-W", "1", world.ip("x1")]
        deadline = time.monotonic() + 15
        ok = False
        while not ok and time.monotonic() < deadline:
            ok = subprocess.run(ping, capture_output=True, timeout=10).returncode == 0
        assert ok, "the kernel VTEP got no echo reply from x1"
        # and the VM sees the kernel host as an ordinary neighbour in its subnet
        assert world.lab.ping("x1", iface.ip)
    finally:
        netns.remove_netns(kv_ns)
