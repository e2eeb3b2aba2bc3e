"""The in-memory lab: compute nodes with vRouters, VMs, and an L2 or L3 underlay, no root.

`SimLab` programs every vRouter's tables from a small topology (the controller's job once it
exists), then moves frames between devices until the network is quiet. No threads, no sleeps.
"""

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from openvpc.compiler.compile import compile_all
from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.fabric import Router, RouterPort, Switch
from openvpc.model import resources as model
from openvpc.model.forwarding import AGENT_VIF, FABRIC_VIF, LINK_LOCAL_GATEWAY, ArpMode, Encap, Mode
from openvpc.model.nodeconfig import (
    NodeConfig,
    diff_objects,
    object_key,
    object_kind,
    vrouter_objects,
)
from openvpc.model.resources import Snapshot
from openvpc.model.rules import NetworkAclConfig, PortSecurity
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import parse_ethernet
from openvpc.packet.ipv4 import ip_to_str, parse_ipv4
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.pipeline import Emit, install_flow, process
from openvpc.vrouter.program import Programmer
from openvpc.vrouter.punt import AgentHeader, Punt, parse_punt
from openvpc.vrouter.tables import Fabric, Tables, Vif, VifKind
from openvpc.vrouter.trace import Recorder

Underlay = Literal["l2", "l3"]


def _covering(cidrs: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The smallest network holding every subnet (the VPC CIDR the simulator implies)."""
    nets = list(cidrs)
    net = nets[0]
    while not all(n.subnet_of(net) for n in nets):
        net = net.supernet()
    return net


@dataclass
class Subnet:
    cidr: ipaddress.IPv4Network

    @property
    def gateway(self) -> bytes:
        return (self.cidr.network_address + 1).packed


@dataclass
class Vpc:
    tenant: str
    name: str
    mode: Mode
    encap: Encap
    vni: int
    vlan: int
    link_local: bool = False
    arp_mode: ArpMode = ArpMode.PROXY
    gateway_node: str | None = None  # None: distributed anycast gateway on every vRouter
    decrement_ttl: bool = False
    subnets: list[Subnet] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.tenant}/{self.name}"


@dataclass
class VmPort:
    vm: VmEndpoint
    node: str
    vpc: Vpc
    subnet: Subnet
    vif: int
    policy: bool
    agent_decides: bool
    security: PortSecurity | None = None
    acl: NetworkAclConfig | None = None


@dataclass
class Node:
    name: str
    index: int
    tables: Tables
    punted: list[tuple[AgentHeader, bytes]] = field(default_factory=list)
    vrf_of: dict[str, int] = field(default_factory=dict)  # VPC label -> VRF id
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)  # VPC -> (l3, l2) labels

    @property
    def ip(self) -> bytes:
        return self.tables.fabric.ip


Device = tuple[str, int]  # (device name, port)


class SimLab:
    """N compute nodes on an L2 (one switch) or L3 (two leaves, two spines) underlay."""

    def __init__(
        self,
        nodes: int = 2,
        underlay: Underlay = "l2",
        fabric_mtu: int = 1500,
        auto_allow: bool = True,
    ) -> None:
        self.underlay = underlay
        self.fabric_mtu = fabric_mtu
        self.auto_allow = auto_allow
        self.now = 0.0
        self.recorder: Recorder | None = None
        self.current_node = ""  # the node whose pipeline runs now, for recorders
        self.nodes: dict[str, Node] = {}
        self.vpcs: list[Vpc] = []
        self.ports: dict[str, VmPort] = {}
        self.routers: dict[str, Router] = {}
        self.switches: dict[str, Switch] = {}  # the l2 underlay, or each leaf's node segment
        self.links: dict[Device, Device] = {}
        self.fabric_frames: list[tuple[str, bytes]] = []
        # endpoints on vifs of configs compiled elsewhere (`attach`, `program`)
        self.attached: dict[str, tuple[VmEndpoint, str, int]] = {}
        self.programmers: dict[str, Programmer] = {}
        for i in range(nodes):
            self._add_node(f"node{i + 1}", i, fabric_mtu)
        self._wire_underlay()

    # -- topology --------------------------------------------------------------------
    def _add_node(self, name: str, i: int, mtu: int) -> None:
        mac = bytes((0x02, 0xFA, 0, 0, 0, i + 1))
        if self.underlay == "l2":
            ip = ipaddress.IPv4Address(f"192.168.0.{10 + i}").packed
        else:
            ip = ipaddress.IPv4Address(f"172.16.{i % 2 + 1}.{10 + i}").packed
        tables = Tables(Fabric(FABRIC_VIF, ip, mac, mtu))
        tables.add_vif(Vif(AGENT_VIF, VifKind.AGENT, "agent"))
        self.nodes[name] = Node(name, i, tables)

    def _link(self, a: Device, b: Device) -> None:
        self.links[a] = b
        self.links[b] = a

    def _wire_underlay(self) -> None:
        nodes = list(self.nodes.values())
        if self.underlay == "l2":
            self.switches["switch"] = Switch("switch", len(nodes))
            for node in nodes:
                self._link((node.name, FABRIC_VIF), ("switch", node.index))
                node.tables.add_underlay_route(b"\xc0\xa8\x00\x00", 24, None)
            return
        addr = ipaddress.IPv4Address
        leaves = [f"leaf{j + 1}" for j in range(2)]
        spines = [f"spine{j + 1}" for j in range(2)]
        # leaf j: port 0 faces its nodes' subnet 172.16.(j+1).0/24, ports 1-2 face the spines
        for j, leaf in enumerate(leaves):
            ports = [RouterPort(addr(f"172.16.{j + 1}.1").packed, 24, bytes((2, 0xAA, j, 0, 0, 1)))]
            for k in range(2):
                ports.append(
                    RouterPort(
                        addr(f"10.255.{k}.{2 * j + 1}").packed, 31, bytes((2, 0xAA, j, 0, k + 1, 1))
                    )
                )
            self.routers[leaf] = Router(leaf, ports)
        for k, spine in enumerate(spines):
            ports = [
                RouterPort(addr(f"10.255.{k}.{2 * j}").packed, 31, bytes((2, 0xBB, k, 0, j, 1)))
                for j in range(2)
            ]
            self.routers[spine] = Router(spine, ports)
        for j, leaf in enumerate(leaves):
            own = addr(f"172.16.{j + 1}.0").packed
            other = addr(f"172.16.{2 - j}.0").packed
            self.routers[leaf].add_route(own, 24, [(0, None)])
            self.routers[leaf].add_route(
                other, 24, [(1 + k, addr(f"10.255.{k}.{2 * j}").packed) for k in range(2)]
            )
            for k, spine in enumerate(spines):
                self._link((leaf, 1 + k), (spine, j))
                self.routers[spine].add_route(
                    own, 24, [(j, addr(f"10.255.{k}.{2 * j + 1}").packed)]
                )
        # the nodes under each leaf share one segment (a switch), so a leaf can serve several
        for j, leaf in enumerate(leaves):
            members = [n for n in nodes if n.index % 2 == j]
            seg = f"seg{j + 1}"
            switch = Switch(seg, len(members) + 1)
            self.switches[seg] = switch
            self._link((seg, 0), (leaf, 0))
            for p, node in enumerate(members, start=1):
                self._link((node.name, FABRIC_VIF), (seg, p))
                node.tables.add_underlay_route(b"\x00" * 4, 0, addr(f"172.16.{j + 1}.1").packed)

    def add_vpc(
        self,
        tenant: str,
        name: str,
        cidrs: list[str],
        mode: Mode = Mode.L3,
        encap: Encap = Encap.MPLSOGRE,
        **options: object,
    ) -> Vpc:
        if encap is Encap.VLAN and self.underlay != "l2":
            raise ValueError("VLAN encapsulation needs an L2 underlay")
        n = len(self.vpcs)
        vpc = Vpc(tenant, name, mode, encap, vni=5001 + n, vlan=101 + n, **options)  # type: ignore[arg-type]
        vpc.subnets = [Subnet(ipaddress.IPv4Network(c)) for c in cidrs]
        self.vpcs.append(vpc)
        return vpc

    def add_vm(
        self,
        vpc: Vpc,
        name: str,
        node: str,
        ip: str,
        mac: str | None = None,
        policy: bool = False,
        agent_decides: bool = True,
        security: PortSecurity | None = None,
        acl: NetworkAclConfig | None = None,
    ) -> VmEndpoint:
        """A VM on `node`; with `policy` its flows go through the flow table, their first
        packets to the agent (`agent_decides`) or decided by the vRouter itself from the
        port's `security` groups and subnet `acl` (None: allow all)."""
        addr = ipaddress.IPv4Address(ip)
        subnet = next(s for s in vpc.subnets if addr in s.cidr)
        vif = 2 + sum(1 for p in self.ports.values() if p.node == node)
        mac_bytes = (
            bytes.fromhex(mac.replace(":", ""))
            if mac
            else bytes((0x02, 0x01, len(self.ports) >> 8, len(self.ports) & 0xFF, 0, 1))
        )
        gateway = LINK_LOCAL_GATEWAY if vpc.link_local else subnet.gateway
        vm = VmEndpoint(name, mac_bytes, addr.packed, subnet.cidr.prefixlen, gateway)
        self.ports[name] = VmPort(vm, node, vpc, subnet, vif, policy, agent_decides, security, acl)
        self._link((node, vif), (name, 0))
        return vm

    def vm(self, name: str) -> VmEndpoint:
        return self.ports[name].vm

    def attach(self, endpoint: VmEndpoint, node: str, vif: int) -> None:
        """An endpoint on vif `vif` of `node`, named by a config `program` loads (the API's
        store compiled, rather than this lab's own topology)."""
        self.attached[endpoint.name] = (endpoint, node, vif)
        self._link((node, vif), (endpoint.name, 0))

    def program(self, configs: Mapping[str, NodeConfig]) -> None:
        """Bring every node's vRouter to its config, as the agent does: only the difference
        is written (deletes in the reverse kind order), so flows and next-hop ids stay."""
        for name, config in configs.items():
            node = self.nodes.get(name)
            if node is None:
                continue
            programmer = self.programmers.setdefault(name, Programmer(node.tables))
            stale, changed = diff_objects(programmer.dump(), vrouter_objects(config))
            for obj in reversed(stale):
                programmer.delete(object_kind(obj), object_key(obj))
            for obj in changed:
                programmer.set(object_kind(obj), obj)

    # -- programming the vRouters ------------------------------------------------------
    def build(self) -> None:
        """Program every vRouter from the compiler's output for this topology (again after a
        port's rules changed)."""
        configs = compile_all(self.snapshot())
        for node in self.nodes.values():
            config = configs[node.name]
            mine = {p.vif: p for p in self.ports.values() if p.node == node.name}
            ports = tuple(
                replace(
                    p,
                    policy=mine[p.vif].policy,
                    agent_decides=mine[p.vif].agent_decides,
                    security_groups=mine[p.vif].security,
                    network_acl=mine[p.vif].acl,
                )
                for p in config.ports
            )
            Programmer(node.tables).load(vrouter_objects(replace(config, ports=ports)))

    def snapshot(self) -> Snapshot:
        """The topology as desired state: one route table (routing instance) per VPC, labels
        numbered per receiving node from 100 x (node index + 1)."""
        vpcs: list[model.Vpc] = []
        subnets: list[model.Subnet] = []
        tables: list[model.RouteTable] = []
        instances: list[model.Instance] = []
        interfaces: list[model.Interface] = []
        for n, vpc in enumerate(self.vpcs):
            hosts = {p.node for p in self.ports.values() if p.vpc is vpc}
            hosts |= {vpc.gateway_node} if vpc.gateway_node else set()
            for name in sorted(hosts):
                node = self.nodes[name]
                if vpc.label in node.vrf_of:
                    continue  # built before: the same ids again
                base = 100 * (node.index + 1) + 2 * len(node.vrf_of)
                node.vrf_of[vpc.label] = len(node.vrf_of) + 1
                node.labels[vpc.label] = (base, base + 1)
            cidr = _covering(s.cidr for s in vpc.subnets)
            vpcs.append(
                model.Vpc(
                    f"vpc-{n}",
                    vpc.tenant,
                    vpc.name,
                    str(cidr),
                    vpc.mode.value,
                    vpc.encap.value,
                    f"rtb-{n}",
                    arp_mode=vpc.arp_mode.value,
                    link_local_gateway=vpc.link_local,
                    decrement_ttl=vpc.decrement_ttl,
                    gateway_node=vpc.gateway_node,
                )
            )
            route = model.Route(str(cidr), "local")
            tables.append(
                model.RouteTable(
                    f"rtb-{n}", vpc.tenant, f"vpc-{n}", "main", vpc.vni, vpc.vlan, (route,)
                )
            )
            subnets.extend(
                model.Subnet(f"subnet-{n}-{k}", vpc.tenant, f"vpc-{n}", str(s.cidr), str(s.cidr))
                for k, s in enumerate(vpc.subnets)
            )
        for name, port in self.ports.items():
            n = self.vpcs.index(port.vpc)
            instances.append(
                model.Instance(f"i-{name}", port.vpc.tenant, name, port.node, f"eni-{name}")
            )
            interfaces.append(
                model.Interface(
                    f"eni-{name}",
                    port.vpc.tenant,
                    f"subnet-{n}-{port.vpc.subnets.index(port.subnet)}",
                    f"i-{name}",
                    port.node,
                    port.vm.mac.hex(":"),
                    str(ipaddress.IPv4Address(port.vm.ip)),
                    name,
                )
            )
        allocations = [
            model.NodeAllocation(
                node.name,
                tuple((f"rtb-{self._vpc_index(v)}", i) for v, i in node.vrf_of.items()),
                tuple((f"rtb-{self._vpc_index(v)}", *ls) for v, ls in node.labels.items()),
                tuple(
                    (f"eni-{p.vm.name}", p.vif) for p in self.ports.values() if p.node == node.name
                ),
            )
            for node in self.nodes.values()
        ]
        return Snapshot(
            revision=1,
            fabric_mtu=self.fabric_mtu,
            nodes=tuple(model.ComputeNode(n.name, ip_to_str(n.ip)) for n in self.nodes.values()),
            vpcs=tuple(vpcs),
            subnets=tuple(subnets),
            route_tables=tuple(tables),
            instances=tuple(instances),
            interfaces=tuple(interfaces),
            allocations=tuple(allocations),
        )

    def _vpc_index(self, label: str) -> int:
        return next(i for i, v in enumerate(self.vpcs) if v.label == label)

    # -- running -----------------------------------------------------------------------
    def run(self, max_frames: int = 200_000) -> int:
        """Deliver frames until nothing moves; returns how many were delivered."""
        queue: deque[tuple[str, int, bytes]] = deque()
        for port in self.ports.values():
            for frame in port.vm.take_outbox():
                queue.append((port.node, port.vif, frame))
        for endpoint, node_name, vif in self.attached.values():
            queue.extend((node_name, vif, frame) for frame in endpoint.take_outbox())
        delivered = 0
        while queue:
            delivered += 1
            if delivered > max_frames:
                raise RuntimeError(f"the network did not settle after {max_frames} frames")
            device, port_no, frame = queue.popleft()
            for out_dev, out_port, out_frame in self._deliver(device, port_no, frame):
                queue.append((out_dev, out_port, out_frame))
        return delivered

    def _deliver(self, device: str, port: int, frame: bytes) -> list[tuple[str, int, bytes]]:
        if device in self.nodes:
            node = self.nodes[device]
            self.current_node = device
            emits = process(node.tables, frame, port, self.now, self.recorder)
            return self._from_node(node, emits)
        if device in self.attached:
            endpoint, node_name, vif = self.attached[device]
            endpoint.receive(frame)
            return [(node_name, vif, f) for f in endpoint.take_outbox()]
        if device in self.ports:
            vm = self.ports[device].vm
            vm.receive(frame)
            vmport = self.ports[device]
            return [(vmport.node, vmport.vif, f) for f in vm.take_outbox()]
        box: Switch | Router = self.switches.get(device) or self.routers[device]
        return [
            (*self.links[(device, p)], f)
            for p, f in box.receive(port, frame)
            if (device, p) in self.links
        ]

    def _from_node(self, node: Node, emits: list[Emit]) -> list[tuple[str, int, bytes]]:
        out = []
        for vif, data in emits:
            if vif == AGENT_VIF:
                out.extend(self._from_node(node, self._agent(node, data)))
                continue
            if vif == FABRIC_VIF:
                self.fabric_frames.append((node.name, data))
            peer = self.links.get((node.name, vif))
            if peer is not None:
                out.append((*peer, data))
        return out

    def _agent(self, node: Node, data: bytes) -> list[Emit]:
        """Frames punted to the agent vif: kept for tests; flow misses allowed if auto_allow."""
        header, frame = parse_punt(data)
        node.punted.append((header, frame))
        if self.auto_allow and header.reason == Punt.FLOW_MISS:
            return self.allow_flow(node, header, frame)
        return []

    def allow_flow(self, node: Node, header: AgentHeader, frame: bytes) -> list[Emit]:
        """What the agent does for a flow miss under allow-all: forward both directions."""
        try:
            eth = parse_ethernet(frame)
            ip = parse_ipv4(frame, eth.offset)
            sport, dport = l4_ports(frame[eth.offset :], ip)
        except Malformed:
            return []
        key = (header.vrf, ip.proto, ip.src, ip.dst, sport, dport)
        reverse = (header.vrf, ip.proto, ip.dst, ip.src, dport, sport)
        return install_flow(
            node.tables, key, FlowAction.FORWARD, self.now, reverse, recorder=self.recorder
        )
