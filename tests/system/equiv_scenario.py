"""The equivalence test's node: hand-written NodeConfig objects covering every mode, encap and
next-hop kind, the Tables built from them, and what the frame generator needs to know."""

import dataclasses
from dataclasses import dataclass, field

from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, FlowKey
from openvpc.model.nodeconfig import (
    MacRouteConfig,
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
)
from openvpc.model.rules import ANY, AclEntry, NetworkAclConfig, PortSecurity, SgRule
from openvpc.packet.ethernet import BROADCAST
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, ip_to_bytes
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.limits import NodeLimits
from openvpc.vrouter.pipeline import install_flow
from openvpc.vrouter.program import Programmer, build_tables
from openvpc.vrouter.tables import Fabric, Tables

FABRIC_IP = ip_to_bytes("192.168.0.10")
FABRIC_MAC = bytes.fromhex("02fa00000010")
FABRIC_MTU = 1500
# remote nodes by encap: (fabric address, MAC on the underlay); the last has no neighbour
REMOTES = {
    "mplsogre": ("192.168.0.11", "02fa00000011"),
    "mplsoudp": ("192.168.0.12", "02fa00000012"),
    "vxlan": ("192.168.0.13", "02fa00000013"),
    "vlan": ("192.168.0.14", "02fa00000014"),
}
UNRESOLVED_NODE = "192.168.0.15"
ENCAPS = ("mplsogre", "mplsoudp", "vxlan", "vlan")
NOW = 1000.0

# (id, mode, encap, vlan, arp_mode, link_local_gateway, decrement_ttl)
VRF_SPECS = (
    (1, "l3", "mplsogre", 101, "proxy", False, False),
    (2, "l3", "vxlan", 102, "single_mac", True, True),
    (3, "l2", "vxlan", 103, "proxy", False, False),
    (4, "l2", "mplsoudp", None, "proxy", False, True),
    (5, "l2_l3", "vlan", 105, "single_mac", False, False),
    (6, "l2_l3", "mplsoudp", 106, "proxy", True, False),
)


def l3_label(vrf: int) -> int:
    return 16 + 2 * vrf


def l2_label(vrf: int) -> int:
    return 17 + 2 * vrf


def vni(vrf: int) -> int:
    return 5000 + vrf


def remote_label(vrf: int, encap: str, l2: bool = False) -> int:
    """The label/VNI/VLAN a remote node gave this VRF (below 4095: it may be a VLAN id)."""
    return 1000 + vrf * 20 + ENCAPS.index(encap) + (10 if l2 else 0)


@dataclass(frozen=True)
class Vm:
    vif: int
    vrf: int
    ip: bytes
    mac: bytes
    gateway: bytes
    prefix_len: int = 24
    mtu: int = 1500
    policy: bool = False
    agent_decides: bool = True  # with policy: else the vRouter makes its flows
    source_check: bool = True
    allowed_ips: tuple[bytes, ...] = ()
    attached: bool = True
    security: PortSecurity | None = None  # its security groups' rules (RULES)
    acl: NetworkAclConfig | None = None  # its subnet's network ACL
    # remote addresses whose new flows to or from it have more applicable rules than the fast
    # path holds (they go up)
    overflow: frozenset[bytes] = frozenset()

    @property
    def ruled(self) -> bool:
        return self.security is not None or self.acl is not None


@dataclass(frozen=True)
class Target:
    """A destination the generator aims at: an address (routed) or a MAC (bridged)."""

    kind: str  # the class suffix: local, gre, udp, vxlan, vlan, ecmp, ecmp_big, ...
    vrf: int
    ip: bytes | None = None
    mac: bytes | None = None
    vm: Vm | None = None  # a local VM behind it
    fast: bool = False  # the fast path must handle unicast to it (when no flow is needed)


@dataclass
class Scenario:
    programmer: Programmer
    vms: list[Vm]
    targets: list[Target]
    flows: list[tuple[FlowKey, FlowAction]] = field(default_factory=list)

    @property
    def tables(self) -> Tables:
        return self.programmer.tables

    def vm(self, vif: int) -> Vm:
        return next(v for v in self.vms if v.vif == vif)


def _ip(text: str) -> bytes:
    return ip_to_bytes(text)


def _mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _vms() -> list[Vm]:
    vms: list[Vm] = []
    for vrf, *_ in VRF_SPECS:
        gw = _ip(f"10.{vrf}.1.1")
        first = Vm(2 * vrf, vrf, _ip(f"10.{vrf}.1.5"), bytes([2, 0, 0, 0, vrf, 5]), gw)
        second = Vm(2 * vrf + 1, vrf, _ip(f"10.{vrf}.1.6"), bytes([2, 0, 0, 0, vrf, 6]), gw)
        # the policy VMs of odd VRFs have their flows decided by the vRouter, fast path included
        vms.append(dataclasses.replace(first, policy=True, agent_decides=vrf % 2 == 0))
        vms.append(second)
    # variations: source check off, a VIP, a small MTU, another subnet, a vif not attached
    vms[1] = dataclasses.replace(vms[1], source_check=False)
    vms[2] = dataclasses.replace(vms[2], allowed_ips=(_ip("10.2.1.100"), _ip("10.2.1.101")))
    vms[5] = dataclasses.replace(vms[5], mtu=1400)
    vms.append(Vm(14, 1, _ip("10.1.2.5"), bytes.fromhex("02000000010e"), _ip("10.1.2.1")))
    vms.append(
        Vm(15, 1, _ip("10.1.1.9"), bytes.fromhex("02000000010f"), _ip("10.1.1.1"), attached=False)
    )
    # rules on the vRouter-decided VMs of VRFs 1 and 5 and on their neighbours
    vms[0] = dataclasses.replace(vms[0], security=WEB, acl=ACL_1)
    vms[1] = dataclasses.replace(vms[1], security=DB, acl=ACL_1)
    vms[8] = dataclasses.replace(vms[8], security=CROWDED, overflow=frozenset({_ip("10.5.1.7")}))
    vms[9] = dataclasses.replace(vms[9], security=PortSecurity(egress=EVERYWHERE))
    # a third VM of VRF 5, to whose flows into vms[8] more rules apply than the fast path holds
    vms.append(Vm(16, 5, _ip("10.5.1.7"), bytes.fromhex("020000000507"), _ip("10.5.1.1")))
    return vms


def _sg(proto: int, ports: tuple[int, int], cidr: str, ref: str) -> SgRule:
    return SgRule(proto, ports[0], ports[1], cidr, ref)


_ALL = (-1, -1)
EVERYWHERE = (_sg(ANY, _ALL, "0.0.0.0/0", "sg-all/sgr-out"),)
# VRF 1: the web VM (10.1.1.5) and the database VM (10.1.1.6); the db group's members are
# 10.1.1.6 and 10.1.2.5, expanded to /32s as a referenced group is
WEB = PortSecurity(
    ingress=(
        _sg(PROTO_TCP, (80, 80), "10.1.3.0/24", "sg-web/sgr-http"),
        _sg(PROTO_TCP, (8080, 8080), "10.1.3.12/32", "sg-web/sgr-alt"),
        _sg(PROTO_UDP, _ALL, "10.1.0.0/16", "sg-web/sgr-udp"),
        _sg(PROTO_ICMP, _ALL, "0.0.0.0/0", "sg-web/sgr-icmp"),
    ),
    egress=(
        _sg(PROTO_TCP, (80, 80), "10.1.1.6/32", "sg-web/sgr-db1"),
        _sg(PROTO_TCP, (80, 80), "10.1.2.5/32", "sg-web/sgr-db2"),
        _sg(PROTO_TCP, (440, 450), "10.1.0.0/16", "sg-web/sgr-tls"),
        _sg(PROTO_UDP, (53, 53), "10.1.3.0/24", "sg-web/sgr-dns"),
        _sg(PROTO_UDP, (5001, 9999), "0.0.0.0/0", "sg-web/sgr-hi"),
        _sg(PROTO_TCP, (22, 22), "10.1.3.11/32", "sg-web/sgr-ssh"),
    ),
)
DB = PortSecurity(
    ingress=(_sg(PROTO_TCP, (80, 80), "10.1.1.5/32", "sg-db/sgr-web"),),
    egress=EVERYWHERE,
)
ACL_1 = NetworkAclConfig(
    "acl-1",
    "10.1.1.0/24",
    ingress=(
        AclEntry(100, PROTO_UDP, -1, -1, "10.1.3.13/32", False),
        AclEntry(110, PROTO_TCP, 32768, 65535, "10.1.3.14/32", False),  # no replies from .14
        AclEntry(200, ANY, -1, -1, "0.0.0.0/0", True),
        AclEntry(32767, ANY, -1, -1, "0.0.0.0/0", False),
    ),
    egress=(
        AclEntry(90, PROTO_TCP, 443, 443, "10.1.3.12/32", False),  # deny before allow
        AclEntry(95, PROTO_TCP, 1024, 65535, "10.1.3.11/32", False),  # ephemeral ports out
        AclEntry(100, ANY, -1, -1, "0.0.0.0/0", True),
        AclEntry(32767, ANY, -1, -1, "0.0.0.0/0", False),
    ),
)
# VRF 5: a port as crowded as AWS allows (more rules than five groups of 60 apply to one
# neighbour, 10.5.1.6: the fast path still decides, down to its last chunk), and more than
# the fast path holds for another, 10.5.1.7 (those go up)
CROWDED = PortSecurity(
    ingress=(
        *(_sg(PROTO_TCP, (p, p), "10.5.1.0/24", f"sg-net/sgr-{p}") for p in range(7100, 7350)),
        *(_sg(PROTO_TCP, (p, p), "10.5.1.6/32", f"sg-many/sgr-{p}") for p in range(7000, 7060)),
        *(_sg(PROTO_TCP, (p, p), "10.5.1.7/32", f"sg-more/sgr-{p}") for p in range(7000, 7090)),
        _sg(PROTO_TCP, (80, 80), "0.0.0.0/0", "sg-many/sgr-http"),
        _sg(PROTO_UDP, _ALL, "10.5.0.0/16", "sg-many/sgr-udp"),
    ),
    egress=EVERYWHERE,
)


def _port(vm: Vm) -> PortConfig:
    return PortConfig(
        vif=vm.vif,
        interface_id=f"eni-{vm.vif}",
        instance_id=f"i-{vm.vif}",
        name=f"vm{vm.vif}",
        netns=f"equiv-vm{vm.vif}",
        ifname="eth0",
        vrf=vm.vrf,
        mac=_mac_str(vm.mac),
        ip=".".join(str(b) for b in vm.ip),
        prefix_len=vm.prefix_len,
        gateway=".".join(str(b) for b in vm.gateway),
        dns="10.0.0.2",
        domain="ec2.internal",
        hostname=f"vm{vm.vif}",
        mtu=vm.mtu,
        policy=vm.policy,
        agent_decides=vm.agent_decides,
        source_check=vm.source_check,
        allowed_ips=tuple(".".join(str(b) for b in a) for a in vm.allowed_ips),
        security_groups=vm.security,
        network_acl=vm.acl,
    )


def build(limits: NodeLimits) -> Scenario:
    """The tables (with the flows installed) and the generator's view of them."""
    vms = _vms()
    objs: list[VrouterObject] = []
    targets: list[Target] = []
    for vrf, mode, encap, vlan, arp_mode, link_local, ttl in VRF_SPECS:
        objs.append(
            VrfConfig(
                vrf,
                f"vrf{vrf}",
                mode,  # type: ignore[arg-type]
                encap,  # type: ignore[arg-type]
                vni(vrf),
                vlan,
                l3_label(vrf),
                l2_label(vrf),
                arp_mode=arp_mode,  # type: ignore[arg-type]
                link_local_gateway=link_local,
                decrement_ttl=ttl,
            )
        )
    objs += [
        NextHopConfig("receive", "receive"),
        NextHopConfig("l2receive", "l2receive"),
        NextHopConfig("discard", "discard"),
        NextHopConfig("resolve", "resolve"),
        NextHopConfig("encap:99", "encap", vif=99, dst_mac="02:00:00:00:00:99"),  # no such vif
    ]
    for e in ENCAPS:
        objs.append(NextHopConfig(f"t:{e}", "tunnel", encap=e, dst_ip=REMOTES[e][0]))  # type: ignore[arg-type]
    objs.append(NextHopConfig("t:unresolved", "tunnel", encap="vlan", dst_ip=UNRESOLVED_NODE))
    for vm in vms:
        objs.append(NextHopConfig(f"encap:{vm.vif}", "encap", vif=vm.vif, dst_mac=_mac_str(vm.mac)))
    for vrf, mode, _encap, _vlan, _arp, link_local, _ttl in VRF_SPECS:
        objs += _vrf_routes(vrf, mode, link_local, vms, targets)
    objs += [_port(vm) for vm in vms]
    # ports come after next hops, routes after ports: the agent's write order
    order = {"VrfConfig": 0, "NextHopConfig": 1, "PortConfig": 2, "RouteConfig": 3}
    objs.sort(key=lambda o: order.get(type(o).__name__, 4))
    fabric = Fabric(0, FABRIC_IP, FABRIC_MAC, FABRIC_MTU, kernel_routed=True)
    programmer = build_tables(fabric, objs, limits=limits)
    tables = programmer.tables
    tables.add_underlay_route(_ip("192.168.0.0"), 24, None)
    for ip, mac in REMOTES.values():
        tables.add_neighbor(_ip(ip), bytes.fromhex(mac))
    scenario = Scenario(programmer, vms, targets)
    _install_flows(scenario)
    return scenario


def _vrf_routes(
    vrf: int, mode: str, link_local: bool, vms: list[Vm], targets: list[Target]
) -> list[VrouterObject]:
    objs: list[VrouterObject] = []
    local = [vm for vm in vms if vm.vrf == vrf]
    routed = mode != "l2"

    def route(prefix: str, nh: str, label: int | None = None, mac: str | None = None) -> None:
        objs.append(RouteConfig(vrf, prefix, nh, label=label, mac=mac))

    def mac_route(mac: bytes, nh: str, label: int | None = None) -> None:
        objs.append(MacRouteConfig(vrf, _mac_str(mac), nh, label=label))

    if routed:
        route(f"10.{vrf}.1.1/32", "receive")
        if vrf == 1:
            route("10.1.2.1/32", "receive")
        if link_local:
            route(".".join(str(b) for b in LINK_LOCAL_GATEWAY) + "/32", "receive")
    for vm in local:
        dotted = ".".join(str(b) for b in vm.ip)
        if routed:
            route(f"{dotted}/32", f"encap:{vm.vif}", mac=_mac_str(vm.mac))
        targets.append(Target("local", vrf, vm.ip, vm.mac, vm, fast=vm.attached))
        if mode != "l3":
            mac_route(vm.mac, f"encap:{vm.vif}")
    for e in ENCAPS:
        ip = _ip(f"10.{vrf}.3.{11 + ENCAPS.index(e)}")
        mac = bytes([2, 0xEE, 0, vrf, 3, 11 + ENCAPS.index(e)])
        if routed:
            route(f"10.{vrf}.3.{11 + ENCAPS.index(e)}/32", f"t:{e}", remote_label(vrf, e), None)
        if mode != "l3":
            mac_route(mac, f"t:{e}", remote_label(vrf, e, l2=True))
        targets.append(Target(e, vrf, ip if routed else None, mac, fast=True))
    unresolved = bytes([2, 0xEE, 0, vrf, 3, 15])
    if routed:
        route(f"10.{vrf}.3.15/32", "t:unresolved", remote_label(vrf, "vlan"))
    if mode != "l3":
        mac_route(unresolved, "t:unresolved", remote_label(vrf, "vlan", l2=True))
    targets.append(Target("unresolved", vrf, _ip(f"10.{vrf}.3.15") if routed else None, unresolved))
    # composites: ECMP over every encap and a local VM, a too-big ECMP, a replication list
    members: list[tuple[str, int | None]] = [
        (f"t:{e}", remote_label(vrf, e, l2=not routed)) for e in ENCAPS
    ]
    members.append((f"encap:{local[1].vif}", None))
    objs.append(NextHopConfig(f"ecmp:{vrf}", "composite", ecmp=True, members=tuple(members)))
    big = tuple((f"t:{ENCAPS[i % 3]}", 2000 + i) for i in range(17))
    objs.append(NextHopConfig(f"ecmp_big:{vrf}", "composite", ecmp=True, members=big))
    flood = [(f"encap:{vm.vif}", None) for vm in local] + [("t:vxlan", remote_label(vrf, "vxlan"))]
    objs.append(NextHopConfig(f"flood:{vrf}", "composite", members=tuple(flood)))
    ecmp_mac = bytes([2, 0xEC, 0, vrf, 0, 1])
    if routed:
        route(f"10.{vrf}.4.0/24", f"ecmp:{vrf}")
        route(f"10.{vrf}.5.0/24", f"ecmp_big:{vrf}")
        route(f"10.{vrf}.6.0/24", f"flood:{vrf}")
        route(f"10.{vrf}.7.0/24", "resolve")
        route(f"10.{vrf}.8.0/24", "discard")
        route(f"10.{vrf}.9.9/32", "encap:99")
        route(f"10.{vrf}.10.0/24", "t:mplsogre")  # no label: invalid
        if vrf == 2:
            route("0.0.0.0/0", "t:mplsoudp", remote_label(vrf, "mplsoudp"))
    else:
        mac_route(ecmp_mac, f"ecmp:{vrf}")
    if mode != "l3":
        mac_route(BROADCAST, f"flood:{vrf}")
        mac_route(VROUTER_MAC, "l2receive")
    for kind, third in (
        ("ecmp", 4),
        ("ecmp_big", 5),
        ("flood", 6),
        ("resolve", 7),
        ("discard", 8),
        ("no_vif", 9),
        ("no_label", 10),
        ("no_route", 11),
    ):
        ip = _ip(f"10.{vrf}.{third}.{9 if third == 9 else 20}")
        target_mac = ecmp_mac if kind == "ecmp" else None
        targets.append(Target(kind, vrf, ip if routed else None, target_mac, fast=kind == "ecmp"))
    return objs


def _install_flows(s: Scenario) -> None:
    """Forward and drop flows (with their reverses) for the policy VMs, as the agent would."""
    for vm in s.vms:
        if not vm.policy:
            continue
        for t in s.targets:
            if t.vrf != vm.vrf or t.ip is None or t.kind not in ("local", *ENCAPS, "ecmp"):
                continue
            if t.vm is vm:
                continue
            for proto, sport, dport in ((PROTO_UDP, 40000, 53), (PROTO_TCP, 40001, 80)):
                key = (vm.vrf, proto, vm.ip, t.ip, sport, dport)
                rev = (vm.vrf, proto, t.ip, vm.ip, dport, sport)
                install_flow(s.tables, key, FlowAction.FORWARD, NOW, reverse=rev)
                s.flows += [(key, FlowAction.FORWARD), (rev, FlowAction.FORWARD)]
            key = (vm.vrf, PROTO_ICMP, vm.ip, t.ip, 77, 77)
            install_flow(s.tables, key, FlowAction.FORWARD, NOW)
            s.flows.append((key, FlowAction.FORWARD))
            key = (vm.vrf, PROTO_TCP, vm.ip, t.ip, 40002, 22)
            install_flow(s.tables, key, FlowAction.DROP, NOW)
            s.flows.append((key, FlowAction.DROP))
            # a destination port translation: the fast path sends NAT flows up
            key = (vm.vrf, PROTO_UDP, vm.ip, t.ip, 40003, 5353)
            install_flow(s.tables, key, FlowAction.NAT, NOW, nat=(vm.ip, t.ip, 40003, 53))
            s.flows.append((key, FlowAction.NAT))
