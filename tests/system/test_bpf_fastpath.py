"""The fast path's programs (openvpc/vrouter/bpf, root) held to the Python pipeline case by case:
hand-built tables written with encode_tables into a fresh object, frames run with
BPF_PROG_TEST_RUN in a scratch namespace whose veths give the vifs their ifindexes, and the
same frames through pipeline.process. Named behaviours first, then seeded mutations."""

import copy
import os
import platform
import random
import struct
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from openvpc.lab import netns
from openvpc.model.forwarding import Encap, FlowKey, Mode
from openvpc.model.rules import ANY, AclEntry, NetworkAclConfig, PortSecurity, SgRule
from openvpc.packet.arp import build_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import build_icmp
from openvpc.vrouter import pipeline
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.drops import DROP_NAMES
from openvpc.vrouter.ebpf.encode import (
    TABLE_MAPS,
    Device,
    decode_flow_key,
    encode_flow,
    encode_flow_key,
    encode_tables,
    flow_rooms,
)
from openvpc.vrouter.ebpf.libbpf import BpfObject
from openvpc.vrouter.ebpf.rulesets import Names
from openvpc.vrouter.encap import OuterTemplate
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.nexthop import CompositeNH, EncapNH, L2ReceiveNH, ReceiveNH, TunnelNH
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="BPF programs need root")

BPF_DIR = Path(__file__).resolve().parents[2] / "openvpc" / "vrouter" / "bpf"
FABRIC, AGENT, VM1, VM2 = 1, 2, 3, 4
VRF = 10
VNI, LABEL, VLAN = 5000, 55, 77
FAB_MAC, PEER_MAC = bytes.fromhex("0200000000fa"), bytes.fromhex("0200000000fb")
GW = bytes.fromhex("00005e000100")
M1, M2, M7 = (bytes.fromhex(f"02000000000{n}") for n in (1, 2, 7))
SLOW_HDR = struct.Struct("!6s6sHIHH")
VERDICT_TAGGED = 0x10000  # layout.h: V_TX with an 802.1Q tag in skb metadata


def ip(text: str) -> bytes:
    return bytes(int(b) for b in text.split("."))


def eth(dst: bytes, src: bytes, payload: bytes, ethertype: int = ETH_P_IP) -> bytes:
    return build_ethernet(dst, src, ethertype, payload)


def udp(src: str, dst: str, sport: int, dport: int, ttl: int = 64) -> bytes:
    body = struct.pack("!HHHH", sport, dport, 28, 0) + b"x" * 20
    return build_ipv4(ip(src), ip(dst), PROTO_UDP, body, ttl=ttl)


def tcp(src: str, dst: str, flags: int) -> bytes:
    body = struct.pack("!HHIIBBHHH", 4000, 80, 1, 0, 0x50, flags, 1000, 0, 0) + b"data"
    return build_ipv4(ip(src), ip(dst), PROTO_TCP, body)


def ping(dst: str, data: bytes = b"abcdefgh" * 3) -> bytes:
    body = build_icmp(8, 0, b"\x12\x34\x00\x01", data)
    return eth(GW, M1, build_ipv4(ip("10.0.0.5"), ip(dst), PROTO_ICMP, body))


def arp(op: int, spa: str, tpa: str) -> bytes:
    return eth(BROADCAST, M1, build_arp(op, M1, ip(spa), bytes(6), ip(tpa)), ETH_P_ARP)


def make_tables(
    mode: Mode = Mode.L3, encap: Encap = Encap.VXLAN, policy: bool = False, ttl: bool = False
) -> Tables:
    """Two local VMs, a remote node behind `encap`, the gateway, an ECMP route, every way in."""
    t = Tables(Fabric(FABRIC, ip("192.168.0.1"), FAB_MAC, mtu=1500, kernel_routed=True))
    t.add_vif(Vif(AGENT, VifKind.AGENT, "agent"))
    t.add_vrf(Vrf(VRF, "red", mode=mode, decrement_ttl=ttl))
    for vif_id, mac, addr, pol in ((VM1, M1, "10.0.0.5", policy), (VM2, M2, "10.0.0.6", False)):
        t.add_vif(
            Vif(vif_id, VifKind.VIRTUAL, f"vm{vif_id}", vrf=VRF, mac=mac, ip=ip(addr),
                prefix_len=24, gateway_ip=ip("10.0.0.1"), policy=pol)
        )  # fmt: skip
    t.add_nexthop(5, EncapNH(VM1, M1, GW))
    t.add_nexthop(6, EncapNH(VM2, M2, GW))
    t.add_nexthop(7, TunnelNH(encap, ip("192.168.0.2")))
    t.add_nexthop(8, ReceiveNH())
    t.add_nexthop(9, CompositeNH(True, ((7, 100), (5, None))))
    t.add_nexthop(11, L2ReceiveNH())
    t.add_route(VRF, ip("10.0.0.5"), 32, Route(5, None, M1))
    t.add_route(VRF, ip("10.0.0.6"), 32, Route(6, None, M2))
    t.add_route(VRF, ip("10.0.0.7"), 32, Route(7, 77, M7))
    t.add_route(VRF, ip("10.0.0.1"), 32, Route(8))
    t.add_route(VRF, ip("10.1.0.0"), 16, Route(7, 78))
    t.add_route(VRF, ip("10.2.0.0"), 16, Route(9, 79))
    t.add_mac_route(VRF, M1, Route(5))
    t.add_mac_route(VRF, M2, Route(6))
    t.add_mac_route(VRF, M7, Route(7, 77))
    t.add_mac_route(VRF, GW, Route(11))
    t.add_label(LABEL, LabelEntry(VRF, mode is not Mode.L3))
    t.add_vni(VNI, VRF)
    t.add_vlan(VLAN, VRF)
    return t


@dataclass
class Outcome:
    kind: str  # DROP, TX, SLOW, PASS
    verdict: L.Verdict
    data: bytes


@dataclass
class Fastpath:
    """The loaded object and the scratch namespace whose devices stand for the vifs."""

    obj: BpfObject
    ns: str
    ifindex: dict[str, int]
    names: Names = field(default_factory=Names)

    def load(self, tables: Tables) -> None:
        devices = {VM1: Device(self.ifindex["vm1"], True), VM2: Device(self.ifindex["vm2"], True)}
        image = encode_tables(
            tables, devices, self.ifindex["pkt0"], self.ifindex["fabric"], self.names
        )
        for name in (*TABLE_MAPS, L.MAP_FLOWS, L.MAP_PUNT_TOKENS, L.MAP_FLOW_ROOM, L.MAP_FLOW_MADE):
            m = self.obj.map(name)
            if name not in L.ARRAY_MAPS:
                for key in list(m.keys()):
                    m.delete(key)
            for key, value in image.get(name, {}).items():
                m.update(key, value)
        for flow in tables.flows.flows.values():
            entry = encode_flow(flow, self.names)
            if entry is not None:
                self.obj.map(L.MAP_FLOWS).update(*entry)
        for vrf, room in flow_rooms(tables, {}).items():
            self.obj.map(L.MAP_FLOW_ROOM).update(L.u32(vrf), room.pack())

    def made(self, key: int) -> int:
        """ov_flow_made under a VRF id or FLOW_ROOM_ALL."""
        value = self.obj.map(L.MAP_FLOW_MADE).lookup(L.u32(key))
        return 0 if value is None else int.from_bytes(value, "little")

    def run(self, prog: str, frame: bytes, device: str) -> Outcome | None:
        """The program's outcome, or None for a frame BPF_PROG_TEST_RUN refuses (too short
        for the IPv4 header its ethertype promises)."""
        with netns.inside(self.ns):
            try:
                res = self.obj.program(prog).test_run(frame, ifindex=self.ifindex[device])
            except OSError:
                return None
        cpu = os.sched_getaffinity(0)
        assert len(cpu) == 1
        values = self.obj.map(L.MAP_VERDICT).lookup_percpu(L.u32(0))
        assert values is not None
        v = L.Verdict.unpack(values[next(iter(cpu))])
        kind = {int(L.VerdictKind.DROP): "DROP", int(L.VerdictKind.TX): "TX"}
        kind[int(L.VerdictKind.SLOW)] = "SLOW"
        return Outcome(kind.get(v.kind, "PASS"), v, res.data)


def compile_datapath(out_dir: Path) -> Path:
    out = out_dir / "datapath.bpf.o"
    include = f"-I/usr/include/{platform.machine()}-linux-gnu"
    cmd = ["clang", "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", include, "-c"]
    subprocess.run([*cmd, str(BPF_DIR / "datapath.c"), "-o", str(out)], check=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def fastpath(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fastpath]:
    path = compile_datapath(tmp_path_factory.mktemp("fastpath"))
    ns = f"fastpath-{uuid.uuid4().hex[:6]}"
    cpus = os.sched_getaffinity(0)
    made = False
    try:
        netns.create_netns(ns)
        made = True
        ifindex = {}
        for name in ("fabric", "vm1", "vm2", "pkt0"):
            netns.add_veth(ns, f"fp-{name}", ns, f"fq-{name}", 1500)
            with netns.rtnl(ns) as ipr:
                ifindex[name] = int(ipr.link_lookup(ifname=f"fp-{name}")[0])
        # the verdict map is per CPU: stay on one
        os.sched_setaffinity(0, {min(cpus)})
        with BpfObject.open(path) as obj:
            yield Fastpath(obj, ns, ifindex)
    finally:
        os.sched_setaffinity(0, cpus)
        if made:
            netns.remove_netns(ns)
    assert not netns.netns_exists(ns)


def agree(fp: Fastpath, tables: Tables, prog: str, frame: bytes, vif: int) -> Outcome | None:
    """Run `frame` through both; assert that what the fast path decides, Python decides."""
    device = {VM1: "vm1", VM2: "vm2", FABRIC: "fabric"}[vif]
    got = fp.run(prog, frame, device)
    if got is None:
        return None
    py = copy.deepcopy(tables)
    out = pipeline.process(py, frame, vif, 0.0)
    drops = [reason for reason, n in py.drops.items() if n]
    where = f"{prog} {frame.hex()}: bpf {got.verdict}, python {out} {drops}"
    if got.kind == "DROP":
        assert (drops, out) == ([DROP_NAMES[got.verdict.reason]], []), where
    elif got.kind == "TX":
        data = got.data
        if got.verdict.reason & VERDICT_TAGGED:
            tag = b"\x81\x00" + (got.verdict.reason & 0x0FFF).to_bytes(2, "big")
            data = data[:12] + tag + data[12:]
        assert len(out) == 1 and out[0][0] == got.verdict.vif, where
        if got.verdict.vif == FABRIC:  # the fabric's MACs are the kernel's to choose
            assert out[0][1][12:] == data[12:], where
        else:
            assert out[0][1] == data, where
    return got


def test_l3_forwarding_local_tunnel_and_ecmp(fastpath: Fastpath) -> None:
    for encap in (Encap.VXLAN, Encap.MPLSOUDP, Encap.MPLSOGRE):
        t = make_tables(encap=encap)
        fastpath.load(t)
        for dst, kind in (("10.0.0.6", "TX"), ("10.0.0.7", "TX"), ("10.1.2.3", "TX")):
            got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", dst, 1, 2)), VM1)
            assert got is not None and got.kind == kind, (encap, dst)
        kinds: Counter[str] = Counter()
        for sport in range(1000, 1040):
            frame = eth(GW, M1, udp("10.0.0.5", "10.2.0.9", sport, 2))
            got = agree(fastpath, t, "vif_in", frame, VM1)
            assert got is not None
            kinds[got.kind] += 1
        assert kinds["TX"] and kinds["DROP"], kinds  # both ECMP members are picked


def test_amazon_behaviours(fastpath: Fastpath) -> None:
    t = make_tables()
    fastpath.load(t)
    answered = [arp(1, "10.0.0.5", a) for a in ("10.0.0.6", "10.0.0.1", "10.0.0.7", "10.1.0.9")]
    answered.append(answered[0] + bytes(18))  # padded to the Ethernet minimum
    pings = [ping("10.0.0.1"), ping("10.0.0.1", b"odd"), ping("10.0.0.1", bytes(range(256)) * 5)]
    for frame in answered + pings:
        got = agree(fastpath, t, "vif_in", frame, VM1)
        assert got is not None and got.kind == "TX" and got.verdict.vif == VM1
    drops = {
        "src_mac_mismatch": eth(GW, M2, udp("10.0.0.5", "10.0.0.6", 1, 2)),
        "src_ip_mismatch": eth(GW, M1, udp("10.0.0.9", "10.0.0.6", 1, 2)),
        "no_route": eth(GW, M1, udp("10.0.0.5", "11.0.0.6", 1, 2)),
        "l3_multicast_or_broadcast": eth(GW, M1, udp("10.0.0.5", "10.0.0.255", 1, 2)),
        "l3_non_ip": eth(GW, M1, b"\x00" * 40, 0x86DD),
        "same_vif": eth(GW, M1, udp("10.0.0.5", "10.0.0.5", 1, 2)),
        "short_arp": arp(1, "10.0.0.5", "10.0.0.6")[:40],
    }
    for reason, frame in drops.items():
        got = agree(fastpath, t, "vif_in", frame, VM1)
        assert got is not None and got.kind == "DROP"
        assert DROP_NAMES[got.verdict.reason] == reason
    t.vrfs[VRF].decrement_ttl = True
    fastpath.load(t)
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 2, 2)), VM1)
    assert got is not None and got.kind == "TX"
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 2, 1)), VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "ttl_expired"


def test_slow_path_up_and_down(fastpath: Fastpath) -> None:
    t = make_tables()
    fastpath.load(t)
    for frame, reason in (
        (eth(BROADCAST, M1, udp("0.0.0.0", "255.255.255.255", 68, 67)), L.SlowReason.DHCP),
        (arp(1, "10.0.0.5", "10.0.0.99"), L.SlowReason.ARP),
        (arp(1, "10.0.0.5", "10.0.0.5"), L.SlowReason.ARP),
    ):
        got = fastpath.run("vif_in", frame, "vm1")
        assert got is not None and got.kind == "SLOW" and got.verdict.reason == reason
        _, _, proto, vif, why, _ = SLOW_HDR.unpack_from(got.data)
        assert (proto, vif, why) == (L.SLOW_ETH_P, VM1, reason)
        assert got.data[SLOW_HDR.size :] == frame  # up as it came in
    for size in (14, 63, 64, 65, 200, 1500):
        frame = bytes(i * 7 & 0xFF for i in range(size))
        down = SLOW_HDR.pack(bytes(6), bytes(6), L.SLOW_ETH_P, VM2, L.SlowReason.INJECT, 0)
        got = fastpath.run("slow_in", down + frame, "pkt0")
        assert got is not None and got.kind == "TX" and got.verdict.vif == VM2
        assert got.data == frame
    bad = SLOW_HDR.pack(bytes(6), bytes(6), L.SLOW_ETH_P, VM2, L.SlowReason.ARP, 0)
    got = fastpath.run("slow_in", bad + bytes(60), "pkt0")
    assert got is not None and DROP_NAMES[got.verdict.reason] == "agent_frame_invalid"


def test_punts_are_rate_limited_per_source(fastpath: Fastpath) -> None:
    t = make_tables()
    fastpath.load(t)
    dhcp = eth(BROADCAST, M1, udp("0.0.0.0", "255.255.255.255", 68, 67))
    burst = t.limits.vif_punt_burst
    kinds: Counter[str] = Counter()
    for _ in range(burst * 3):
        got = fastpath.run("vif_in", dhcp, "vm1")
        assert got is not None
        kinds[got.kind] += 1
    # the bucket refills while the loop runs, never by more than the loop's length allows
    assert burst <= kinds["SLOW"] < burst * 3 and kinds["DROP"], kinds
    got = fastpath.run(
        "vif_in", eth(BROADCAST, M2, udp("0.0.0.0", "255.255.255.255", 68, 67)), "vm2"
    )
    assert got is not None and got.kind == "SLOW"  # another source has its own bucket


def test_flow_table(fastpath: Fastpath) -> None:
    t = make_tables(policy=True)
    forward = (VRF, 6, ip("10.0.0.5"), ip("10.0.0.6"), 4000, 80)
    t.flows.install(forward, FlowAction.FORWARD, 0.0)
    t.flows.install((VRF, 17, ip("10.0.0.5"), ip("10.0.0.6"), 1, 3), FlowAction.DROP, 0.0)
    fastpath.load(t)
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 2)), VM1)
    assert got is not None and got.kind == "SLOW" and got.verdict.reason == L.SlowReason.FLOW
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 3)), VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_action_drop"
    for flags in (0x02, 0x10, 0x11):
        got = agree(fastpath, t, "vif_in", eth(GW, M1, tcp("10.0.0.5", "10.0.0.6", flags)), VM1)
        assert got is not None and got.kind == "TX"
    key, _ = encode_flow(t.flows.flows[forward]) or (b"", b"")
    value = fastpath.obj.map(L.MAP_FLOWS).lookup(key)
    assert value is not None
    flow = L.Flow.unpack(value)
    assert (flow.packets, flow.nbytes, flow.tcp_flags) == (3, 3 * 44, 0x13)
    assert flow.last_used > 0


def test_the_fast_path_makes_the_flows_the_vrouter_decides(fastpath: Fastpath) -> None:
    t = make_tables(policy=True)
    t.vifs[VM1].agent_decides = False
    fastpath.load(t)
    forward = (VRF, PROTO_TCP, ip("10.0.0.5"), ip("10.0.0.6"), 4000, 80)
    reverse = (VRF, PROTO_TCP, ip("10.0.0.6"), ip("10.0.0.5"), 80, 4000)
    got = agree(fastpath, t, "vif_in", eth(GW, M1, tcp("10.0.0.5", "10.0.0.6", 0x02)), VM1)
    assert got is not None and got.kind == "TX"  # no round trip to the agent
    flows = fastpath.obj.map(L.MAP_FLOWS)
    made = {k: L.Flow.unpack(v) for k, v in flows.items()}
    assert set(made) == {encode_flow_key(forward), encode_flow_key(reverse)}
    assert made[encode_flow_key(forward)].packets == 1  # the first packet counts
    assert made[encode_flow_key(reverse)].packets == 0
    assert {f.action for f in made.values()} == {L.FlowActionKind.FORWARD}
    assert fastpath.made(VRF) == fastpath.made(L.FLOW_ROOM_ALL) == 2
    # the reply hits the reverse flow
    reply = eth(
        GW, M2, tcp("10.0.0.6", "10.0.0.5", 0x12).replace(b"\x0f\xa0\x00\x50", b"\x00\x50\x0f\xa0")
    )
    got = fastpath.run("vif_in", reply, "vm2")
    assert got is not None and got.kind == "TX" and fastpath.made(VRF) == 2
    # ICMP first packets go up: the slow path decides them (their keys, see encode_flow_key)
    got = agree(fastpath, t, "vif_in", ping("10.0.0.6"), VM1)
    assert got is not None and got.kind == "SLOW" and got.verdict.reason == L.SlowReason.FLOW
    # the VRF's quota, then the table's capacity, as FlowTable.install admits them
    t.flows.vrf_quota = 3
    fastpath.load(t)
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 2)), VM1)
    assert got is not None and got.kind == "TX" and fastpath.made(VRF) == 2
    first = (VRF, PROTO_UDP, ip("10.0.0.5"), ip("10.0.0.6"), 1, 2)
    t.flows.install(first, FlowAction.FORWARD, 0.0, (VRF, PROTO_UDP, first[3], first[2], 2, 1))
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 3)), VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_vrf_quota_exceeded"
    t.flows.capacity = 1
    fastpath.load(t)
    got = agree(fastpath, t, "vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 4)), VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_table_full"
    assert fastpath.made(L.FLOW_ROOM_ALL) == 0
    # a VRF the slow path gave no room yet: the first packet goes up
    fastpath.obj.map(L.MAP_FLOW_ROOM).delete(L.u32(VRF))
    got = fastpath.run("vif_in", eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 5)), "vm1")
    assert got is not None and got.kind == "SLOW" and got.verdict.reason == L.SlowReason.FLOW


def test_bridging_and_fallback(fastpath: Fastpath) -> None:
    for mode in (Mode.L2, Mode.L2_L3):
        for encap in Encap:
            t = make_tables(mode=mode, encap=encap)
            fastpath.load(t)
            for frame in (
                eth(M2, M1, udp("10.0.0.5", "10.0.0.6", 1, 2)),
                eth(M7, M1, udp("10.0.0.5", "10.0.0.99", 1, 2)),
                eth(M7, M1, build_arp(2, M1, ip("10.0.0.5"), M7, ip("10.0.0.7")), ETH_P_ARP),
                eth(GW, M1, udp("10.0.0.5", "10.0.0.6", 1, 2)),
            ):
                got = agree(fastpath, t, "vif_in", frame, VM1)
                assert got is not None and got.kind == "TX", (mode, encap, frame.hex())


def fabric_frames(mode: Mode) -> Iterator[bytes]:
    """Every way in from the fabric, to every kind of destination."""
    inners = [
        udp("10.0.0.7", "10.0.0.5", 1, 2),
        udp("10.0.0.7", "10.0.0.7", 1, 2),
        build_ipv4(ip("10.0.0.7"), ip("10.0.0.1"), PROTO_ICMP, build_icmp(8, 0, bytes(4))),
    ]
    for encap, label in ((Encap.VXLAN, VNI), (Encap.MPLSOUDP, LABEL), (Encap.MPLSOGRE, LABEL)):
        template = OuterTemplate(encap, ip("192.168.0.2"), ip("192.168.0.1"), label)
        for inner in inners:
            for dmac in (M1, GW):
                with_eth = encap is Encap.VXLAN or mode is not Mode.L3
                payload = eth(dmac, M7, inner) if with_eth else inner
                yield eth(FAB_MAC, PEER_MAC, template.wrap(payload, 50000))
    for inner in inners:
        for dmac in (FAB_MAC, M1):
            yield build_ethernet(dmac, M7, ETH_P_IP, inner, vlan=VLAN)


def test_from_the_fabric(fastpath: Fastpath) -> None:
    for mode in Mode:
        t = make_tables(mode=mode)
        fastpath.load(t)
        delivered = 0
        for frame in fabric_frames(mode):
            got = agree(fastpath, t, "fabric_in", frame, FABRIC)
            assert got is not None
            delivered += got.kind == "TX"
        assert delivered >= 6, mode
        node_arp = build_arp(1, PEER_MAC, ip("192.168.0.2"), bytes(6), ip("192.168.0.1"))
        got = fastpath.run("fabric_in", eth(BROADCAST, PEER_MAC, node_arp, ETH_P_ARP), "fabric")
        assert got is not None and got.kind == "PASS"  # the kernel's own
        ssh = build_ipv4(ip("192.168.0.2"), ip("192.168.0.1"), PROTO_TCP, bytes(20))
        got = fastpath.run("fabric_in", eth(FAB_MAC, PEER_MAC, ssh), "fabric")
        assert got is not None and got.kind == "PASS"


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """Truncated, padded, tagged, multicast, or one header byte changed (the IPv4 checksum
    fixed half the time, so that what lies behind it is reached)."""
    f = bytearray(frame)
    k = rng.randrange(6)
    if k == 0:
        return bytes(f[: rng.randrange(14, len(f) + 1)])
    if k == 1:
        return bytes(f) + bytes(rng.randrange(1, 40))
    if k == 2:
        return bytes(f[:12] + b"\x81\x00\x00\x4d" + f[12:])
    if k == 3:
        f[0] |= 1
        return bytes(f)
    i = rng.randrange(12, min(len(f), 100))
    f[i] = rng.randrange(256)
    if k == 5 and f[12:14] == b"\x08\x00" and len(f) >= 34 and f[14] >> 4 == 4:
        hlen = (f[14] & 15) * 4
        if hlen >= 20 and len(f) >= 14 + hlen:
            f[24:26] = b"\0\0"
            f[24:26] = checksum(bytes(f[14 : 14 + hlen])).to_bytes(2, "big")
    return bytes(f)


def vm_frames() -> Iterator[bytes]:
    for dst in ("10.0.0.6", "10.0.0.7", "10.2.0.7"):
        yield eth(GW, M1, udp("10.0.0.5", dst, 1000, 2000))
    yield arp(1, "10.0.0.5", "10.0.0.6")
    yield ping("10.0.0.1")
    yield eth(M2, M1, udp("10.0.0.5", "10.0.0.6", 1000, 2000))
    yield eth(M7, M1, udp("10.0.0.5", "10.0.0.6", 1000, 2000))
    yield eth(GW, M1, tcp("10.0.0.5", "10.0.0.6", 0x12))


def test_mutated_frames_agree(fastpath: Fastpath) -> None:
    rng = random.Random(9)
    kinds: Counter[str] = Counter()
    for mode in Mode:
        for encap in (Encap.VXLAN, Encap.MPLSOGRE):
            t = make_tables(mode=mode, encap=encap, ttl=encap is Encap.MPLSOGRE)
            fastpath.load(t)
            for base in vm_frames():
                for _ in range(25):
                    got = agree(fastpath, t, "vif_in", mutate(rng, base), VM1)
                    kinds[got.kind if got else "refused"] += 1
            for base in fabric_frames(mode):
                for _ in range(10):
                    got = agree(fastpath, t, "fabric_in", mutate(rng, base), FABRIC)
                    kinds[got.kind if got else "refused"] += 1
    assert kinds["TX"] > 500 and kinds["DROP"] > 1000, kinds


# -- security groups and network ACLs ---------------------------------------------------------
_ACTIONS = {L.FlowActionKind.FORWARD: FlowAction.FORWARD, L.FlowActionKind.DROP: FlowAction.DROP}


def ported(proto: int, src: str, dst: str, sport: int, dport: int, frag: bool = False) -> bytes:
    """A TCP or UDP packet between two ports (a first fragment when `frag`)."""
    head = struct.pack("!HH", sport, dport)
    if proto == PROTO_TCP:
        body = head + struct.pack("!IIBBHHH", 1, 0, 0x50, 0x02, 1000, 0, 0) + b"data"
    else:
        body = head + struct.pack("!HH", 12, 0) + b"data"
    return build_ipv4(ip(src), ip(dst), proto, body, mf=frag)


def sg(proto: int, ports: tuple[int, int], cidr: str, ref: str) -> SgRule:
    return SgRule(proto, ports[0], ports[1], cidr, ref)


def acl_entry(number: int, proto: int, ports: tuple[int, int], cidr: str, allow: bool) -> AclEntry:
    return AclEntry(number, proto, ports[0], ports[1], cidr, allow)


ALL = (-1, -1)
VM1_SECURITY = PortSecurity(
    ingress=(),  # nothing may open a flow into VM1
    egress=(
        sg(PROTO_TCP, (80, 80), "10.0.0.6/32", "sg-a/sgr-web"),
        sg(PROTO_UDP, (1000, 2000), "10.0.0.0/24", "sg-a/sgr-udp"),
        sg(PROTO_ICMP, ALL, "0.0.0.0/0", "sg-a/sgr-icmp"),
        sg(PROTO_TCP, ALL, "10.1.0.0/16", "sg-a/sgr-remote"),
    ),
)
VM1_ACL = NetworkAclConfig(
    "acl-1",
    "10.0.0.0/24",
    ingress=(  # replies from 10.1.9.0/24 to ephemeral ports may not come back
        acl_entry(100, PROTO_TCP, (1024, 65535), "10.1.9.0/24", False),
        acl_entry(200, ANY, ALL, "0.0.0.0/0", True),
        acl_entry(32767, ANY, ALL, "0.0.0.0/0", False),
    ),
    egress=(  # deny before allow
        acl_entry(100, PROTO_TCP, (443, 443), "0.0.0.0/0", False),
        acl_entry(200, ANY, ALL, "0.0.0.0/0", True),
        acl_entry(32767, ANY, ALL, "0.0.0.0/0", False),
    ),
)
VM2_SECURITY = PortSecurity(
    ingress=(
        sg(PROTO_TCP, (80, 80), "10.0.0.5/32", "sg-b/sgr-web"),
        sg(PROTO_UDP, (1000, 1200), "10.0.0.0/24", "sg-b/sgr-udp"),
    ),
    egress=(sg(ANY, ALL, "0.0.0.0/0", "sg-b/sgr-all"),),
)


def ruled_tables() -> Tables:
    t = make_tables(policy=True)
    t.vifs[VM1].agent_decides = False
    t.vifs[VM1].security, t.vifs[VM1].acl = VM1_SECURITY, VM1_ACL
    t.vifs[VM2].security = VM2_SECURITY
    return t


def decided(
    fp: Fastpath, tables: Tables, prog: str, frame: bytes, vif: int
) -> tuple[Outcome | None, dict[FlowKey, tuple[FlowAction, str]]]:
    """Run `frame` through both (agree) on a fresh load; the flows the fast path made, with
    what decided them, must be Python's."""
    fp.load(tables)
    got = agree(fp, tables, prog, frame, vif)
    py = copy.deepcopy(tables)
    pipeline.process(py, frame, vif, 0.0)
    python = {k: (f.action, f.by) for k, f in py.flows.flows.items()}
    made = {}
    for raw, value in fp.obj.map(L.MAP_FLOWS).items():
        flow = L.Flow.unpack(value)
        made[decode_flow_key(raw)] = (
            _ACTIONS[L.FlowActionKind(flow.action)],
            fp.names.name(flow.by),
        )
    if got is not None and got.kind != "SLOW":
        assert made == python, (frame.hex(), made, python)
    return got, made


def test_rules_allow_and_deny_new_flows(fastpath: Fastpath) -> None:
    t = ruled_tables()
    fwd, deny = FlowAction.FORWARD, FlowAction.DROP
    cases = [  # (proto, destination, sport, dport): what decides, and how
        ((PROTO_TCP, "10.0.0.6", 4000, 80), fwd, "sg-a/sgr-web"),
        ((PROTO_UDP, "10.0.0.6", 1500, 1100), fwd, "sg-a/sgr-udp"),
        ((PROTO_UDP, "10.0.0.6", 1100, 1500), deny, "ingress: no security group rule"),
        ((PROTO_UDP, "10.0.0.6", 1, 2), deny, "egress: no security group rule"),
        ((PROTO_TCP, "10.1.2.3", 4000, 80), fwd, "sg-a/sgr-remote"),
        ((PROTO_TCP, "10.1.2.3", 4000, 443), deny, "acl-1/outbound/100"),  # deny before allow
        ((PROTO_TCP, "10.1.9.3", 4000, 80), deny, "acl-1/inbound/100/replies"),
        ((PROTO_TCP, "10.1.9.3", 1000, 80), fwd, "sg-a/sgr-remote"),  # a low source port
        ((PROTO_UDP, "10.1.2.3", 1500, 1500), deny, "egress: no security group rule"),
    ]
    for (proto, dst, sport, dport), action, by in cases:
        frame = eth(GW, M1, ported(proto, "10.0.0.5", dst, sport, dport))
        got, made = decided(fastpath, t, "vif_in", frame, VM1)
        key = (VRF, proto, ip("10.0.0.5"), ip(dst), sport, dport)
        assert got is not None and made[key] == (action, by), (dst, dport, made)
        if action is deny:
            assert DROP_NAMES[got.verdict.reason] == "flow_action_drop"
            assert len(made) == 1 and fastpath.made(VRF) == fastpath.made(L.FLOW_ROOM_ALL) == 1
        else:
            assert got.kind == "TX" and len(made) == 2 and fastpath.made(VRF) == 2
    # a first fragment has no ports: only unrestricted rules and entries match it
    frag = eth(GW, M1, ported(PROTO_TCP, "10.0.0.5", "10.1.2.3", 4000, 443, frag=True))
    got, made = decided(fastpath, t, "vif_in", frag, VM1)
    key = (VRF, PROTO_TCP, ip("10.0.0.5"), ip("10.1.2.3"), 0, 0)
    assert got is not None and got.kind == "TX" and made[key] == (fwd, "sg-a/sgr-remote")
    # from the fabric into VM1: the ACL lets it in, VM1's groups do not
    template = OuterTemplate(Encap.VXLAN, ip("192.168.0.2"), ip("192.168.0.1"), VNI)
    inner = eth(M1, M7, ported(PROTO_UDP, "10.1.2.3", "10.0.0.5", 1, 2))
    got, made = decided(
        fastpath, t, "fabric_in", eth(FAB_MAC, PEER_MAC, template.wrap(inner, 50000)), FABRIC
    )
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_action_drop"
    assert list(made.values()) == [(deny, "ingress: no security group rule")]


def test_a_denied_flow_is_a_drop_entry_until_it_ages(fastpath: Fastpath) -> None:
    t = ruled_tables()
    fastpath.load(t)
    frame = eth(GW, M1, ported(PROTO_UDP, "10.0.0.5", "10.0.0.6", 1, 2))
    for n in range(1, 4):
        got = agree(fastpath, t, "vif_in", frame, VM1)
        assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_action_drop"
        ((_, value),) = fastpath.obj.map(L.MAP_FLOWS).items()
        assert L.Flow.unpack(value).packets == n  # every packet counts on the entry
    assert fastpath.made(VRF) == 1
    # the other direction's allowed flow turns that DROP into its reverse, counters kept, as
    # FlowTable.install does (only the new entry counts against the room)
    t.vifs[VM1].security = PortSecurity(ingress=(sg(ANY, ALL, "0.0.0.0/0", "sg-a/sgr-in"),))
    back = eth(GW, M2, ported(PROTO_UDP, "10.0.0.6", "10.0.0.5", 2, 1))
    got, made = decided(fastpath, t, "vif_in", back, VM2)  # fresh maps: nothing to turn
    assert got is not None and got.kind == "TX" and len(made) == 2
    fastpath.load(t)
    denied = (VRF, PROTO_UDP, ip("10.0.0.5"), ip("10.0.0.6"), 1, 2)
    fastpath.obj.map(L.MAP_FLOWS).update(
        encode_flow_key(denied),
        L.Flow(5, 500, 1, L.ZERO4, L.ZERO4, 0, 0, L.FlowActionKind.DROP, 0, 1).pack(),
    )
    got = fastpath.run("vif_in", back, "vm2")
    assert got is not None and got.kind == "TX"
    raw = fastpath.obj.map(L.MAP_FLOWS).lookup(encode_flow_key(denied))
    assert raw is not None
    turned = L.Flow.unpack(raw)
    assert (turned.action, turned.packets) == (L.FlowActionKind.FORWARD, 5)
    assert fastpath.names.name(turned.by) == "sg-b/sgr-all"
    assert fastpath.made(VRF) == 1


def heavy_groups(source: str, admitted: int) -> tuple[SgRule, ...]:
    """Five groups of 60 ingress rules, as AWS allows a port: every one applies to `source`
    (its /32, its /24, everywhere) and none hides another; only the last admits TCP
    `admitted`."""
    rules: list[SgRule] = []
    for g in range(5):
        for k in range(60):
            n = g * 60 + k
            cidr = (f"{source}/32", "10.0.0.0/24", "0.0.0.0/0")[n % 3]
            proto = (PROTO_TCP, PROTO_UDP)[n % 2]
            port = (20000 if proto == PROTO_TCP else 30000) + n  # none covers another
            rules.append(sg(proto, (port, port), cidr, f"sg-h{g}/sgr-{k}"))
    rules[-2] = sg(PROTO_UDP, (admitted, admitted), "0.0.0.0/0", "sg-h4/sgr-udp")  # not TCP
    rules[-1] = sg(PROTO_TCP, (admitted, admitted), f"{source}/32", "sg-h4/sgr-last")
    return tuple(rules)


def test_a_port_with_five_full_groups_is_decided_here(fastpath: Fastpath) -> None:
    t = ruled_tables()
    t.vifs[VM2].security = PortSecurity(ingress=heavy_groups("10.0.0.5", 80))
    bound = L.MAX_RULES * L.MAX_RULE_CHUNKS
    assert bound >= 300
    # the last of 300 applicable rules, in the seventh chunk, admits it
    frame = eth(GW, M1, ported(PROTO_TCP, "10.0.0.5", "10.0.0.6", 4000, 80))
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and got.kind == "TX"
    key = (VRF, PROTO_TCP, ip("10.0.0.5"), ip("10.0.0.6"), 4000, 80)
    assert made[key] == (FlowAction.FORWARD, "sg-a/sgr-web")  # the sender's side names it
    # a TCP port none admits is denied after every chunk was walked
    frame = eth(GW, M1, ported(PROTO_TCP, "10.0.0.5", "10.0.0.6", 4000, 81))
    t.vifs[VM1].security = PortSecurity(egress=(sg(ANY, ALL, "0.0.0.0/0", "sg-a/sgr-all"),))
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_action_drop"
    assert list(made.values()) == [(FlowAction.DROP, "ingress: no security group rule")]
    # the chunks gone from the map (a set half written): up, never a guess
    fastpath.load(t)
    chunks = fastpath.obj.map(L.MAP_RULE_CHUNKS)
    gone = [k for k, _ in chunks.items()]
    assert gone
    for raw in gone:
        chunks.delete(raw)
    got = fastpath.run("vif_in", frame, "vm1")
    assert got is not None and got.kind == "SLOW" and got.verdict.reason == L.SlowReason.FLOW


def test_rules_beyond_what_the_map_holds_go_up(fastpath: Fastpath) -> None:
    t = ruled_tables()
    bound = L.MAX_RULES * L.MAX_RULE_CHUNKS
    many = tuple(
        sg(PROTO_TCP, (port, port), "10.0.0.5/32", f"sg-b/sgr-{port}")
        for port in range(40, 41 + bound)  # 80 among them
    )
    t.vifs[VM2].security = PortSecurity(ingress=many)
    frame = eth(GW, M1, ported(PROTO_TCP, "10.0.0.5", "10.0.0.6", 4000, 80))
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and got.kind == "SLOW" and got.verdict.reason == L.SlowReason.FLOW
    assert made == {}
    # one rule fewer fits: decided here, by the sender's rule
    t.vifs[VM2].security = PortSecurity(ingress=many[:bound])
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and got.kind == "TX"


def test_what_goes_to_the_gateway_is_not_filtered(fastpath: Fastpath) -> None:
    t = ruled_tables()
    t.vifs[VM1].security = PortSecurity()  # no egress rule at all
    frame = eth(GW, M1, ported(PROTO_UDP, "10.0.0.5", "10.0.0.1", 1, 9))
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "receive_unhandled"
    assert set(made.values()) == {(FlowAction.FORWARD, "")}
    frame = eth(GW, M1, ported(PROTO_UDP, "10.0.0.5", "10.0.0.6", 1, 9))
    got, made = decided(fastpath, t, "vif_in", frame, VM1)
    assert got is not None and DROP_NAMES[got.verdict.reason] == "flow_action_drop"
