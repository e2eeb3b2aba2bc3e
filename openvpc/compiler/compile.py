"""The compiler: a desired-state snapshot -> one NodeConfig per compute node. Pure.

A routing instance is a route table of a VPC; a node hosts the instances its allocation names
(those of its VMs' subnets). Inside an instance, host routes exist for every VM address whose
best match in the route table is the local route, so more specific routes (blackhole, an
appliance interface) win as they do in AWS.
"""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace

from openvpc.compiler.internet import (
    ActiveNatGateway,
    PublicMapping,
    active_mappings,
    active_nat_gateways,
    attached_gateways,
)
from openvpc.compiler.policy import PolicyCompiler
from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, Encap, overhead
from openvpc.model.gateways import VpcPeeringConnection
from openvpc.model.internet import (
    INTERNET_VIF,
    PUBLIC_L2_LABEL,
    PUBLIC_L3_LABEL,
    PUBLIC_VNI,
    PUBLIC_VRF,
    PUBLIC_VRF_NAME,
    InternetEdge,
)
from openvpc.model.nodeconfig import (
    DnsRecord,
    MacRouteConfig,
    NextHopConfig,
    NodeConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    canonical,
)
from openvpc.model.resources import (
    Interface,
    NodeAllocation,
    Route,
    RouteTable,
    Snapshot,
    Subnet,
    Vpc,
)

GATEWAY_MAC = VROUTER_MAC.hex(":")
LINK_LOCAL_GATEWAY_TEXT = str(ipaddress.IPv4Address(LINK_LOCAL_GATEWAY))
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
RECEIVE = NextHopConfig("receive", "receive")
L2_RECEIVE = NextHopConfig("l2receive", "l2receive")
DISCARD = NextHopConfig("discard", "discard")


@dataclass(frozen=True, slots=True)
class _Index:
    """Lookups over one snapshot, built once for all nodes."""

    snapshot: Snapshot
    vpcs: dict[str, Vpc]
    subnets: dict[str, Subnet]
    tables: dict[str, RouteTable]
    table_of_subnet: dict[str, str]
    interfaces: dict[str, Interface]
    instance_name: dict[str, str]
    node_ip: dict[str, str]
    allocation: dict[str, NodeAllocation]
    policy: PolicyCompiler
    peerings: dict[str, VpcPeeringConnection]
    gateways: dict[str, str]  # attached internet gateway -> its VPC
    mappings: list[PublicMapping]  # the Elastic IPs that forward
    nat_gateways: dict[str, ActiveNatGateway]  # the NAT gateways that translate

    @classmethod
    def of(cls, s: Snapshot) -> "_Index":
        vpcs = {v.id: v for v in s.vpcs}
        subnets = {n.id: n for n in s.subnets}
        tables = {t.id: t for t in s.route_tables}
        table_of = subnet_tables(s)
        interfaces = {i.id: i for i in active_interfaces(s)}
        return cls(
            s,
            vpcs,
            subnets,
            tables,
            table_of,
            interfaces,
            {i.id: i.name for i in s.instances},
            {n.name: n.fabric_ip for n in s.nodes},
            {a.node: a for a in s.allocations},
            PolicyCompiler(s),
            {p.id: p for p in s.peerings},
            attached_gateways(s),
            active_mappings(s, interfaces, subnets, table_of, tables),
            active_nat_gateways(s, table_of, tables),
        )

    def vpc_of(self, iface: Interface) -> Vpc:
        return self.vpcs[self.subnets[iface.subnet].vpc]

    def table_of(self, iface: Interface) -> str:
        return self.table_of_subnet[iface.subnet]

    def vpc_interfaces(self, vpc_id: str) -> list[Interface]:
        return [i for i in self.interfaces.values() if self.subnets[i.subnet].vpc == vpc_id]

    def hosts(self, vpc_id: str) -> list[tuple[str, Interface]]:
        """Every private address in the VPC with the active interface answering for it:
        primary and secondary addresses, and the movable ones where they are now."""
        members = self.vpc_interfaces(vpc_id)
        owners = {o.ip: o.interface for o in self.snapshot.address_owners if o.vpc == vpc_id}
        return [(ip, i) for i in members for ip in (i.ip, *i.secondary_ips)] + [
            (ip, self.interfaces[owner]) for ip, owner in owners.items() if owner in self.interfaces
        ]

    def peer_vpc(self, target: str, vpc_id: str) -> str | None:
        """The VPC a route target peers `vpc_id` with: an active peering connection of it."""
        pcx = self.peerings.get(target)
        if pcx is None or pcx.status != "active":
            return None
        if pcx.vpc == vpc_id:
            return pcx.accepter_vpc
        return pcx.vpc if pcx.accepter_vpc == vpc_id else None

    def labels(self, node: str, table: str) -> tuple[int, int] | None:
        alloc = self.allocation.get(node)
        if alloc is None:
            return None
        for rtb, l3, l2 in alloc.labels:
            if rtb == table:
                return l3, l2
        return None


def active_interfaces(s: Snapshot) -> list[Interface]:
    """The interfaces that are VMs' now: attached to an instance that should be running.
    A detached one, or one of a stopped instance, has no vif and no routes (its VM goes)."""
    running = {i.id for i in s.instances if i.state == "running"}
    return [i for i in s.interfaces if i.node and i.netns and i.instance in running]


def subnet_tables(s: Snapshot) -> dict[str, str]:
    """Subnet id -> the route table that decides for it: its association, else the main one."""
    vpcs = {v.id: v for v in s.vpcs}
    table_of = {n.id: vpcs[n.vpc].main_route_table for n in s.subnets if n.vpc in vpcs}
    table_of.update({a.subnet: a.route_table for a in s.associations})
    return table_of


def compile_all(snapshot: Snapshot) -> dict[str, NodeConfig]:
    index = _Index.of(snapshot)
    return {node.name: _compile(index, node.name) for node in snapshot.nodes}


def compile_node(snapshot: Snapshot, node: str) -> NodeConfig:
    return _compile(_Index.of(snapshot), node)


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def best_route(table: RouteTable, ip: str) -> Route | None:
    addr = ipaddress.IPv4Address(ip)
    matches = [r for r in table.routes if addr in _net(r.destination)]
    return max(matches, key=lambda r: _net(r.destination).prefixlen, default=None)


def mtu_for(fabric_mtu: int, vpc: Vpc) -> int:
    """The overlay MTU VMs get by DHCP: the fabric MTU minus what the encapsulation adds."""
    return fabric_mtu - overhead(Encap(vpc.encap), vpc.mode != "l3")


class _NodeCompiler:
    """Builds one node's config; next hops are collected by key as routes ask for them."""

    def __init__(self, index: _Index, node: str) -> None:
        self.x = index
        self.node = node
        alloc = index.allocation.get(node, NodeAllocation(node))
        self.vrf_of_table = dict(alloc.vrfs)
        self.vif_of = dict(alloc.vifs)
        self.nexthops: dict[str, NextHopConfig] = {}
        self.routes: list[RouteConfig] = []
        self.mac_routes: list[MacRouteConfig] = []

    def nh(self, nh: NextHopConfig) -> str:
        self.nexthops.setdefault(nh.key, nh)
        return nh.key

    def to_interface(self, iface: Interface, l2: bool) -> tuple[str, int | None]:
        """The next hop and label/VNI/VLAN that reach `iface` from this node."""
        if iface.node == self.node and iface.id in self.vif_of:
            vif = self.vif_of[iface.id]
            return self.nh(NextHopConfig(f"encap:{vif}", "encap", vif=vif, dst_mac=iface.mac)), None
        vpc = self.x.vpc_of(iface)
        return self.to_instance(iface.node, vpc, self.x.tables[self.x.table_of(iface)], l2)

    def to_instance(
        self, node: str, vpc: Vpc, table: RouteTable, l2: bool
    ) -> tuple[str, int | None]:
        """A tunnel to `node`'s VRF of routing instance `table`, or the discard next hop."""
        peer_ip = self.x.node_ip.get(node)
        labels = self.x.labels(node, table.id)
        if peer_ip is None or labels is None:
            return self.nh(DISCARD), None
        key = f"tunnel:{vpc.encap}:{peer_ip}"
        tunnel = self.nh(NextHopConfig(key, "tunnel", encap=vpc.encap, dst_ip=peer_ip))
        if vpc.encap == "vxlan":
            return tunnel, table.vni
        if vpc.encap == "vlan":
            return tunnel, table.vlan
        return tunnel, labels[1] if l2 else labels[0]

    def vrf(self, table: RouteTable, vrf_id: int) -> VrfConfig:
        x = self.x
        vpc = x.vpcs[table.vpc]
        labels = x.labels(self.node, table.id) or (0, 0)
        fib: dict[str, RouteConfig] = {}  # by prefix: later entries override earlier ones
        peers: dict[str, str] = {}  # peering connection -> the peer VPC, while active
        for route in table.routes:
            if route.target == "local":
                continue  # host routes below; no entry for the rest (l2_l3 bridges on a miss)
            peer = x.peer_vpc(route.target, vpc.id)
            if peer is not None:
                peers[route.target] = peer
            nat = x.nat_gateways.get(route.target)
            if x.gateways.get(route.target) == vpc.id and x.snapshot.internet is not None:
                fib[route.destination] = RouteConfig(vrf_id, route.destination, self.to_out(table))
            elif nat is not None and nat.vpc == vpc.id:
                nh, label = self.to_nat_gateway(nat, table, vpc)
                fib[route.destination] = RouteConfig(vrf_id, route.destination, nh, label)
            elif (
                peer is not None or route.target == "blackhole" or route.target not in x.interfaces
            ):
                # a peering's prefix discards what no peer interface answers (host routes
                # below), so that no less specific route carries it elsewhere
                fib[route.destination] = RouteConfig(vrf_id, route.destination, self.nh(DISCARD))
            else:
                nh, label = self.to_interface(x.interfaces[route.target], l2=False)
                fib[route.destination] = RouteConfig(vrf_id, route.destination, nh, label)
        for ip, iface in x.hosts(vpc.id):
            best = best_route(table, ip)
            if best is not None and best.target == "local":
                nh, label = self.to_interface(iface, l2=False)
                fib[f"{ip}/32"] = RouteConfig(vrf_id, f"{ip}/32", nh, label, iface.mac)
        # a peer's interfaces are reached in their own routing instance, on their node: its
        # route table then decides whether replies come back (non-transitive: only the peer
        # VPC's own addresses, never what the peer itself routes elsewhere)
        for pcx, peer in peers.items():
            for ip, iface in x.hosts(peer):
                best = best_route(table, ip)
                if best is not None and best.target == pcx:
                    nh, label = self.to_interface(iface, l2=False)
                    fib[f"{ip}/32"] = RouteConfig(vrf_id, f"{ip}/32", nh, label)
        receive = self.nh(RECEIVE)
        gateways = [_net(s.cidr).network_address + 1 for s in x.subnets.values() if s.vpc == vpc.id]
        receivers = [*map(str, gateways), str(_net(vpc.cidr).network_address + 2)]
        if vpc.link_local_gateway:
            receivers.append(LINK_LOCAL_GATEWAY_TEXT)
        for addr in receivers:
            fib[f"{addr}/32"] = RouteConfig(vrf_id, f"{addr}/32", receive, mac=GATEWAY_MAC)
        self.routes.extend(fib.values())
        if vpc.mode != "l3":
            self.bridge_domain(table, vrf_id, vpc, x.vpc_interfaces(vpc.id))
        return VrfConfig(
            vrf_id,
            f"{vpc.tenant}/{vpc.name}/{table.name}",
            vpc.mode,
            vpc.encap,
            table.vni,
            table.vlan,
            labels[0],
            labels[1],
            vpc.arp_mode,
            vpc.link_local_gateway,
            vpc.decrement_ttl,
        )

    def to_out(self, table: RouteTable) -> str:
        """The outbound NAT next hop of routing instance `table`: this node's private
        addresses with an Elastic IP become it and go on in the public VRF."""
        vrf_id = self.vrf_of_table[table.id]
        pairs = tuple(
            (m.private, m.public)
            for m in self.x.mappings
            if m.node == self.node and m.table == table.id
        )
        nh = NextHopConfig(f"nat:src:{vrf_id}", "nat", nat=pairs, nat_vrf=PUBLIC_VRF)
        return self.nh(nh)

    def to_nat_gateway(
        self, nat: ActiveNatGateway, table: RouteTable, vpc: Vpc
    ) -> tuple[str, int | None]:
        """A route to a NAT gateway: on the gateway node, which hosts the routing instance
        for it, its source NAT into the public VRF; elsewhere a tunnel to that instance."""
        edge = self.x.snapshot.internet
        assert edge is not None  # active NAT gateways need the internet
        if edge.node != self.node:
            return self.to_instance(edge.node, vpc, table, l2=False)
        nh = NextHopConfig(
            f"natgw:src:{nat.id}",
            "nat",
            nat=((nat.private, nat.public),),
            nat_vrf=PUBLIC_VRF,
            nat_gateway=nat.id,
            nat_acl=self.x.policy.network_acl(self.x.subnets[nat.subnet]),
        )
        return self.nh(nh), None

    def from_nat_gateway(self, nat: ActiveNatGateway) -> str:
        """The NAT gateway's Elastic IP in the gateway node's public VRF: replies to its
        translations."""
        nh = NextHopConfig(
            f"natgw:dst:{nat.id}",
            "nat",
            nat=((nat.public, nat.private),),
            nat_side="dst",
            nat_vrf=PUBLIC_VRF,
            nat_gateway=nat.id,
            nat_acl=self.x.policy.network_acl(self.x.subnets[nat.subnet]),
        )
        return self.nh(nh)

    def to_private(self, m: PublicMapping) -> str:
        """The inbound NAT next hop of one Elastic IP on its instance's node."""
        nh = NextHopConfig(
            f"nat:dst:{m.public}",
            "nat",
            nat=((m.public, m.private),),
            nat_side="dst",
            nat_vrf=self.vrf_of_table[m.table],
        )
        return self.nh(nh)

    def to_public(self, node: str) -> tuple[str, int]:
        """A tunnel to `node`'s public VRF."""
        peer_ip = self.x.node_ip.get(node)
        if peer_ip is None:
            return self.nh(DISCARD), PUBLIC_VNI
        key = f"tunnel:vxlan:{peer_ip}"
        return self.nh(NextHopConfig(key, "tunnel", encap="vxlan", dst_ip=peer_ip)), PUBLIC_VNI

    def public(self, edge: InternetEdge) -> tuple[VrfConfig, PortConfig | None] | None:
        """The public VRF on this node, and on the gateway node the internet port; None
        where the node has neither the internet nor an Elastic IP's instance."""
        gateway = edge.node == self.node
        # an instance's own node translates (its routing instance is there)
        mine = [m for m in self.x.mappings if m.node == self.node and m.table in self.vrf_of_table]
        if not gateway and not mine:
            return None
        if gateway:
            nh = NextHopConfig(f"encap:{INTERNET_VIF}", "encap", vif=INTERNET_VIF, dst_mac=edge.mac)
            self.routes.append(RouteConfig(PUBLIC_VRF, "0.0.0.0/0", self.nh(nh)))
            self.routes.append(
                RouteConfig(PUBLIC_VRF, f"{edge.gateway}/32", self.nh(RECEIVE), mac=GATEWAY_MAC)
            )
            for m in self.x.mappings:
                if m in mine:
                    route = RouteConfig(PUBLIC_VRF, f"{m.public}/32", self.to_private(m))
                else:
                    nh_key, vni = self.to_public(m.node)
                    route = RouteConfig(PUBLIC_VRF, f"{m.public}/32", nh_key, vni)
                self.routes.append(replace(route, mac=GATEWAY_MAC))
            for nat in self.x.nat_gateways.values():
                self.routes.append(
                    RouteConfig(
                        PUBLIC_VRF, f"{nat.public}/32", self.from_nat_gateway(nat), mac=GATEWAY_MAC
                    )
                )
        else:
            nh_key, vni = self.to_public(edge.node)
            self.routes.append(RouteConfig(PUBLIC_VRF, "0.0.0.0/0", nh_key, vni))
            for m in mine:
                self.routes.append(RouteConfig(PUBLIC_VRF, f"{m.public}/32", self.to_private(m)))
        vrf = VrfConfig(
            PUBLIC_VRF,
            PUBLIC_VRF_NAME,
            "l3",
            "vxlan",
            PUBLIC_VNI,
            None,
            PUBLIC_L3_LABEL,
            PUBLIC_L2_LABEL,
        )
        if not gateway:
            return vrf, None
        port = PortConfig(
            vif=INTERNET_VIF,
            interface_id="internet",
            instance_id="internet",
            name="internet",
            netns=edge.netns,
            ifname=edge.ifname,
            vrf=PUBLIC_VRF,
            mac=edge.mac,
            ip=edge.ip,
            prefix_len=edge.prefix_len,
            gateway=edge.gateway,
            dns=edge.gateway,
            domain="internet",
            hostname="internet",
            mtu=self.x.snapshot.fabric_mtu - overhead(Encap.VXLAN, False),
            policy=False,  # the tenant side decides: its flows and security groups
            agent_decides=False,
        )
        return vrf, port

    def bridge_domain(
        self, table: RouteTable, vrf_id: int, vpc: Vpc, members: Iterable[Interface]
    ) -> None:
        """MAC routes for the VMs of this routing instance, flooding, and the gateway MAC."""
        flood: list[tuple[str, int | None]] = []
        for iface in sorted(members, key=lambda i: i.mac):
            if self.x.table_of(iface) != table.id:
                continue
            nh, label = self.to_interface(iface, l2=True)
            self.mac_routes.append(MacRouteConfig(vrf_id, iface.mac, nh, label))
            if label is None:
                flood.append((nh, None))
        peers = sorted(
            a.node
            for a in self.x.allocation.values()
            if a.node != self.node and table.id in dict(a.vrfs)
        )
        if vpc.encap == "vlan":
            peers = peers[:1]  # one tagged copy: the underlay floods the VLAN to every node
        remote = [self.to_instance(peer, vpc, table, l2=True) for peer in peers]
        flood.extend(m for m in remote if m[0] != DISCARD.key)
        composite = NextHopConfig(f"flood:{vrf_id}", "composite", members=tuple(flood))
        self.mac_routes.append(MacRouteConfig(vrf_id, BROADCAST_MAC, self.nh(composite)))
        if vpc.gateway_node in (None, self.node):
            gateway: tuple[str, int | None] = (self.nh(L2_RECEIVE), None)
        else:  # a centralized gateway: routed traffic crosses to its node first
            gateway = self.to_instance(vpc.gateway_node, vpc, table, l2=True)
        self.mac_routes.append(MacRouteConfig(vrf_id, GATEWAY_MAC, *gateway))

    def port(self, iface: Interface) -> PortConfig:
        x = self.x
        vpc = x.vpc_of(iface)
        stored_subnet = x.subnets[iface.subnet]
        subnet = _net(stored_subnet.cidr)
        return PortConfig(
            vif=self.vif_of[iface.id],
            interface_id=iface.id,
            instance_id=iface.instance,
            name=x.instance_name.get(iface.instance, iface.instance),
            netns=iface.netns,
            ifname=iface.ifname,
            vrf=self.vrf_of_table[x.table_of(iface)],
            mac=iface.mac,
            ip=iface.ip,
            prefix_len=subnet.prefixlen,
            gateway=str(subnet.network_address + 1),
            dns=str(_net(vpc.cidr).network_address + 2),
            domain=vpc.domain,
            hostname=hostname(iface.ip),
            mtu=mtu_for(x.snapshot.fabric_mtu, vpc),
            agent_decides=False,  # the vRouter decides first packets (no agent round trip)
            source_check=iface.source_check,
            allowed_ips=(*iface.secondary_ips, *iface.allowed_addresses),
            learn_ips=iface.allowed_addresses,
            security_groups=x.policy.security(iface),
            network_acl=x.policy.network_acl(stored_subnet),
        )

    def dns(self, table: RouteTable, vrf_id: int) -> list[DnsRecord]:
        x = self.x
        vpc = x.vpcs[table.vpc]
        records = []
        for iface in x.vpc_interfaces(vpc.id):
            names = (hostname(iface.ip), iface.instance, x.instance_name.get(iface.instance))
            for name in dict.fromkeys(names):  # an unnamed instance is named by its address
                if name:
                    records.append(DnsRecord(vrf_id, f"{name}.{vpc.domain}".lower(), iface.ip))
        return records

    def build(self) -> NodeConfig:
        x = self.x
        vrfs, dns = [], []
        for table_id, vrf_id in sorted(self.vrf_of_table.items(), key=lambda kv: kv[1]):
            table = x.tables.get(table_id)
            if table is None or table.vpc not in x.vpcs:
                continue
            vrfs.append(self.vrf(table, vrf_id))
            dns.extend(self.dns(table, vrf_id))
        ports = [
            self.port(x.interfaces[i])
            for i in sorted(self.vif_of, key=lambda i: self.vif_of[i])
            if i in x.interfaces
            and x.interfaces[i].node == self.node
            and x.table_of(x.interfaces[i]) in self.vrf_of_table
        ]
        public = None if x.snapshot.internet is None else self.public(x.snapshot.internet)
        if public is not None:
            vrfs.append(public[0])
            if public[1] is not None:
                ports.append(public[1])
        return canonical(
            NodeConfig(
                self.node,
                x.snapshot.revision,
                tuple(vrfs),
                tuple(self.nexthops.values()),
                tuple(ports),
                tuple(self.routes),
                tuple(self.mac_routes),
                tuple(dns),
            )
        )


def _compile(index: _Index, node: str) -> NodeConfig:
    return _NodeCompiler(index, node).build()


def hostname(ip: str) -> str:
    """AWS's private DNS host name for an address: ip-10-0-1-5."""
    return "ip-" + ip.replace(".", "-")
