"""Tenant resources as the store keeps them, and the snapshot the compiler reads.

Ids follow AWS ("vpc-", "subnet-", "rtb-", "i-", "eni-" and 17 hex digits). Everything a
forwarding plane needs that must stay stable across changes (VNIs, VLANs, MACs, addresses, and
per-node VRF ids, labels and vif ids) is allocated by the service and stored here.
"""

from dataclasses import dataclass
from typing import Literal

from openvpc.model.nodeconfig import EncapName, Mode


@dataclass(frozen=True, slots=True)
class ComputeNode:
    name: str
    fabric_ip: str
    zone: str = ""  # its availability zone ("" = the region's first); an AZ is a group of nodes


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str  # also the access key's owner; every resource below carries it
    account: str = ""  # the 12-digit AWS account id the API shows as OwnerId


@dataclass(frozen=True, slots=True)
class Vpc:
    id: str
    tenant: str
    name: str
    cidr: str
    mode: Mode = "l3"
    encap: EncapName = "vxlan"
    main_route_table: str = ""  # "rtb-...", created with the VPC
    main_association: str = ""  # the "rtbassoc-..." id of its main table's association
    domain: str = "ec2.internal"
    arp_mode: Literal["proxy", "single_mac"] = "proxy"  # single_mac: legacy Amazon
    link_local_gateway: bool = False  # Contrail's 169.254.0.1 gateway in every VRF
    decrement_ttl: bool = False  # Amazon does not
    gateway_node: str | None = None  # l2 modes: a centralized gateway; None: anycast everywhere
    dns_support: bool = True  # enableDnsSupport: the DNS proxy answers in this VPC
    dns_hostnames: bool = False  # enableDnsHostnames
    address_usage_metrics: bool = False  # enableNetworkAddressUsageMetrics (recorded only)
    secondary: tuple[tuple[str, str], ...] = ()  # (association id, CIDR) of secondary blocks


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    tenant: str
    vpc: str
    name: str
    cidr: str
    zone: str = ""  # its availability zone ("" = the region's first)
    map_public_ip: bool = False  # MapPublicIpOnLaunch


@dataclass(frozen=True, slots=True)
class Route:
    """A route in a route table. target: "local", "blackhole", or the id of a network
    interface ("eni-..."), internet gateway ("igw-..."), NAT gateway ("nat-...") or peering
    connection ("pcx-..."). A route to an instance targets its primary interface and names the
    instance too, as EC2 does. Whether it is active or a blackhole follows from its target's
    existence and state (service.routing.route_state), so the target id stays as given."""

    destination: str
    target: str
    instance: str = ""  # "i-..." when it was created with an instance as its target


@dataclass(frozen=True, slots=True)
class RouteTable:
    """A route table of a VPC; the compiler makes one routing instance of each that is used.

    `vni` and `vlan` are global per routing instance (allocated when the table is created).
    """

    id: str
    tenant: str
    vpc: str
    name: str
    vni: int
    vlan: int | None
    routes: tuple[Route, ...] = ()  # always includes the local route for the VPC CIDR


@dataclass(frozen=True, slots=True)
class Association:
    """Subnet -> route table; a subnet without one uses its VPC's main route table."""

    subnet: str
    route_table: str
    tenant: str
    id: str = ""  # "rtbassoc-..." ("" in documents older than association ids)


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    tenant: str
    name: str
    node: str
    interface: str  # its primary "eni-..."


@dataclass(frozen=True, slots=True)
class Interface:
    """A VM's network interface (ENI): its MAC and address in one subnet."""

    id: str
    tenant: str
    subnet: str
    instance: str
    node: str
    mac: str
    ip: str
    netns: str  # where the VM's TAP lives (the lab's VM namespace)
    ifname: str = "eth0"
    source_check: bool = True
    allowed_addresses: tuple[str, ...] = ()  # addresses it may send from and claim by GARP
    groups: tuple[str, ...] = ()  # its security groups ("sg-..."), in the order given


@dataclass(frozen=True, slots=True)
class AddressOwner:
    """Which interface currently answers for a movable address (a VIP) in a VPC."""

    vpc: str
    ip: str
    interface: str
    tenant: str


@dataclass(frozen=True, slots=True)
class NodeAllocation:
    """Per compute node numbers that must not change while the thing exists.

    vrfs: route table id -> VRF id; labels: route table id -> (l3 label, l2 label);
    vifs: interface id -> vif id.
    """

    node: str
    vrfs: tuple[tuple[str, int], ...] = ()
    labels: tuple[tuple[str, int, int], ...] = ()
    vifs: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole desired state at one store revision: the compiler's only input."""

    revision: int
    fabric_mtu: int = 1500
    nodes: tuple[ComputeNode, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    vpcs: tuple[Vpc, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    route_tables: tuple[RouteTable, ...] = ()
    associations: tuple[Association, ...] = ()
    instances: tuple[Instance, ...] = ()
    interfaces: tuple[Interface, ...] = ()
    address_owners: tuple[AddressOwner, ...] = ()
    allocations: tuple[NodeAllocation, ...] = ()
