"""Which Elastic IPs and NAT gateways forward (docs/internet.md): an address mapped onto an
active VM interface, or a NAT gateway, whose subnet's route table routes somewhere to an
internet gateway attached to its VPC. Pure."""

from collections.abc import Mapping
from dataclasses import dataclass

from openvpc.model.resources import Interface, RouteTable, Snapshot, Subnet


@dataclass(frozen=True, slots=True)
class PublicMapping:
    """One active 1:1 translation: `public` <-> `private` of `interface` (routing instance
    `table`, on node `node`)."""

    public: str
    private: str
    interface: str
    table: str
    node: str


def attached_gateways(s: Snapshot) -> dict[str, str]:
    """Internet gateway id -> the VPC it is attached to (attached ones only)."""
    return {g.id: g.vpc for g in s.internet_gateways if g.vpc}


def routes_out(table: RouteTable, gateways: Mapping[str, str]) -> bool:
    """Whether the table routes anything to an internet gateway attached to its VPC."""
    return any(gateways.get(r.target) == table.vpc for r in table.routes)


def active_mappings(
    s: Snapshot,
    interfaces: Mapping[str, Interface],
    subnets: Mapping[str, Subnet],
    table_of_subnet: Mapping[str, str],
    tables: Mapping[str, RouteTable],
) -> list[PublicMapping]:
    """The Elastic IPs that forward now, in public address order."""
    if s.internet is None:
        return []
    gateways = attached_gateways(s)
    found = []
    for eip in s.elastic_ips:
        iface = interfaces.get(eip.interface)
        if iface is None or not eip.private_ip or eip.nat_gateway:
            continue
        table = tables.get(table_of_subnet.get(iface.subnet, ""))
        subnet = subnets.get(iface.subnet)
        if table is None or subnet is None or not routes_out(table, gateways):
            continue
        found.append(PublicMapping(eip.public_ip, eip.private_ip, iface.id, table.id, iface.node))
    return sorted(found, key=lambda m: tuple(int(x) for x in m.public.split(".")))


@dataclass(frozen=True, slots=True)
class ActiveNatGateway:
    """A NAT gateway that translates: `private` (its address in its subnet) goes out as
    `public` (its Elastic IP)."""

    id: str
    vpc: str
    subnet: str
    private: str
    public: str


def active_nat_gateways(
    s: Snapshot, table_of_subnet: Mapping[str, str], tables: Mapping[str, RouteTable]
) -> dict[str, ActiveNatGateway]:
    """NAT gateway id -> its translation, for the available public ones whose own subnet
    routes to an attached internet gateway (else, as in AWS, their traffic has no way out)."""
    if s.internet is None:
        return {}
    gateways = attached_gateways(s)
    public = {e.id: e.public_ip for e in s.elastic_ips if e.nat_gateway}
    found = {}
    for nat in s.nat_gateways:
        table = tables.get(table_of_subnet.get(nat.subnet, ""))
        address = public.get(nat.allocation)
        if nat.state != "available" or not nat.ip or address is None or table is None:
            continue
        if routes_out(table, gateways):
            found[nat.id] = ActiveNatGateway(nat.id, nat.vpc, nat.subnet, nat.ip, address)
    return found
