"""Tenant resources as the store keeps them, and the snapshot the compiler reads.

Ids follow AWS ("vpc-", "subnet-", "rtb-", "i-", "eni-" and 17 hex digits). Everything a
forwarding plane needs that must stay stable across changes (VNIs, VLANs, MACs, addresses, and
per-node VRF ids, labels and vif ids) is allocated by the service and stored here.
"""

from dataclasses import dataclass
from typing import Literal

from openvpc.model.gateways import ElasticIp, InternetGateway, NatGateway, VpcPeeringConnection
from openvpc.model.internet import InternetEdge
from openvpc.model.nodeconfig import EncapName, Mode
from openvpc.model.policy import AclAssociation, NetworkAcl, SecurityGroup


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


InstanceState = Literal["running", "stopped", "terminated"]


@dataclass(frozen=True, slots=True)
class Instance:
    """A VM. `state` is the desired one; what the API reports (pending, stopping, ...) also
    depends on what the node did, which the store does not hold."""

    id: str
    tenant: str
    name: str  # a DNS label the DNS proxy answers for
    node: str
    interface: str  # its primary "eni-..." (kept after termination, when it is gone)
    state: InstanceState = "running"
    image: str = ""  # "ami-..." from the fixed catalogue
    instance_type: str = ""
    launched: float = 0.0  # epoch seconds of the launch
    zone: str = ""  # its subnet's availability zone ("" = the region's first)
    revision: int = 0  # the store revision at which it was last (re)started
    dns_name: str = ""  # private DNS name: ip-a-b-c-d.<domain>
    subnet: str = ""
    vpc: str = ""
    changed: float = 0.0  # epoch seconds of the last stop, start or termination
    reservation: str = ""  # "r-...": the RunInstances call that launched it
    launch_index: int = 0  # its place among the instances of that call


@dataclass(frozen=True, slots=True)
class Interface:
    """A network interface (ENI): its MAC and address in one subnet. `instance`, `node`,
    `netns` and `attachment` are "" while it is detached."""

    id: str
    tenant: str
    subnet: str
    instance: str
    node: str
    mac: str
    ip: str
    netns: str  # where the VM's TAP lives (the lab's VM namespace); "" when detached
    ifname: str = "eth0"
    source_check: bool = True
    allowed_addresses: tuple[str, ...] = ()  # addresses it may send from and claim by GARP
    groups: tuple[str, ...] = ()  # its security groups ("sg-..."), in the order given
    description: str = ""
    secondary_ips: tuple[str, ...] = ()  # its secondary private addresses, in assignment order
    attachment: str = ""  # "eni-attach-..." while attached to an instance
    device_index: int = 0  # 0: the instance's primary interface
    delete_on_termination: bool = True  # goes with its instance
    attached: float = 0.0  # epoch seconds of the attachment


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
    security_groups: tuple[SecurityGroup, ...] = ()
    network_acls: tuple[NetworkAcl, ...] = ()
    acl_associations: tuple[AclAssociation, ...] = ()
    peerings: tuple[VpcPeeringConnection, ...] = ()
    internet: InternetEdge | None = None  # the gateway node's port into the internet
    internet_gateways: tuple[InternetGateway, ...] = ()
    elastic_ips: tuple[ElasticIp, ...] = ()
    nat_gateways: tuple[NatGateway, ...] = ()
