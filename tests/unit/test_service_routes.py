"""Route targets beyond interfaces (instances, internet and NAT gateways, peering
connections), route states, association ids, the main association and route quotas."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.compiler.compile import compile_all
from openvpc.model.resources import Route, Subnet, Vpc
from openvpc.service import Service, ServiceError
from openvpc.service.routing import MAX_ROUTES, MAX_TABLES, TableView, one_target


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


@pytest.fixture
def net(svc: Service) -> tuple[Vpc, Subnet]:
    return vpc_with_subnet(svc)


def _view(svc: Service, rtb: str, tenant: str = "red") -> TableView:
    (found,) = [v for v in svc.describe_route_table_views(tenant) if v.table.id == rtb]
    return found


def _state(svc: Service, rtb: str, destination: str) -> str:
    view = _view(svc, rtb)
    (state,) = [
        s
        for r, s in zip(view.table.routes, view.states, strict=True)
        if r.destination == destination
    ]
    return state


# -- targets ----------------------------------------------------------------------------
def test_one_target_exactly() -> None:
    with fails("MissingParameter"):
        one_target()
    with fails("InvalidParameterCombination"):
        one_target(gateway="igw-1", nat_gateway="nat-1")
    assert one_target(gateway="igw-1") == "igw-1"
    assert one_target(gateway="local") == "local"
    assert one_target(gateway="blackhole") == "blackhole"
    assert one_target(instance="i-1") == "i-1"
    with fails("InvalidGatewayID.NotFound"):
        one_target(gateway="nat-1")
    with fails("NatGatewayNotFound"):
        one_target(nat_gateway="igw-1")
    with fails("InvalidVpcPeeringConnectionID.NotFound"):
        one_target(peering="vpc-1")


def test_a_gateway_route_needs_the_gateway_attached_to_this_vpc(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    igw = svc.create_internet_gateway("red")
    with pytest.raises(ServiceError) as e:
        svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", igw.id)
    assert e.value.code == "InvalidParameterValue"
    assert e.value.message == (
        f"Route table {vpc.main_route_table} and network gateway {igw.id} "
        "belong to different networks"
    )
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    svc.attach_internet_gateway("red", igw.id, other.id)
    with fails("InvalidParameterValue"):
        svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", igw.id)
    route = svc.create_route("red", other.main_route_table, "0.0.0.0/0", igw.id)
    assert route == Route("0.0.0.0/0", igw.id)
    assert _state(svc, other.main_route_table, "0.0.0.0/0") == "active"


def test_a_route_through_a_detached_gateway_is_a_blackhole_that_keeps_its_target(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    igw = svc.create_internet_gateway("red")
    svc.attach_internet_gateway("red", igw.id, vpc.id)
    svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", igw.id)
    svc.detach_internet_gateway("red", igw.id, vpc.id)
    view = _view(svc, vpc.main_route_table)
    assert [(r.destination, r.target) for r in view.table.routes] == [
        ("0.0.0.0/0", igw.id),
        ("10.0.0.0/16", "local"),
    ]
    assert view.states == ("blackhole", "active")
    svc.attach_internet_gateway("red", igw.id, vpc.id)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "active"
    # the compiler keeps compiling: a gateway does not forward yet, its route discards
    compile_all(svc.snapshot())


def test_an_instance_target_is_its_primary_interface(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, subnet = net
    instance, eni = svc.run_instance("red", subnet.id, "nat", "node1", "ns1")
    route = svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", instance.id)
    assert route == Route("0.0.0.0/0", eni.id, instance.id)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "active"
    svc.stop_instances("red", [instance.id], now=10.0)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "blackhole"
    svc.start_instances("red", [instance.id], now=20.0)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "active"
    svc.terminate_instances("red", [instance.id], now=30.0)
    view = _view(svc, vpc.main_route_table)
    assert (view.table.routes[0], view.states[0]) == (
        Route("0.0.0.0/0", eni.id, instance.id),
        "blackhole",
    )
    with fails("InvalidInstanceID.NotFound"):  # still described, but no target any more
        svc.replace_route("red", vpc.main_route_table, "0.0.0.0/0", instance.id)


def test_a_nat_gateway_target_must_be_live_and_in_this_vpc(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, subnet = net
    igw = svc.create_internet_gateway("red")
    svc.attach_internet_gateway("red", igw.id, vpc.id)
    eip = svc.allocate_address("red")
    nat = svc.create_nat_gateway("red", subnet.id, eip.id, now=100.0)
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    with fails("InvalidParameterValue"):
        svc.create_route("red", other.main_route_table, "0.0.0.0/0", nat.id)
    svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", nat.id)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "active"
    svc.delete_nat_gateway("red", nat.id, now=200.0)
    assert _state(svc, vpc.main_route_table, "0.0.0.0/0") == "blackhole"
    with fails("NatGatewayNotFound"):
        svc.replace_route("red", vpc.main_route_table, "0.0.0.0/0", nat.id)
    compile_all(svc.snapshot())


def test_a_peering_target_must_be_active_and_touch_this_vpc(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    peer = svc.create_vpc("red", "peer", "10.1.0.0/16")
    third = svc.create_vpc("red", "third", "10.2.0.0/16")
    pcx = svc.create_vpc_peering_connection("red", vpc.id, peer.id, now=0.0)
    with fails("InvalidParameterValue"):  # still pending
        svc.create_route("red", vpc.main_route_table, "10.1.0.0/16", pcx.id)
    svc.accept_vpc_peering_connection("red", pcx.id, now=1.0)
    svc.create_route("red", vpc.main_route_table, "10.1.0.0/16", pcx.id)
    svc.create_route("red", peer.main_route_table, "10.0.0.0/16", pcx.id)
    with pytest.raises(ServiceError) as e:
        svc.create_route("red", third.main_route_table, "10.0.0.0/16", pcx.id)
    assert "belong to different networks" in e.value.message
    svc.delete_vpc_peering_connection("red", pcx.id, now=2.0)
    assert _state(svc, vpc.main_route_table, "10.1.0.0/16") == "blackhole"
    assert _state(svc, peer.main_route_table, "10.0.0.0/16") == "blackhole"
    compile_all(svc.snapshot())


def test_another_tenants_gateway_is_not_found(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, _ = net
    blue_vpc = svc.create_vpc("blue", "p", "10.0.0.0/16")
    igw = svc.create_internet_gateway("blue")
    svc.attach_internet_gateway("blue", igw.id, blue_vpc.id)
    with fails("InvalidGatewayID.NotFound"):
        svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", igw.id)


def test_route_limit(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, _ = net
    for i in range(MAX_ROUTES - 1):  # the local route counts
        svc.create_route("red", vpc.main_route_table, f"172.16.{i}.0/24", "blackhole")
    with fails("RouteLimitExceeded"):
        svc.create_route("red", vpc.main_route_table, "172.17.0.0/24", "blackhole")


def test_route_table_limit(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, _ = net
    for i in range(MAX_TABLES - 1):  # the main table counts
        svc.create_route_table("red", vpc.id, f"t{i}")
    with fails("RouteTableLimitExceeded"):
        svc.create_route_table("red", vpc.id, "one-too-many")


# -- associations -------------------------------------------------------------------------
def test_the_main_association_has_an_id_and_cannot_be_disassociated(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    assert vpc.main_association.startswith("rtbassoc-")
    view = _view(svc, vpc.main_route_table)
    assert view.main
    assert [(a.subnet, a.id) for a in view.associations] == [("", vpc.main_association)]
    with pytest.raises(ServiceError) as e:
        svc.disassociate_route_table("red", vpc.main_association)
    assert e.value.code == "InvalidParameterValue"


def test_replacing_the_main_association_makes_another_table_main(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, subnet = net
    new_main = svc.create_route_table("red", vpc.id, "new-main")
    svc.run_instance("red", subnet.id, "r1", "node1", "ns1")
    new_id = svc.replace_route_table_association("red", vpc.main_association, new_main.id)
    (moved,) = [v for v in svc.describe_vpcs("red") if v.id == vpc.id]
    assert (moved.main_route_table, moved.main_association) == (new_main.id, new_id)
    assert _view(svc, new_main.id).main
    assert not _view(svc, vpc.main_route_table).main
    # the subnet without an explicit association follows the main table onto the node
    (alloc,) = [a for a in svc.snapshot().allocations if a.node == "node1"]
    assert [t for t, _ in alloc.vrfs] == [new_main.id]
    svc.delete_route_table("red", vpc.main_route_table)  # no longer main: it may go
    with fails("DependencyViolation"):
        svc.delete_route_table("red", new_main.id)
    with fails("InvalidAssociationID.NotFound"):
        svc.replace_route_table_association("red", vpc.main_association, new_main.id)


def test_a_main_association_cannot_move_to_another_vpcs_table(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    with fails("InvalidParameterValue"):
        svc.replace_route_table_association("red", vpc.main_association, other.main_route_table)


def test_explicit_associations_show_on_their_table(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, subnet = net
    table = svc.create_route_table("red", vpc.id, "t")
    association = svc.associate_route_table("red", table.id, subnet.id)
    view = _view(svc, table.id)
    assert not view.main
    assert [(a.subnet, a.id) for a in view.associations] == [(subnet.id, association.id)]
    with fails("InvalidRouteTableID.NotFound"):
        svc.replace_route_table_association("red", association.id, "rtb-00000000000000000")
    far = svc.create_vpc("red", "far", "10.1.0.0/16")
    with fails("InvalidParameterValue"):
        svc.replace_route_table_association("red", association.id, far.main_route_table)


def test_routes_to_gateways_and_peering_compile_as_discards(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    """Gateways and peering connections do not forward yet: their routes drop."""
    vpc, subnet = net
    svc.run_instance("red", subnet.id, "r1", "node1", "ns1")
    igw = svc.create_internet_gateway("red")
    svc.attach_internet_gateway("red", igw.id, vpc.id)
    nat = svc.create_nat_gateway("red", subnet.id, None, connectivity="private", now=1.0)
    peer = svc.create_vpc("red", "peer", "10.1.0.0/16")
    pcx = svc.create_vpc_peering_connection("red", vpc.id, peer.id, now=1.0)
    svc.accept_vpc_peering_connection("red", pcx.id, now=2.0)
    main = vpc.main_route_table
    svc.create_route("red", main, "0.0.0.0/0", igw.id)
    svc.create_route("red", main, "172.16.0.0/12", nat.id)
    svc.create_route("red", main, "10.1.0.0/16", pcx.id)
    config = compile_all(svc.snapshot())["node1"]
    kinds = {nh.key: nh.kind for nh in config.nexthops}
    routed = {r.prefix: kinds[r.nh] for r in config.routes}
    assert [routed[p] for p in ("0.0.0.0/0", "172.16.0.0/12", "10.1.0.0/16")] == [
        "discard",
        "discard",
        "discard",
    ]


def test_replacing_the_local_route_with_local_changes_nothing(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    rev = svc.revision()
    assert svc.replace_route("red", vpc.main_route_table, "10.0.0.0/16", "local") == Route(
        "10.0.0.0/16", "local"
    )
    assert svc.revision() == rev
    with fails("InvalidParameterValue"):
        svc.replace_route("red", vpc.main_route_table, "10.0.0.0/16", "blackhole")
