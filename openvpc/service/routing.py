"""Route tables, their routes (to interfaces, instances, gateways and peering connections)
and subnet associations, with the VNI and VLAN of each table."""

from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from typing import Literal

from openvpc.model.gateways import InternetGateway, NatGateway, VpcPeeringConnection
from openvpc.model.resources import (
    Association,
    Instance,
    Interface,
    Route,
    RouteTable,
    Subnet,
    Vpc,
)
from openvpc.service import peering
from openvpc.service.errors import ServiceError, dependency, invalid_value, not_found
from openvpc.service.numbers import VLAN_RANGE, VNI_RANGE, Exhausted, next_free
from openvpc.service.repo import Repo
from openvpc.service.validate import check_resource_name, check_route_destination, parse_cidr

LOCAL = "local"
BLACKHOLE = "blackhole"
MAIN = "main"
MAX_ROUTES = 50  # per table (AWS's default quota)
MAX_TABLES = 200  # per VPC (AWS's default quota)
LIVE_NAT = ("pending", "available")  # NAT gateway states a route can use

RouteState = Literal["active", "blackhole"]


def create_route_table(repo: Repo, tenant: str, vpc_id: str, name: str) -> RouteTable:
    """A table holding only the VPC's local route, with a fresh VNI and VLAN."""
    vpc = repo.owned(Vpc, vpc_id, tenant)
    check_resource_name(name, "name")
    if len(repo.find(RouteTable, "vpc", vpc.id)) >= MAX_TABLES:
        raise ServiceError(
            "RouteTableLimitExceeded",
            f"The maximum number of route tables ({MAX_TABLES}) has been reached for {vpc.id}.",
        )
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


def one_target(
    gateway: str | None = None,
    nat_gateway: str | None = None,
    instance: str | None = None,
    interface: str | None = None,
    peering: str | None = None,
) -> str:
    """The one target of a CreateRoute / ReplaceRoute request, from its target parameters
    (GatewayId may be "local" or "blackhole"). An id of the wrong kind for its parameter is
    not found."""
    given = [
        (kind, value)
        for kind, value in (
            ("gateway", gateway),
            ("natGateway", nat_gateway),
            ("instance", instance),
            ("networkInterface", interface),
            ("vpcPeeringConnection", peering),
        )
        if value
    ]
    if not given:
        raise ServiceError(
            "MissingParameter",
            "The request must contain exactly one of gatewayId, natGatewayId, instanceId, "
            "networkInterfaceId or vpcPeeringConnectionId",
        )
    if len(given) > 1:
        names = " and ".join(f"{kind}Id" for kind, _ in given)
        raise ServiceError(
            "InvalidParameterCombination",
            f"The parameters {names} cannot be specified together",
        )
    ((kind, value),) = given
    if kind == "gateway":  # "blackhole" is openvpc's: a route that drops what it matches
        if value not in (LOCAL, BLACKHOLE) and not value.startswith("igw-"):
            raise ServiceError(
                "InvalidGatewayID.NotFound", f"The gateway ID '{value}' does not exist"
            )
    elif not value.startswith(_PREFIX[kind]):
        raise not_found(kind, value)
    return value


_PREFIX = {
    "natGateway": "nat-",
    "instance": "i-",
    "networkInterface": "eni-",
    "vpcPeeringConnection": "pcx-",
}


def _different(table: RouteTable, what: str, target: str) -> ServiceError:
    return ServiceError(
        "InvalidParameterValue",
        f"Route table {table.id} and {what} {target} belong to different networks",
    )


def _route_to(repo: Repo, table: RouteTable, vpc: Vpc, dest: IPv4Network, target: str) -> Route:
    """The route to `target`, checked as EC2 checks it (the target exists for this tenant
    and lies in, or for a peering connection touches, the table's VPC)."""
    if target == BLACKHOLE:
        return Route(str(dest), BLACKHOLE)
    if target == LOCAL:
        if str(dest) != vpc.cidr:
            raise invalid_value("target", target, f"Only {vpc.cidr} can route to local.")
        return Route(str(dest), LOCAL)
    if not isinstance(target, str):
        raise invalid_value("target", target, "Not a route target.")
    instance = ""
    if target.startswith("i-"):
        instance = target
        found = repo.owned(Instance, target, table.tenant)
        if found.state == "terminated":  # described for a while, no longer a target
            raise not_found("instance", target)
        target = found.interface
    if target.startswith("eni-"):
        iface = repo.owned(Interface, target, table.tenant)
        subnet = repo.get(Subnet, iface.subnet)
        if subnet is None or subnet.vpc != table.vpc:
            raise _different(table, "network interface", target)
    elif target.startswith("igw-"):
        igw = repo.get(InternetGateway, target)
        if igw is None or igw.tenant != table.tenant:
            raise ServiceError(
                "InvalidGatewayID.NotFound", f"The gateway ID '{target}' does not exist"
            )
        if igw.vpc != table.vpc:
            raise _different(table, "network gateway", target)
    elif target.startswith("nat-"):
        nat = repo.owned(NatGateway, target, table.tenant)
        if nat.state not in LIVE_NAT:
            raise not_found("natGateway", target)
        if nat.vpc != table.vpc:
            raise _different(table, "network gateway", target)
    elif target.startswith("pcx-"):
        pcx = peering.visible(repo, target, table.tenant)
        if table.vpc not in (pcx.vpc, pcx.accepter_vpc):
            raise _different(table, "VPC peering connection", target)
        if pcx.status != "active":
            raise invalid_value(
                "vpcPeeringConnectionId", target, "The VPC peering connection is not active."
            )
    else:
        raise invalid_value(
            "target", target, "Use local, blackhole or the id of a gateway or network interface."
        )
    return Route(str(dest), target, instance)


def route_state(repo: Repo, table: RouteTable, route: Route) -> RouteState:
    """ "active", or "blackhole" when the target is gone or not usable (a deleted interface
    or NAT gateway, a detached internet gateway, a peering connection no longer active)."""
    target = route.target
    if target == LOCAL:
        return "active"
    live = False
    if target.startswith("eni-"):
        iface = repo.get(Interface, target)
        instance = (
            None if iface is None or not iface.instance else repo.get(Instance, iface.instance)
        )
        live = instance is not None and instance.state == "running"
    elif target.startswith("igw-"):
        igw = repo.get(InternetGateway, target)
        live = igw is not None and igw.vpc == table.vpc
    elif target.startswith("nat-"):
        nat = repo.get(NatGateway, target)
        live = nat is not None and nat.state in LIVE_NAT
    elif target.startswith("pcx-"):
        pcx = repo.get(VpcPeeringConnection, target)
        live = pcx is not None and pcx.status == "active"
    return "active" if live else "blackhole"


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
    route = _route_to(repo, table, vpc, dest, target)
    if len(table.routes) >= MAX_ROUTES:
        raise ServiceError(
            "RouteLimitExceeded",
            f"The maximum number of routes ({MAX_ROUTES}) has been reached for {table.id}.",
        )
    repo.put(replace(table, routes=_sorted([*table.routes, route])))
    return route


def replace_route(repo: Repo, tenant: str, rtb_id: str, destination: str, target: str) -> Route:
    table = repo.owned(RouteTable, rtb_id, tenant)
    vpc = repo.owned(Vpc, table.vpc, tenant)
    dest = _destination(destination)
    old = _find(table, dest)
    if old.target == LOCAL:
        if target == LOCAL:  # restoring the local target (LocalTarget): it never left
            return old
        raise invalid_value("destinationCidrBlock", dest, "The local route cannot be replaced.")
    route = _route_to(repo, table, vpc, dest, target)
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


# -- associations -----------------------------------------------------------------------
def association_id(association: Association) -> str:
    """Its "rtbassoc-" id; documents from before ids existed get a stable one from the subnet."""
    return association.id or "rtbassoc-" + association.subnet.removeprefix("subnet-")


def main_association_id(vpc: Vpc) -> str:
    return vpc.main_association or "rtbassoc-" + vpc.id.removeprefix("vpc-")


def associate_route_table(repo: Repo, tenant: str, rtb_id: str, subnet_id: str) -> Association:
    """Give a subnet its explicit table; one that has one already must be replaced instead."""
    table = repo.owned(RouteTable, rtb_id, tenant)
    subnet = repo.owned(Subnet, subnet_id, tenant)
    if subnet.vpc != table.vpc:
        raise _different(table, "subnet", subnet.id)
    existing = repo.get(Association, subnet.id)
    if existing is not None:
        raise ServiceError(
            "Resource.AlreadyAssociated",
            f"the specified association for route table {existing.route_table} conflicts "
            "with an existing association",
        )
    association = Association(subnet.id, table.id, tenant, repo.new_id("rtbassoc", Association))
    repo.put(association)
    return association


def _association(repo: Repo, tenant: str, association: str) -> Association | Vpc:
    """A tenant's explicit association, or the VPC whose main association this is."""
    if isinstance(association, str):
        for a in repo.find(Association, "tenant", tenant):
            if association_id(a) == association:
                return a
        for vpc in repo.find(Vpc, "tenant", tenant):
            if main_association_id(vpc) == association:
                return vpc
    raise not_found("association", str(association))


def disassociate_route_table(repo: Repo, tenant: str, association_id: str) -> None:
    """Return a subnet to its VPC's main table (the main association itself stays)."""
    found = _association(repo, tenant, association_id)
    if isinstance(found, Vpc):
        raise ServiceError(
            "InvalidParameterValue",
            f"cannot disassociate the main route table association {association_id}",
        )
    repo.delete(Association, found.subnet)


def replace_route_table_association(
    repo: Repo, tenant: str, association_id: str, rtb_id: str
) -> str:
    """Point an association at another table of the VPC; on the main association, that
    table becomes the VPC's main one. Returns the new association id."""
    found = _association(repo, tenant, association_id)
    table = repo.owned(RouteTable, rtb_id, tenant)
    new_id = repo.new_id("rtbassoc", Association)
    if isinstance(found, Vpc):
        if found.id != table.vpc:
            raise _different(table, "vpc", found.id)
        repo.put(replace(found, main_route_table=table.id, main_association=new_id))
        return new_id
    if repo.get(Subnet, found.subnet) is None or table.vpc != _vpc_of_subnet(repo, found.subnet):
        raise _different(table, "subnet", found.subnet)
    repo.put(Association(found.subnet, table.id, tenant, new_id))
    return new_id


def _vpc_of_subnet(repo: Repo, subnet_id: str) -> str:
    subnet = repo.get(Subnet, subnet_id)
    return "" if subnet is None else subnet.vpc


@dataclass(frozen=True, slots=True)
class TableView:
    """A route table as DescribeRouteTables shows it: main or not, its associations (the
    main one first, with subnet ""), and the state of each route, in order."""

    table: RouteTable
    associations: tuple[Association, ...]
    states: tuple[RouteState, ...]

    @property
    def main(self) -> bool:
        return any(a.subnet == "" for a in self.associations)


def views(repo: Repo, tenant: str) -> list[TableView]:
    """Every route table of the tenant, sorted by id."""
    mains = {
        v.main_route_table: Association("", v.main_route_table, tenant, main_association_id(v))
        for v in repo.find(Vpc, "tenant", tenant)
    }
    explicit: dict[str, list[Association]] = {}
    for a in repo.find(Association, "tenant", tenant):
        explicit.setdefault(a.route_table, []).append(replace(a, id=association_id(a)))
    result = []
    for table in repo.find(RouteTable, "tenant", tenant):
        main = [mains[table.id]] if table.id in mains else []
        states = tuple(route_state(repo, table, r) for r in table.routes)
        result.append(TableView(table, (*main, *explicit.get(table.id, [])), states))
    return result
