"""Route tables, their routes and subnet associations, with the VNI and VLAN of each table."""

from dataclasses import replace
from ipaddress import IPv4Network

from openvpc.model.resources import Association, Interface, Route, RouteTable, Subnet, Vpc
from openvpc.service.errors import ServiceError, dependency, invalid_value
from openvpc.service.numbers import VLAN_RANGE, VNI_RANGE, Exhausted, next_free
from openvpc.service.repo import Repo
from openvpc.service.validate import check_resource_name, check_route_destination, parse_cidr

LOCAL = "local"
BLACKHOLE = "blackhole"
MAIN = "main"


def create_route_table(repo: Repo, tenant: str, vpc_id: str, name: str) -> RouteTable:
    """A table holding only the VPC's local route, with a fresh VNI and VLAN."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    check_resource_name(name, "name")
    tables = repo.all(RouteTable)
    try:
        vni = next_free({t.vni for t in tables}, VNI_RANGE, repo.counter("vni", VNI_RANGE[0]))
    except Exhausted:
        raise ServiceError("RouteTableLimitExceeded", "No VNI is left for a route table.") from None
    vlan: int | None
    try:
        used_vlans = {t.vlan for t in tables if t.vlan is not None}
        vlan = next_free(used_vlans, VLAN_RANGE, repo.counter("vlan", VLAN_RANGE[0]))
        repo.set_counter("vlan", vlan + 1)
    except Exhausted:
        if vpc.encap == "vlan":
            raise ServiceError(
                "RouteTableLimitExceeded",
                f"All VLAN ids {VLAN_RANGE[0]}-{VLAN_RANGE[1]} are in use; "
                "a VPC with VLAN encapsulation cannot have another route table.",
            ) from None
        vlan = None  # only VLAN encapsulation needs one
    repo.set_counter("vni", vni + 1)
    table = RouteTable(
        repo.new_id("rtb", RouteTable), tenant, vpc.id, name, vni, vlan, (Route(vpc.cidr, LOCAL),)
    )
    repo.put(table)
    return table


def delete_route_table(repo: Repo, tenant: str, rtb_id: str) -> None:
    table = repo.owned(RouteTable, rtb_id, tenant)
    vpc = repo.get(Vpc, table.vpc)
    in_use = any(a.route_table == table.id for a in repo.all(Association))
    if in_use or (vpc is not None and vpc.main_route_table == table.id):
        raise dependency("routeTable", table.id)
    repo.delete(RouteTable, table.id)


def _destination(text: str) -> IPv4Network:
    net = parse_cidr(text, "destinationCidrBlock")
    check_route_destination(net)
    return net


def _check_target(repo: Repo, table: RouteTable, vpc: Vpc, dest: IPv4Network, target: str) -> None:
    if target == BLACKHOLE:
        return
    if target == LOCAL:
        if str(dest) != vpc.cidr:
            raise invalid_value("target", target, f"Only {vpc.cidr} can route to local.")
        return
    if not isinstance(target, str) or not target.startswith("eni-"):
        raise invalid_value("target", target, "Use local, blackhole or a network interface id.")
    iface = repo.owned(Interface, target, table.tenant)
    subnet = repo.get(Subnet, iface.subnet)
    if subnet is None or subnet.vpc != table.vpc:
        raise ServiceError(
            "InvalidParameterValue",
            f"Route table {table.id} and network interface {target} belong to different networks.",
        )


def _sorted(routes: list[Route]) -> tuple[Route, ...]:
    def key(r: Route) -> tuple[int, int]:
        net = IPv4Network(r.destination)
        return int(net.network_address), net.prefixlen

    return tuple(sorted(routes, key=key))


def create_route(repo: Repo, tenant: str, rtb_id: str, destination: str, target: str) -> Route:
    table = repo.owned(RouteTable, rtb_id, tenant)
    vpc = repo.owned(Vpc, table.vpc, tenant)
    dest = _destination(destination)
    if any(r.destination == str(dest) for r in table.routes):
        raise ServiceError("RouteAlreadyExists", f"The route identified by {dest} already exists.")
    _check_target(repo, table, vpc, dest, target)
    route = Route(str(dest), target)
    repo.put(replace(table, routes=_sorted([*table.routes, route])))
    return route


def replace_route(repo: Repo, tenant: str, rtb_id: str, destination: str, target: str) -> Route:
    table = repo.owned(RouteTable, rtb_id, tenant)
    vpc = repo.owned(Vpc, table.vpc, tenant)
    dest = _destination(destination)
    old = _find(table, dest)
    if old.target == LOCAL:
        raise invalid_value("destinationCidrBlock", dest, "The local route cannot be replaced.")
    _check_target(repo, table, vpc, dest, target)
    route = Route(str(dest), target)
    others = [r for r in table.routes if r != old]
    repo.put(replace(table, routes=_sorted([*others, route])))
    return route


def delete_route(repo: Repo, tenant: str, rtb_id: str, destination: str) -> None:
    table = repo.owned(RouteTable, rtb_id, tenant)
    dest = _destination(destination)
    old = _find(table, dest)
    if old.target == LOCAL:
        raise ServiceError(
            "InvalidParameterValue", f"cannot remove local route {dest} in route table {table.id}"
        )
    repo.put(replace(table, routes=tuple(r for r in table.routes if r != old)))


def _find(table: RouteTable, dest: IPv4Network) -> Route:
    for r in table.routes:
        if r.destination == str(dest):
            return r
    raise ServiceError(
        "InvalidRoute.NotFound",
        f"no route with destination-cidr-block {dest} in route table {table.id}",
    )


def associate_route_table(repo: Repo, tenant: str, rtb_id: str, subnet_id: str) -> Association:
    """Point a subnet at a table, replacing the association it had."""
    table = repo.owned(RouteTable, rtb_id, tenant)
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if subnet.vpc != table.vpc:
        raise ServiceError(
            "InvalidParameterValue",
            f"Route table {table.id} and subnet {subnet.id} belong to different networks.",
        )
    association = Association(subnet.id, table.id, tenant)
    repo.put(association)
    return association


def disassociate_route_table(repo: Repo, tenant: str, subnet_id: str) -> None:
    """Return a subnet to its VPC's main table."""
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if not repo.delete(Association, subnet.id):
        raise ServiceError(
            "InvalidAssociationID.NotFound",
            f"The subnet '{subnet.id}' has no explicit route table association.",
        )
