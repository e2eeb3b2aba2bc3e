"""100,000 random and mutated frames into every kind of vif of a programmed vRouter.

Nothing may escape `process`, and every frame must be accounted for: it produced output, or
it was counted as a drop (charged to the vif it arrived on), or it is waiting (on a HOLD flow
or for an underlay neighbour), or it is an underlay ARP reply the vRouter learned from.
An agent stand-in answers flow misses and ages flows as the run goes, so released and
expired packets are exercised too.
"""

import random
import struct
from collections import Counter
from dataclasses import dataclass, field

import pytest
from vrouter_setup import (
    AGENT_VIF,
    FABRIC_VIF,
    GW1,
    NODES,
    VLAN,
    VM1,
    VM2,
    VM3,
    VM4,
    VNI,
    Node,
    Vm,
    arp_request_from,
    build_node,
    dhcp_discover,
    eth_ip,
    icmp_echo,
    mplsogre_frame,
    mplsoudp_frame,
    tcp_frame,
    udp_frame,
    underlay_arp,
    underlay_arp_reply,
    vlan_frame,
    vxlan_frame,
)

from openvpc.model.forwarding import VROUTER_MAC, Encap, FlowKey, Mode
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, build_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_LEN,
    ETH_P_ARP,
    ETH_P_IPV6,
    build_ethernet,
)
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4, ip_to_bytes
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, build_udp
from openvpc.vrouter import pipeline
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.limits import NodeLimits
from openvpc.vrouter.nexthop import (
    DISCARD_NH_ID,
    CompositeNH,
    EncapNH,
    L2ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.punt import AGENT_HDR_LEN, Punt, build_punt, parse_punt
from openvpc.vrouter.tables import LabelEntry, Route, Tables, Vif, VifKind, Vrf

FRAMES = 100_000
SEED = 20240611
MAX_FRAME = ETH_LEN + 1500
N1, N2 = NODES[1], NODES[2]
N3 = Node(3, ip_to_bytes("10.1.0.3"), bytes.fromhex("02000a010003"), 0)  # never answers ARP
L2_VRF, L2L3_VRF = 2, 3
L2_VNI, L2_LABEL, L2_VLAN = 200, 19, 200
VM5 = Vm(
    "vm5", 1, 5, bytes.fromhex("020000020005"), ip_to_bytes("10.2.0.5"), ip_to_bytes("10.2.0.1")
)
VM6 = Vm(
    "vm6", 1, 6, bytes.fromhex("020000030006"), ip_to_bytes("10.3.0.6"), ip_to_bytes("10.3.0.1")
)
REMOTE_L2_MAC = bytes.fromhex("020000020099")
GONE_VIF = 9  # a vif the agent unplugged while a next hop still points at it


def program() -> Tables:
    """Node 1 of vrouter_setup, plus every kind of next hop, an l2 and an l2_l3 VRF."""
    t = build_node(1, Encap.VXLAN, limits=NodeLimits(flow_capacity=512, vrf_flow_quota=400))
    t.vifs[VM1.vif].policy = True  # vm1's packets go through the flow table, vm2's do not
    # l3 VRF: one route per kind of next hop
    t.add_nexthop(31, TunnelNH(Encap.MPLSOUDP, N2.ip))
    t.add_nexthop(32, TunnelNH(Encap.MPLSOGRE, N2.ip))
    t.add_nexthop(33, TunnelNH(Encap.VLAN, N2.ip))
    t.add_nexthop(34, TunnelNH(Encap.VXLAN, N3.ip))
    t.add_nexthop(35, CompositeNH(True, ((22, VNI), (31, N2.label), (32, N2.label))))
    t.add_nexthop(36, ResolveNH())
    t.add_nexthop(37, CompositeNH(True, ()))
    for last, route in (
        (10, Route(31, N2.label)),
        (11, Route(32, N2.label)),
        (12, Route(33, VLAN)),
        (20, Route(34, VNI)),
        (21, Route(22)),  # a tunnel route without a label
    ):
        t.add_route(1, bytes([10, 0, 2, last]), 32, route)
    t.add_route(1, ip_to_bytes("10.0.3.0"), 24, Route(35))
    t.add_route(1, ip_to_bytes("10.0.4.0"), 24, Route(DISCARD_NH_ID))
    t.add_route(1, ip_to_bytes("10.0.5.0"), 24, Route(36))
    t.add_route(1, ip_to_bytes("10.0.6.0"), 24, Route(37))
    t.add_route(1, ip_to_bytes("10.0.7.0"), 24, Route(99))  # a next hop that does not exist
    # an l2 VRF: vm5, a remote MAC over VXLAN, the gateway MAC, flooding
    t.add_vrf(Vrf(L2_VRF, "vpc-l2", Mode.L2))
    t.add_vrf(Vrf(L2L3_VRF, "vpc-l2l3", Mode.L2_L3))
    for vm, vrf in ((VM5, L2_VRF), (VM6, L2L3_VRF)):
        t.add_vif(
            Vif(vm.vif, VifKind.VIRTUAL, f"tap-{vm.name}", vrf, vm.mac, vm.ip, 24, vm.gateway)
        )
        t.add_nexthop(vm.encap_nh, EncapNH(vm.vif, vm.mac, VROUTER_MAC))
        t.add_route(vrf, vm.ip, 32, Route(vm.encap_nh, mac=vm.mac))
        t.add_route(vrf, vm.gateway, 32, Route(2))
        t.add_mac_route(vrf, vm.mac, Route(vm.encap_nh))
    t.add_nexthop(41, L2ReceiveNH())
    t.add_nexthop(42, TunnelNH(Encap.VLAN, N2.ip))
    t.add_nexthop(43, CompositeNH(False, ((VM5.encap_nh, None), (22, L2_VNI), (42, L2_VLAN))))
    t.add_nexthop(44, CompositeNH(False, ((VM6.encap_nh, None),)))  # vm6 is alone
    t.add_nexthop(45, EncapNH(GONE_VIF, REMOTE_L2_MAC, VROUTER_MAC))
    t.add_mac_route(L2_VRF, REMOTE_L2_MAC, Route(22, L2_VNI))
    t.add_mac_route(L2_VRF, VROUTER_MAC, Route(41))
    t.add_mac_route(L2_VRF, BROADCAST, Route(43))
    t.add_mac_route(L2_VRF, bytes.fromhex("020000020098"), Route(45))
    t.add_route(L2_VRF, ip_to_bytes("10.2.0.9"), 32, Route(22, L2_VNI, REMOTE_L2_MAC))
    t.add_mac_route(L2L3_VRF, BROADCAST, Route(44))
    t.add_mac_route(L2L3_VRF, VROUTER_MAC, Route(41))
    t.add_label(L2_LABEL, LabelEntry(L2_VRF, l2=True))
    t.add_vni(L2_VNI, L2_VRF)
    t.add_vlan(L2_VLAN, L2_VRF)
    t.add_underlay_route(ip_to_bytes("0.0.0.0"), 0, ip_to_bytes("10.1.0.254"))
    return t


# -- seeds: valid frames of every kind ---------------------------------------------------
@dataclass(frozen=True)
class Seed:
    vif: int
    frame: bytes
    ip_at: tuple[int, ...] = ()  # where IPv4 headers start, to fix checksums after mutation


def vm_seeds(vm: Vm, peers: list[bytes]) -> list[Seed]:
    out = [Seed(vm.vif, arp_request_from(vm, p)) for p in [*peers, vm.ip, GW1]]
    reply = build_arp(ARP_REPLY, vm.mac, vm.ip, VROUTER_MAC, GW1)
    out.append(Seed(vm.vif, build_ethernet(VROUTER_MAC, vm.mac, ETH_P_ARP, reply)))
    out.append(Seed(vm.vif, arp_request_from(vm, ip_to_bytes("0.0.0.0"), ip_to_bytes("0.0.0.0"))))
    out.append(Seed(vm.vif, dhcp_discover(vm), (14,)))
    out.append(Seed(vm.vif, build_ethernet(BROADCAST, vm.mac, ETH_P_IPV6, bytes(40))))
    for dst in [*peers, GW1, ip_to_bytes("255.255.255.255"), ip_to_bytes("224.0.0.1")]:
        out.append(Seed(vm.vif, icmp_echo(vm, dst), (14,)))
        out.append(Seed(vm.vif, udp_frame(vm, dst, dport=53), (14,)))
        out.append(Seed(vm.vif, udp_frame(vm, dst, payload=bytes(1460), df=True), (14,)))
        out.append(Seed(vm.vif, udp_frame(vm, dst, payload=bytes(1460)), (14,)))
        for flags in (TCP_SYN, TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST):
            out.append(Seed(vm.vif, tcp_frame(vm, dst, 33000, 80, flags), (14,)))
        for proto in (PROTO_ICMP, PROTO_UDP, PROTO_TCP):  # fragments, and empty datagrams
            for mf, offset, size in ((True, 0, 8), (True, 1, 8), (False, 3, 0), (False, 0, 0)):
                packet = build_ipv4(vm.ip, dst, proto, bytes(size), mf=mf, frag_offset=offset)
                out.append(Seed(vm.vif, eth_ip(vm, packet), (14,)))
    for mac in (BROADCAST, REMOTE_L2_MAC, VROUTER_MAC, bytes.fromhex("020000020098")):
        out.append(Seed(vm.vif, build_ethernet(mac, vm.mac, 0x88B5, bytes(50))))
        packet = build_ipv4(vm.ip, peers[0], PROTO_UDP, build_udp(vm.ip, peers[0], 1, 2, b"x"))
        out.append(Seed(vm.vif, eth_ip(vm, packet, mac), (14,)))
    return out


def fabric_seeds() -> list[Seed]:
    out = []
    for vm in (VM1, VM2, VM5):
        reply = udp_frame(VM3, vm.ip)
        l2 = udp_frame(VM3, vm.ip, dst_mac=vm.mac)
        out += [
            Seed(FABRIC_VIF, vxlan_frame(N2, N1, VNI, reply), (14, 64)),
            Seed(FABRIC_VIF, vxlan_frame(N2, N1, L2_VNI, l2), (14, 64)),
            Seed(FABRIC_VIF, vxlan_frame(N2, N1, 7, reply), (14, 64)),
            Seed(FABRIC_VIF, mplsoudp_frame(N2, N1, N1.label, reply[ETH_LEN:]), (14, 46)),
            Seed(FABRIC_VIF, mplsoudp_frame(N2, N1, L2_LABEL, l2), (14, 46)),
            Seed(FABRIC_VIF, mplsogre_frame(N2, N1, N1.label, reply[ETH_LEN:]), (14, 42)),
            Seed(FABRIC_VIF, mplsogre_frame(N2, N1, L2_LABEL, l2), (14, 42)),
            Seed(FABRIC_VIF, vlan_frame(N2, N1, VLAN, reply[ETH_LEN:]), (18,)),
            Seed(FABRIC_VIF, vlan_frame(N2, N1, L2_VLAN, reply[ETH_LEN:]), (18,)),
        ]
    bcast = build_ethernet(BROADCAST, REMOTE_L2_MAC, ETH_P_ARP, bytes(28))
    out += [
        Seed(FABRIC_VIF, vxlan_frame(N2, N1, L2_VNI, bcast), (14,)),
        Seed(FABRIC_VIF, vxlan_frame(N2, N1, L2_VNI, udp_frame(VM3, GW1)), (14, 64)),
        Seed(FABRIC_VIF, underlay_arp(ARP_REQUEST, N2, N1.ip)),
        Seed(FABRIC_VIF, underlay_arp_reply(N2, N1)),
        Seed(FABRIC_VIF, underlay_arp(ARP_REQUEST, N2, N2.ip)),
        Seed(FABRIC_VIF, udp_frame(VM3, N1.ip, dst_mac=N1.mac), (14,)),
    ]
    return out


def agent_seeds() -> list[Seed]:
    frame = udp_frame(VM2, VM1.ip)
    return [
        Seed(AGENT_VIF, build_punt(Punt.INJECT, vif, 1, frame), (AGENT_HDR_LEN + 14,))
        for vif in (FABRIC_VIF, VM1.vif, VM5.vif, 77)
    ] + [Seed(AGENT_VIF, build_punt(Punt.ARP, VM1.vif, 1, frame))]


def all_seeds() -> list[Seed]:
    return [
        *vm_seeds(VM1, [VM2.ip, VM3.ip, VM4.ip, *(bytes([10, 0, i, 7]) for i in (3, 4, 5, 6, 7))]),
        *vm_seeds(VM2, [VM1.ip, ip_to_bytes("10.0.2.10"), ip_to_bytes("10.0.2.20")]),
        *vm_seeds(VM2, [bytes([10, 0, 2, i]) for i in (11, 12, 21)]),
        *vm_seeds(VM5, [ip_to_bytes("10.2.0.9"), VM5.gateway]),
        *vm_seeds(VM6, [ip_to_bytes("10.3.0.7"), VM6.gateway, VM1.ip]),
        *fabric_seeds(),
        *agent_seeds(),
    ]


# -- mutation ---------------------------------------------------------------------------
BYTES = (0x00, 0x01, 0x04, 0x06, 0x08, 0x11, 0x2F, 0x45, 0x7F, 0x80, 0xFF)
WORDS = (0x0000, 0x0800, 0x0806, 0x8100, 0x8847, 0x86DD, 4789, 6635, 51234, 67, 53, 0xFFFF)


def mutate_ipv4_field(rng: random.Random, data: bytearray, off: int) -> None:
    """Set one IPv4 header field to an edge value: what a parser or a next stage trips on."""
    if len(data) < off + 20:
        return
    field = rng.randrange(5)
    if field == 0:  # total length, sometimes with the frame cut to match
        total = rng.choice([0, 19, 20, 21, 27, 28, rng.randrange(len(data) - off + 8)])
        struct.pack_into("!H", data, off + 2, total)
        if rng.random() < 0.5:
            del data[off + total :]
    elif field == 1:  # flags and fragment offset
        value = rng.choice([0x2000, 0x4000, 0x0001, 0x2001, 0x1FFF, rng.randrange(0x10000)])
        struct.pack_into("!H", data, off + 6, value)
    elif field == 2:
        data[off + 9] = rng.choice([1, 6, 17, 47, 0, 255, rng.randrange(256)])
    elif field == 3:
        data[off + 8] = rng.choice([0, 1, 2, 255])
    else:  # header length, options included
        data[off] = 0x40 | rng.choice([0, 4, 5, 6, 15])


def mutate(rng: random.Random, seed: Seed, seeds: list[Seed]) -> bytes:
    data = bytearray(seed.frame)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(8)
        if kind == 7 and seed.ip_at:
            mutate_ipv4_field(rng, data, rng.choice(seed.ip_at))
            continue
        # most mutations land in the headers
        at = rng.randrange(min(len(data), 80)) if data and rng.random() < 0.8 else None
        if at is None and data:
            at = rng.randrange(len(data))
        if kind == 0 and at is not None:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and at is not None:
            data[at] = rng.choice(BYTES)
        elif kind == 2 and at is not None and at + 2 <= len(data):
            struct.pack_into("!H", data, at, rng.choice(WORDS))
        elif kind == 3:
            del data[rng.randrange(len(data) + 1) :]
        elif kind == 4:
            data += rng.randbytes(rng.randrange(64))
        elif kind == 5:
            other = rng.choice(seeds).frame
            data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif at is not None:
            data[at : at + 4] = rng.randbytes(4)
    if rng.random() < 0.75:  # keep IPv4 header checksums right, to get past the parsers
        for off in seed.ip_at:
            fix_ipv4_checksum(data, off)
    return bytes(data[:MAX_FRAME])


def fix_ipv4_checksum(data: bytearray, off: int) -> None:
    if len(data) < off + 20:
        return
    hlen = (data[off] & 0x0F) * 4
    if hlen < 20 or len(data) < off + hlen:
        return
    data[off + 10 : off + 12] = b"\x00\x00"
    struct.pack_into("!H", data, off + 10, checksum(data[off : off + hlen]))


def random_frame(rng: random.Random) -> tuple[int, bytes]:
    vif = rng.choice([FABRIC_VIF, AGENT_VIF, VM1.vif, VM2.vif, VM5.vif, VM6.vif, 99])
    return vif, rng.randbytes(rng.randrange(0, 120))


# -- the accounting -----------------------------------------------------------------------
@dataclass
class Ledger:
    sent: int = 0
    forwarded: int = 0  # produced at least one frame
    dropped: int = 0  # produced nothing, counted a drop
    queued: int = 0  # produced nothing, waits on a HOLD flow or for an underlay neighbour
    absorbed: int = 0  # an underlay ARP reply to us
    unexplained: list[tuple[int, str]] = field(default_factory=list)
    tx: Counter[int] = field(default_factory=Counter)
    rx: Counter[int] = field(default_factory=Counter)


def is_arp_reply_to(frame: bytes, ip: bytes) -> bool:
    """An oracle independent of the pipeline: an untagged ARP reply for IPv4 to `ip`."""
    if len(frame) < ETH_LEN + 28 or frame[12:14] != b"\x08\x06":
        return False
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, ETH_LEN)
    return (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2) and frame[38:42] == ip


def is_held(t: Tables, frame: bytes) -> bool:
    return any(f is frame for flow in t.flows.flows.values() for f, _ in flow.held)


def pending(t: Tables) -> int:
    return sum(len(q) for q in t.pending.values())


def check_outputs(t: Tables, out: list[pipeline.Emit], ledger: Ledger) -> None:
    for vif, data in out:
        assert vif in t.vifs, f"output to a vif that does not exist: {vif}"
        assert len(data) >= ETH_LEN
        ledger.tx[vif] += 1
        if vif == AGENT_VIF:
            header, inner = parse_punt(data)
            assert header.reason in set(Punt) and len(inner) >= ETH_LEN
        elif vif == FABRIC_VIF:
            # everything the fabric carries fits its MTU (a VLAN tag is extra)
            assert len(data) <= ETH_LEN + 4 + t.fabric.mtu, len(data)


def account(t: Tables, vif: int, frame: bytes, now: float, ledger: Ledger) -> None:
    ledger.sent += 1
    ledger.rx[vif] += 1
    drops_before = t.drops.total()
    vif_drops_before = t.vifs[vif].stats.drops if vif in t.vifs else 0
    pending_before = pending(t)
    try:
        out = pipeline.process(t, frame, vif, now)
    except Exception as e:
        pytest.fail(f"{type(e).__name__}: {e} from vif {vif} frame {frame.hex()}")
    check_outputs(t, out, ledger)
    dropped = t.drops.total() - drops_before
    if vif in t.vifs:  # every drop is charged to the vif the frame came in on
        assert t.vifs[vif].stats.drops - vif_drops_before == dropped
    if out:
        ledger.forwarded += 1
    elif dropped:
        ledger.dropped += 1
    elif pending(t) > pending_before or is_held(t, frame):
        ledger.queued += 1
    elif vif == FABRIC_VIF and is_arp_reply_to(frame, t.fabric.ip):
        ledger.absorbed += 1
    else:
        ledger.unexplained.append((vif, frame.hex()))


def agent_pass(t: Tables, rng: random.Random, now: float, ledger: Ledger) -> None:
    """The agent: decide on HOLD flows (forward, drop or NAT), age, forget a neighbour."""
    for key, flow in list(t.flows.flows.items()):
        if flow.action is not FlowAction.HOLD or rng.random() < 0.2:
            continue
        vrf, proto, src, dst, sport, dport = key
        reverse: FlowKey = (vrf, proto, dst, src, dport, sport)
        action = rng.choice([FlowAction.FORWARD, FlowAction.FORWARD, FlowAction.DROP])
        nat = None
        if rng.random() < 0.2:
            action, nat = FlowAction.NAT, (src, dst, (sport + 1) & 0xFFFF, dport)
        out = pipeline.install_flow(t, key, action, now, reverse=reverse, nat=nat)
        check_outputs(t, out, ledger)
    t.expire(now)
    if rng.random() < 0.3:
        t.neighbors.pop(N2.ip, None)  # the underlay neighbour expired: ARP again


def check_shares(t: Tables) -> None:
    """The flow table's books: entries per VRF within quota, HOLD entries per source within
    the limit, and both counts equal to what the table holds."""
    ft = t.flows
    per_vrf: Counter[int] = Counter(key[0] for key in ft.flows)
    holds: Counter[tuple[int, int]] = Counter(
        f.source for f in ft.flows.values() if f.source is not None
    )
    assert ft.per_vrf == dict(per_vrf)
    assert ft.holds == dict(holds)
    assert all(f.action is FlowAction.HOLD for f in ft.flows.values() if f.source is not None)
    assert ft.vrf_quota is not None and max(per_vrf.values(), default=0) <= ft.vrf_quota
    assert ft.hold_limit is not None and max(holds.values(), default=0) <= ft.hold_limit


def test_fuzz_the_pipeline() -> None:
    rng = random.Random(SEED)
    t = program()
    seeds = all_seeds()
    ledger = Ledger()
    now = 0.0
    for i in range(FRAMES):
        r = rng.random()
        if r < 0.05:
            vif, frame = random_frame(rng)
        else:
            seed = rng.choice(seeds)
            frame = seed.frame if r < 0.2 else mutate(rng, seed, seeds)
            vif = seed.vif if rng.random() < 0.95 else rng.choice(list(t.vifs))
        now += 0.005
        account(t, vif, frame, now, ledger)
        if i % 250 == 249:
            agent_pass(t, rng, now, ledger)
            check_shares(t)

    assert not ledger.unexplained[:5], f"{len(ledger.unexplained)} frames vanished"
    assert (
        ledger.forwarded + ledger.dropped + ledger.queued + ledger.absorbed == ledger.sent == FRAMES
    )
    # the counters agree with what we saw
    for vif_id, port in t.vifs.items():
        assert port.stats.rx_packets == ledger.rx[vif_id]
        assert port.stats.tx_packets == ledger.tx[vif_id]
    assert t.drops[Drop.INVALID_VIF] >= ledger.rx[99] > 0
    # the run went everywhere it should have
    assert min(ledger.forwarded, ledger.dropped, ledger.queued, ledger.absorbed) > 0
    assert len([r for r, n in t.drops.items() if n]) >= 30, sorted(t.drops)
