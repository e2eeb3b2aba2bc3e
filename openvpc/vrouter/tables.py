"""The vRouter's tables (vifs, VRFs with IP and MAC FIBs, next hops, labels, VNIs, VLANs,
flows, underlay FIB and neighbours) and the programming interface the agent uses."""

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from openvpc.model.forwarding import VROUTER_MAC, ArpMode, Encap, Mode
from openvpc.model.rules import NetworkAclConfig, PortSecurity
from openvpc.packet.ethernet import ZERO_MAC
from openvpc.vrouter.encap import OuterTemplate
from openvpc.vrouter.flow import FlowTable
from openvpc.vrouter.limits import DEFAULT_LIMITS, NodeLimits
from openvpc.vrouter.lpm import Lpm
from openvpc.vrouter.natgw import NatGateways
from openvpc.vrouter.nexthop import DISCARD_NH_ID, DiscardNH, NextHop
from openvpc.vrouter.ratelimit import PuntLimiter

MAX_PENDING = 3


class VifKind(StrEnum):
    VIRTUAL = "virtual"  # a VM's TAP
    FABRIC = "physical"  # the underlay port
    AGENT = "agent"  # the punt channel to the agent (Contrail's pkt0)


@dataclass(slots=True)
class VifStats:
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    drops: int = 0


@dataclass(slots=True)
class Vif:
    """A virtual interface. For a VM: its MAC, address, subnet and gateway."""

    id: int
    kind: VifKind
    name: str
    vrf: int = 0
    mac: bytes = ZERO_MAC
    ip: bytes | None = None
    prefix_len: int = 32
    gateway_ip: bytes | None = None
    mtu: int = 1500
    policy: bool = False  # IP packets from this vif go through the flow table
    agent_decides: bool = True  # a new flow's first packet waits for the agent, else the
    # vRouter decides it from the port's rules
    source_check: bool = True  # Amazon's source/destination check
    allowed_ips: frozenset[bytes] = frozenset()  # extra source addresses (VIPs)
    security: PortSecurity | None = None  # its security groups' rules; None: allow all
    acl: NetworkAclConfig | None = None  # its subnet's network ACL; None: allow all
    stats: VifStats = field(default_factory=VifStats)


@dataclass(frozen=True, slots=True)
class Route:
    """A FIB entry: next hop, label/VNI/VLAN id for tunnels, and the stitched MAC for ARP."""

    nh: int
    label: int | None = None
    mac: bytes | None = None


@dataclass(slots=True)
class Vrf:
    """A routing instance: IP FIB, MAC FIB, forwarding mode and gateway settings."""

    id: int
    name: str
    mode: Mode = Mode.L3
    gateway_mac: bytes = VROUTER_MAC
    arp_mode: ArpMode = ArpMode.PROXY
    link_local_gateway: bytes | None = None  # Contrail's 169.254.x.x default gateway
    decrement_ttl: bool = False  # Amazon does not
    unicast_only: bool = True  # Amazon: only unicast IPv4 in l3 mode
    ip_fib: Lpm[Route] = field(default_factory=Lpm)
    mac_fib: dict[bytes, Route] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LabelEntry:
    """An MPLS label allocated by this vRouter: which VRF, and whether Ethernet is inside."""

    vrf: int
    l2: bool = False


@dataclass(slots=True)
class Fabric:
    """This node's underlay identity."""

    vif: int
    ip: bytes
    mac: bytes
    mtu: int = 1500
    # the kernel routes outer IPv4 packets (raw socket): no underlay FIB or ARP for them
    kernel_routed: bool = False


class Tables:
    """All forwarding state of one vRouter; `generation` bumps on every route change."""

    def __init__(self, fabric: Fabric, limits: NodeLimits = DEFAULT_LIMITS) -> None:
        self.fabric = fabric
        self.limits = limits
        self.vifs: dict[int, Vif] = {}
        self.vrfs: dict[int, Vrf] = {}
        self.nexthops: dict[int, NextHop] = {DISCARD_NH_ID: DiscardNH()}
        self.labels: dict[int, LabelEntry] = {}
        self.vnis: dict[int, int] = {}
        self.vlans: dict[int, int] = {}
        self.underlay: Lpm[bytes] = Lpm()  # prefix -> gateway (b"": directly attached)
        self.neighbors: dict[bytes, bytes] = {}  # underlay IP -> MAC
        self.pending: dict[bytes, list[bytes]] = {}  # underlay IP -> IP packets awaiting ARP
        self.arp_retries: dict[bytes, int] = {}  # underlay IP -> ARP requests re-sent
        self.drops: Counter[str] = Counter()
        self.flows = FlowTable(
            limits.flow_capacity,
            limits.vrf_quota,
            drops=self.drops,
            hold_limit=limits.vif_hold_limit,
        )
        self.punts = PuntLimiter(limits.vif_punt_rate, limits.vif_punt_burst)
        self.nat_gateways = NatGateways()  # the NAT gateways' translations on this node
        self.agent_vif: int | None = None
        self.templates: dict[tuple[Encap, bytes, int], OuterTemplate] = {}
        self.generation = 0
        self.add_vif(
            Vif(fabric.vif, VifKind.FABRIC, "fabric", mac=fabric.mac, ip=fabric.ip, mtu=fabric.mtu)
        )

    # -- programming interface: every call is idempotent ------------------------------
    def add_vif(self, vif: Vif) -> None:
        self.vifs[vif.id] = vif
        if vif.kind is VifKind.AGENT:
            self.agent_vif = vif.id

    def delete_vif(self, vif_id: int) -> None:
        vif = self.vifs.pop(vif_id, None)
        if vif is not None and vif.kind is VifKind.AGENT:
            self.agent_vif = None

    def add_vrf(self, vrf: Vrf) -> None:
        self.vrfs[vrf.id] = vrf
        self.generation += 1

    def delete_vrf(self, vrf_id: int) -> None:
        self.vrfs.pop(vrf_id, None)
        self.generation += 1

    def add_nexthop(self, nh_id: int, nh: NextHop) -> None:
        if nh_id == DISCARD_NH_ID:
            raise ValueError("next hop 0 is the discard next hop")
        self.nexthops[nh_id] = nh
        self.generation += 1

    def delete_nexthop(self, nh_id: int) -> None:
        if nh_id != DISCARD_NH_ID:
            self.nexthops.pop(nh_id, None)
            self.generation += 1

    def add_route(self, vrf_id: int, prefix: bytes, plen: int, route: Route) -> None:
        self.vrfs[vrf_id].ip_fib.add(prefix, plen, route)
        self.generation += 1

    def delete_route(self, vrf_id: int, prefix: bytes, plen: int) -> None:
        self.vrfs[vrf_id].ip_fib.remove(prefix, plen)
        self.generation += 1

    def add_mac_route(self, vrf_id: int, mac: bytes, route: Route) -> None:
        self.vrfs[vrf_id].mac_fib[mac] = route
        self.generation += 1

    def delete_mac_route(self, vrf_id: int, mac: bytes) -> None:
        self.vrfs[vrf_id].mac_fib.pop(mac, None)
        self.generation += 1

    def add_label(self, label: int, entry: LabelEntry) -> None:
        self.labels[label] = entry

    def delete_label(self, label: int) -> None:
        self.labels.pop(label, None)

    def add_vni(self, vni: int, vrf_id: int) -> None:
        self.vnis[vni] = vrf_id

    def delete_vni(self, vni: int) -> None:
        self.vnis.pop(vni, None)

    def add_vlan(self, vlan: int, vrf_id: int) -> None:
        if not 1 <= vlan <= 4094:
            raise ValueError(f"VLAN id out of range: {vlan}")
        self.vlans[vlan] = vrf_id

    def delete_vlan(self, vlan: int) -> None:
        self.vlans.pop(vlan, None)

    def add_underlay_route(self, prefix: bytes, plen: int, gateway: bytes | None) -> None:
        """A route in the global (fabric) FIB; gateway None means directly attached."""
        self.underlay.add(prefix, plen, gateway or b"")

    def add_neighbor(self, ip: bytes, mac: bytes) -> None:
        self.neighbors[ip] = mac

    def expire(self, now: float) -> None:
        """The periodic pass: age flows and NAT gateway translations, forget refilled punt
        buckets."""
        self.flows.age(now)
        self.nat_gateways.age(now)
        self.punts.prune(now)

    def count_drop(self, reason: str, vif: Vif | None) -> None:
        self.drops[reason] += 1
        if vif is not None:
            vif.stats.drops += 1
