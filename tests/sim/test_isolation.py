"""Tenant isolation: two tenants with the same CIDRs, IP addresses and MAC addresses on the
same vRouters never see each other's frames, whatever the topology, encapsulation, mode and
traffic. Every frame a VM sends carries its tenant's tag; no inbox may hold the other's."""

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simkit import ip

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab, Underlay
from openvpc.model.forwarding import VROUTER_MAC, ArpMode, Encap, Mode
from openvpc.packet.arp import ARP_REPLY, build_arp
from openvpc.packet.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import ICMP_ECHO_REQUEST, TCP_SYN, build_icmp, build_tcp, build_udp

TENANTS = ("red", "blue")
TAG = {"red": b"<<tenant:red>>", "blue": b"<<tenant:blue>>"}
CIDRS = ["10.0.0.0/24", "10.0.1.0/24"]
# VM slot i has the same address and MAC in both tenants: collisions by construction
SLOTS = [(f"10.0.{i % 2}.{10 + i}", f"02:00:00:00:00:{10 + i:02x}") for i in range(4)]
SLOT_MACS = [bytes.fromhex(m.replace(":", "")) for _, m in SLOTS]
ADDRESSES = [ip(a) for a, _ in SLOTS] * 4 + [  # mostly VMs (of one tenant, or both)
    ip(a) for a in ("10.0.0.1", "10.0.1.1", "169.254.0.1", "10.0.0.99", "10.0.0.255")
]
ADDRESSES += [ip("255.255.255.255"), ip("224.0.0.251"), ip("192.168.0.11"), ip("172.16.2.11")]
MACS = [*SLOT_MACS, VROUTER_MAC, BROADCAST, bytes.fromhex("01005e0000fb"), b"\x02\xfa\0\0\0\x02"]
ETHERTYPES = [ETH_P_IP, ETH_P_ARP, 0x88B5, 0x86DD, 0x8847, 0x8100]
KINDS = ["ping", "udp", "tcp"] * 3 + [
    *("arp", "ip_broadcast", "l2_broadcast", "raw", "raw_ip", "reply"),
]


@dataclass
class TenantPlan:
    encap: Encap
    mode: Mode
    gateway_node: str | None
    arp_mode: ArpMode
    link_local: bool
    decrement_ttl: bool
    placement: list[str]  # node of VM slot i
    policy: list[bool]


@dataclass
class Action:
    tenant: str
    vm: int  # index into that tenant's VMs (modulo their number)
    kind: str
    address: bytes
    mac: bytes
    ethertype: int
    port: int


@dataclass
class Scenario:
    nodes: int
    underlay: Underlay
    plans: dict[str, TenantPlan]
    actions: list[Action] = field(default_factory=list)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    nodes = draw(st.integers(2, 4))
    underlay: Underlay = draw(st.sampled_from(["l2", "l3"]))
    names = [f"node{i + 1}" for i in range(nodes)]
    encaps = [Encap.VXLAN, Encap.MPLSOUDP, Encap.MPLSOGRE]
    if underlay == "l2":
        encaps.append(Encap.VLAN)
    plans = {}
    for tenant in TENANTS:
        count = draw(st.integers(1, 4) | st.integers(2, 4))  # peers more often than not
        plans[tenant] = TenantPlan(
            encap=draw(st.sampled_from(encaps)),
            mode=draw(st.sampled_from(list(Mode))),
            gateway_node=draw(st.none() | st.sampled_from(names)),
            arp_mode=draw(st.sampled_from(list(ArpMode))),
            link_local=draw(st.booleans()),
            decrement_ttl=draw(st.booleans()),
            placement=draw(st.lists(st.sampled_from(names), min_size=count, max_size=count)),
            policy=draw(st.lists(st.booleans(), min_size=count, max_size=count)),
        )
    action = st.builds(
        Action,
        tenant=st.sampled_from(TENANTS),
        vm=st.integers(0, 3),
        kind=st.sampled_from(KINDS),
        address=st.sampled_from(ADDRESSES),
        mac=st.sampled_from(MACS),
        ethertype=st.sampled_from(ETHERTYPES),
        port=st.integers(1, 65535),
    )
    actions = draw(st.lists(action, min_size=1, max_size=14))
    return Scenario(nodes, underlay, plans, actions)


def build(s: Scenario) -> tuple[SimLab, dict[str, list[VmEndpoint]]]:
    lab = SimLab(s.nodes, s.underlay)
    vms: dict[str, list[VmEndpoint]] = {}
    for tenant, plan in s.plans.items():
        vpc = lab.add_vpc(
            tenant,
            "vpc",
            CIDRS,
            mode=plan.mode,
            encap=plan.encap,
            gateway_node=plan.gateway_node,
            arp_mode=plan.arp_mode,
            link_local=plan.link_local,
            decrement_ttl=plan.decrement_ttl,
        )
        vms[tenant] = [
            lab.add_vm(vpc, f"{tenant}{i}", node, SLOTS[i][0], SLOTS[i][1], policy)
            for i, (node, policy) in enumerate(zip(plan.placement, plan.policy, strict=True))
        ]
    lab.build()
    return lab, vms


def send(vm: VmEndpoint, a: Action, tag: bytes) -> None:
    """Queue one tagged frame (or datagram) of kind `a.kind` on `vm`."""
    dst = a.address
    if a.kind == "ping":
        vm.send_ip(dst, PROTO_ICMP, build_icmp(ICMP_ECHO_REQUEST, 0, b"\x00\x01\x00\x01", tag))
    elif a.kind == "udp":
        vm.send_ip(dst, PROTO_UDP, build_udp(vm.ip, dst, a.port, 4000, tag))
    elif a.kind == "tcp":
        vm.listening.add(4000)
        segment = build_tcp(vm.ip, dst, a.port, 4000, TCP_SYN, seq=1, payload=tag)
        vm.send_ip(dst, PROTO_TCP, segment)
    elif a.kind == "arp":  # the tag rides in the Ethernet padding
        vm.send_frame(vm.arp_request(dst) + tag)
    elif a.kind == "reply":  # an unsolicited ARP reply, to any MAC
        body = build_arp(ARP_REPLY, vm.mac, vm.ip, a.mac, dst)
        vm.send_frame(build_ethernet(a.mac, vm.mac, ETH_P_ARP, body + tag))
    elif a.kind == "ip_broadcast":
        udp = build_udp(vm.ip, dst, a.port, 4000, tag)
        vm.send_frame(build_ethernet(BROADCAST, vm.mac, ETH_P_IP, build_ipv4(vm.ip, dst, 17, udp)))
    elif a.kind == "l2_broadcast":
        vm.send_frame(build_ethernet(BROADCAST, vm.mac, a.ethertype, tag * 3))
    elif a.kind == "raw_ip":  # any IP destination behind any MAC
        udp = build_udp(vm.ip, dst, a.port, 4000, tag)
        vm.send_frame(build_ethernet(a.mac, vm.mac, ETH_P_IP, build_ipv4(vm.ip, dst, 17, udp)))
    else:  # any ethertype to any MAC: malformed on purpose when the type says IP or ARP
        vm.send_frame(build_ethernet(a.mac, vm.mac, a.ethertype, tag * 2))


def assert_isolated(vms: dict[str, list[VmEndpoint]]) -> None:
    for tenant, mine in vms.items():
        foreign = [TAG[t] for t in TENANTS if t != tenant]
        for vm in mine:
            for frame in vm.inbox:
                for tag in foreign:
                    assert tag not in frame, f"{vm.name} ({tenant}) received {frame.hex()}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_tenants_never_see_each_other(s: Scenario) -> None:
    lab, vms = build(s)
    for a in s.actions:
        mine = vms[a.tenant]
        send(mine[a.vm % len(mine)], a, TAG[a.tenant])
        lab.run()
    assert_isolated(vms)
    # and the same again with everything in flight at once
    for a in s.actions:
        mine = vms[a.tenant]
        send(mine[a.vm % len(mine)], a, TAG[a.tenant])
    lab.run()
    assert_isolated(vms)


# -- the deterministic counterpart: isolation is not bought by dropping everything ----------
@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize(
    ("underlay", "red", "blue"),
    [
        ("l2", Encap.VLAN, Encap.VLAN),
        ("l2", Encap.VXLAN, Encap.VLAN),
        ("l2", Encap.MPLSOGRE, Encap.MPLSOUDP),
        ("l3", Encap.MPLSOUDP, Encap.MPLSOUDP),
        ("l3", Encap.VXLAN, Encap.VXLAN),
        ("l3", Encap.MPLSOGRE, Encap.VXLAN),
    ],
)
def test_colliding_tenants_each_reach_their_own_vms(
    underlay: Underlay, red: Encap, blue: Encap, mode: Mode
) -> None:
    placement = ["node1", "node2", "node3", "node1"]
    plans = {
        tenant: TenantPlan(encap, mode, None, ArpMode.PROXY, False, False, placement, [False] * 4)
        for tenant, encap in (("red", red), ("blue", blue))
    }
    lab, vms = build(Scenario(3, underlay, plans))
    everyone = [vm for mine in vms.values() for vm in mine]
    for _ in range(2):  # the first round resolves neighbours, the second must be clean
        for vm in everyone:
            vm.inbox.clear()
            vm.received.clear()
        for tenant in TENANTS:
            src = vms[tenant][0]
            for dst in vms[tenant][1:]:
                icmp = build_icmp(ICMP_ECHO_REQUEST, 0, b"\0\1\0\1", TAG[tenant])
                src.send_ip(dst.ip, PROTO_ICMP, icmp)
            src.send_frame(build_ethernet(BROADCAST, src.mac, 0x88B5, TAG[tenant]))
        lab.run()
        assert_isolated(vms)
    for tenant in TENANTS:
        replies = vms[tenant][0].got("echo_reply")
        assert len(replies) == 3
        assert all(TAG[tenant] in r.frame for r in replies)
        for dst in vms[tenant][1:]:
            flooded = [f for f in dst.inbox if f[12:14] == b"\x88\xb5"]
            assert len(flooded) == (0 if mode is Mode.L3 else 1), dst.name
            assert all(TAG[tenant] in f for f in flooded)
