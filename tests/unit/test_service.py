"""The service's AWS rules and error codes: VPCs, subnets, route tables, routes,
associations, instances and operator calls, on a real SQLite store."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.model.resources import AddressOwner, Route, RouteTable
from openvpc.service import Service, ServiceError


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


# -- operator calls ---------------------------------------------------------------------
def test_register_node_and_create_tenant_are_idempotent(svc: Service) -> None:
    rev = svc.revision()
    svc.register_node("node1", "172.16.1.10")
    svc.create_tenant("red")
    assert svc.revision() == rev
    svc.register_node("node1", "172.16.1.99")  # a node may move
    assert [n.fabric_ip for n in svc.snapshot().nodes] == ["172.16.1.99", "172.16.2.11"]


@pytest.mark.parametrize(
    ("name", "ip"),
    [("node3", "172.16.2.11"), ("node3", "not-an-ip"), ("node3", "224.0.0.1"), ("", "1.2.3.4")],
)
def test_register_node_refuses_bad_input(svc: Service, name: str, ip: str) -> None:
    with fails("InvalidParameterValue"):
        svc.register_node(name, ip)


def test_fabric_mtu_is_checked_and_reaches_the_snapshot(svc: Service) -> None:
    assert svc.snapshot().fabric_mtu == 1500
    svc.set_fabric_mtu(9000)
    assert svc.snapshot().fabric_mtu == 9000
    for bad in (1279, 9217, True):
        with fails("InvalidParameterValue"):
            svc.set_fabric_mtu(bad)


def test_calls_for_an_unknown_tenant_fail(svc: Service) -> None:
    with fails("AuthFailure"):
        svc.create_vpc("green", "prod", "10.0.0.0/16")
    with fails("AuthFailure"):
        svc.describe_vpcs("green")
    with fails("InvalidParameterValue"):
        svc.create_tenant("a/b")


# -- VPCs -------------------------------------------------------------------------------
def test_a_vpc_comes_with_a_main_table_holding_the_local_route(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.7/16", mode="l2_l3", encap="mplsogre")
    assert vpc.id.startswith("vpc-") and len(vpc.id) == len("vpc-") + 17
    assert (vpc.cidr, vpc.mode, vpc.encap) == ("10.0.0.0/16", "l2_l3", "mplsogre")
    (main,) = svc.describe_route_tables("red")
    assert main.id == vpc.main_route_table
    assert (main.name, main.vpc, main.routes) == ("main", vpc.id, (Route("10.0.0.0/16", "local"),))
    assert (main.vni, main.vlan) == (5001, 101)


@pytest.mark.parametrize(
    ("cidr", "code"),
    [
        ("10.0.0.0", "InvalidParameterValue"),
        ("10.0.0.300/16", "InvalidParameterValue"),
        ("fd00::/64", "InvalidParameterValue"),
        ("10.0.0.0/15", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("127.0.0.0/16", "InvalidVpc.Range"),
        ("169.254.0.0/16", "InvalidVpc.Range"),
        ("224.0.0.0/16", "InvalidVpc.Range"),
    ],
)
def test_vpc_cidr_rules(svc: Service, cidr: str, code: str) -> None:
    with fails(code):
        svc.create_vpc("red", "prod", cidr)
    assert svc.describe_vpcs("red") == ()


def test_vpc_range_message(svc: Service) -> None:
    with pytest.raises(ServiceError) as e:
        svc.create_vpc("red", "prod", "10.0.0.0/8")
    assert e.value.message == "The CIDR '10.0.0.0/8' is invalid."


@pytest.mark.parametrize(
    ("kwargs"), [{"mode": "l4"}, {"encap": "gre"}, {"name": "bad name"}, {"name": "a/b"}]
)
def test_vpc_parameters_are_checked(svc: Service, kwargs: dict[str, str]) -> None:
    args = {"name": "prod", "cidr": "10.0.0.0/16"} | kwargs
    with fails("InvalidParameterValue"):
        svc.create_vpc("red", **args)


def test_tenants_may_overlap_and_so_may_vpcs_of_one_tenant(svc: Service) -> None:
    a = svc.create_vpc("red", "a", "10.0.0.0/16")
    b = svc.create_vpc("red", "b", "10.0.0.0/16")
    c = svc.create_vpc("blue", "a", "10.0.0.0/16")
    assert len({a.id, b.id, c.id}) == 3
    vnis = [t.vni for t in svc.snapshot().route_tables]
    assert sorted(vnis) == [5001, 5002, 5003]


def test_delete_vpc_needs_it_empty(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    with fails("DependencyViolation"):
        svc.delete_vpc("red", vpc.id)
    svc.delete_subnet("red", subnet.id)
    extra = svc.create_route_table("red", vpc.id, "extra")
    with fails("DependencyViolation"):
        svc.delete_vpc("red", vpc.id)
    svc.delete_route_table("red", extra.id)
    svc.delete_vpc("red", vpc.id)
    snap = svc.snapshot()
    assert (snap.vpcs, snap.route_tables) == ((), ())
    with fails("InvalidVpcID.NotFound"):
        svc.delete_vpc("red", vpc.id)


# -- subnets ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cidr", "code"),
    [
        ("10.1.0.0/24", "InvalidSubnet.Range"),  # outside the VPC
        ("10.0.0.0/15", "InvalidSubnet.Range"),
        ("10.0.1.0/29", "InvalidSubnet.Range"),
        ("10.0.1.128/25", "InvalidSubnet.Conflict"),  # inside web
        ("10.0.0.0/16", "InvalidSubnet.Conflict"),  # covers web
        ("10.0.1/24", "InvalidParameterValue"),
    ],
)
def test_subnet_cidr_rules(svc: Service, cidr: str, code: str) -> None:
    vpc, _ = vpc_with_subnet(svc)
    with fails(code):
        svc.create_subnet("red", vpc.id, "db", cidr)


def test_subnet_conflict_message_and_canonical_cidr(svc: Service) -> None:
    vpc, web = vpc_with_subnet(svc, cidr="10.0.1.77/24")
    assert web.cidr == "10.0.1.0/24"
    with pytest.raises(ServiceError) as e:
        svc.create_subnet("red", vpc.id, "db", "10.0.1.0/26")
    assert e.value.message == "The CIDR '10.0.1.0/26' conflicts with another subnet"
    with fails("InvalidVpcID.NotFound"):
        svc.create_subnet("red", "vpc-00000000000000000", "db", "10.0.2.0/24")


def test_delete_subnet_waits_for_its_instances(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    table = svc.create_route_table("red", vpc.id, "t")
    svc.associate_route_table("red", table.id, subnet.id)
    instance, _ = svc.run_instance("red", subnet.id, "r1", "node1", "ns1")
    with fails("DependencyViolation"):
        svc.delete_subnet("red", subnet.id)
    svc.terminate_instance("red", instance.id)
    svc.delete_subnet("red", subnet.id)
    assert svc.describe_associations("red") == ()
    with fails("InvalidSubnetID.NotFound"):
        svc.delete_subnet("red", subnet.id)
    svc.delete_route_table("red", table.id)  # the association went with the subnet


# -- route tables and routes ------------------------------------------------------------
@pytest.fixture
def table(svc: Service) -> RouteTable:
    vpc, _ = vpc_with_subnet(svc)
    return svc.create_route_table("red", vpc.id, "isolated")


def _routes(svc: Service, rtb: str) -> list[tuple[str, str]]:
    (found,) = [t for t in svc.describe_route_tables("red") if t.id == rtb]
    return [(r.destination, r.target) for r in found.routes]


def test_routes_are_added_sorted_replaced_and_deleted(svc: Service, table: RouteTable) -> None:
    assert (table.vni, table.vlan) == (5002, 102)
    svc.create_route("red", table.id, "10.0.2.0/24", "blackhole")
    svc.create_route("red", table.id, "0.0.0.0/0", "blackhole")
    svc.create_route("red", table.id, "10.0.1.9/24", "blackhole")  # host bits cleared
    assert _routes(svc, table.id) == [
        ("0.0.0.0/0", "blackhole"),
        ("10.0.0.0/16", "local"),
        ("10.0.1.0/24", "blackhole"),
        ("10.0.2.0/24", "blackhole"),
    ]
    subnet = svc.describe_subnets("red")[0]
    _, eni = svc.run_instance("red", subnet.id, "nat", "node1", "ns1")
    svc.replace_route("red", table.id, "0.0.0.0/0", eni.id)
    svc.delete_route("red", table.id, "10.0.2.0/24")
    assert _routes(svc, table.id) == [
        ("0.0.0.0/0", eni.id),
        ("10.0.0.0/16", "local"),
        ("10.0.1.0/24", "blackhole"),
    ]


@pytest.mark.parametrize(
    ("destination", "target", "code"),
    [
        ("10.0.0.0/16", "blackhole", "RouteAlreadyExists"),  # the local route
        ("10.0.0.0/16", "local", "RouteAlreadyExists"),
        ("10.0.3.0/24", "local", "InvalidParameterValue"),
        ("10.0.3.0/24", "igw-1234", "InvalidGatewayID.NotFound"),
        ("10.0.3.0/24", "nat-1234", "NatGatewayNotFound"),
        ("10.0.3.0/24", "pcx-1234", "InvalidVpcPeeringConnectionID.NotFound"),
        ("10.0.3.0/24", "i-1234", "InvalidInstanceID.NotFound"),
        ("10.0.3.0/24", "vgw-1234", "InvalidParameterValue"),
        ("10.0.3.0/24", "", "InvalidParameterValue"),
        ("10.0.3.0/33", "blackhole", "InvalidParameterValue"),
        ("169.254.169.0/24", "blackhole", "InvalidParameterValue"),
        ("10.0.3.0/24", "eni-00000000000000000", "InvalidNetworkInterfaceID.NotFound"),
        ("10.0.3.0/24", "blackhole", "InvalidRouteTableID.NotFound"),
    ],
)
def test_create_route_errors(
    svc: Service, table: RouteTable, destination: str, target: str, code: str
) -> None:
    rtb = "rtb-00000000000000000" if code.startswith("InvalidRouteTableID") else table.id
    rev = svc.revision()
    with fails(code):
        svc.create_route("red", rtb, destination, target)
    assert svc.revision() == rev


def test_a_covering_route_may_include_the_metadata_block(svc: Service, table: RouteTable) -> None:
    svc.create_route("red", table.id, "169.254.0.0/16", "blackhole")


def test_route_already_exists_message(svc: Service, table: RouteTable) -> None:
    svc.create_route("red", table.id, "10.0.1.0/24", "blackhole")
    with pytest.raises(ServiceError) as e:
        svc.create_route("red", table.id, "10.0.1.0/24", "blackhole")
    assert e.value.code == "RouteAlreadyExists"
    assert e.value.message == "The route identified by 10.0.1.0/24 already exists."


def test_an_interface_target_must_be_in_the_same_vpc(svc: Service, table: RouteTable) -> None:
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    subnet = svc.create_subnet("red", other.id, "s", "10.1.1.0/24")
    _, eni = svc.run_instance("red", subnet.id, "x", "node1", "ns1")
    with pytest.raises(ServiceError) as e:
        svc.create_route("red", table.id, "10.9.0.0/16", eni.id)
    assert e.value.code == "InvalidParameterValue"
    assert "belong to different networks" in e.value.message


def test_the_local_route_stays(svc: Service, table: RouteTable) -> None:
    with pytest.raises(ServiceError) as e:
        svc.delete_route("red", table.id, "10.0.0.0/16")
    assert e.value.code == "InvalidParameterValue"
    assert e.value.message == f"cannot remove local route 10.0.0.0/16 in route table {table.id}"
    with fails("InvalidParameterValue"):
        svc.replace_route("red", table.id, "10.0.0.0/16", "blackhole")


def test_missing_routes(svc: Service, table: RouteTable) -> None:
    with fails("InvalidRoute.NotFound"):
        svc.delete_route("red", table.id, "10.0.9.0/24")
    with fails("InvalidRoute.NotFound"):
        svc.replace_route("red", table.id, "10.0.9.0/24", "blackhole")


def test_associations_replace_and_fall_back_to_main(svc: Service, table: RouteTable) -> None:
    subnet = svc.describe_subnets("red")[0]
    second = svc.create_route_table("red", table.vpc, "second")
    first = svc.associate_route_table("red", table.id, subnet.id)
    assert first.id.startswith("rtbassoc-")
    with fails("Resource.AlreadyAssociated"):
        svc.associate_route_table("red", second.id, subnet.id)
    new_id = svc.replace_route_table_association("red", first.id, second.id)
    assert new_id != first.id
    assert [(a.subnet, a.route_table, a.id) for a in svc.describe_associations("red")] == [
        (subnet.id, second.id, new_id)
    ]
    with fails("DependencyViolation"):
        svc.delete_route_table("red", second.id)
    with fails("InvalidAssociationID.NotFound"):
        svc.disassociate_route_table("red", first.id)  # replaced: the old id is gone
    svc.disassociate_route_table("red", new_id)
    assert svc.describe_associations("red") == ()
    with fails("InvalidAssociationID.NotFound"):
        svc.disassociate_route_table("red", new_id)
    svc.delete_route_table("red", second.id)


def test_association_errors(svc: Service, table: RouteTable) -> None:
    subnet = svc.describe_subnets("red")[0]
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    with fails("InvalidParameterValue"):
        svc.associate_route_table("red", other.main_route_table, subnet.id)
    with fails("InvalidSubnetID.NotFound"):
        svc.associate_route_table("red", table.id, "subnet-00000000000000000")
    with fails("InvalidRouteTableID.NotFound"):
        svc.associate_route_table("red", "rtb-00000000000000000", subnet.id)


def test_the_main_table_cannot_be_deleted(svc: Service) -> None:
    vpc, _ = vpc_with_subnet(svc)
    with fails("DependencyViolation"):
        svc.delete_route_table("red", vpc.main_route_table)


def test_vlan_ids_run_out_cleanly(svc: Service) -> None:
    """With every VLAN id taken, a VLAN VPC cannot get a table; others get none."""
    from openvpc.service.numbers import VLAN_RANGE
    from openvpc.service.repo import Repo

    with svc.store.transaction() as tx:
        repo = Repo(tx)
        for i, vlan in enumerate(range(VLAN_RANGE[0], VLAN_RANGE[1] + 1)):
            repo.put(RouteTable(f"rtb-filler{i}", "blue", "vpc-x", "f", 900000 + i, vlan))
    rev = svc.revision()
    with fails("RouteTableLimitExceeded"):
        svc.create_vpc("red", "v", "10.0.0.0/16", encap="vlan")
    assert svc.revision() == rev  # the VPC did not stay behind without a table
    vpc = svc.create_vpc("red", "x", "10.0.0.0/16", encap="vxlan")
    (main,) = [t for t in svc.describe_route_tables("red") if t.id == vpc.main_route_table]
    assert (main.vni, main.vlan) == (5001, None)


# -- instances --------------------------------------------------------------------------
def test_addresses_start_after_the_reserved_four(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    ips = [svc.run_instance("red", subnet.id, f"v{n}", "node1", f"ns{n}")[1].ip for n in range(3)]
    assert ips == ["10.0.1.4", "10.0.1.5", "10.0.1.6"]


@pytest.mark.parametrize(
    ("ip", "code"),
    [
        ("10.0.2.9", "InvalidParameterValue"),  # another subnet
        ("10.0.1.0", "InvalidParameterValue"),
        ("10.0.1.1", "InvalidParameterValue"),
        ("10.0.1.2", "InvalidParameterValue"),
        ("10.0.1.3", "InvalidParameterValue"),
        ("10.0.1.255", "InvalidParameterValue"),
        ("10.0.1", "InvalidParameterValue"),
        ("10.0.1.4", "InvalidIPAddress.InUse"),
        ("10.0.1.100", "InvalidIPAddress.InUse"),  # a movable address of r1
    ],
)
def test_explicit_address_rules(svc: Service, ip: str, code: str) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.run_instance("red", subnet.id, "r1", "node1", "ns1", allowed_addresses=["10.0.1.100"])
    with fails(code):
        svc.run_instance("red", subnet.id, "r2", "node1", "ns2", ip=ip)


def test_a_full_subnet_says_so(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc, cidr="10.0.1.0/28")  # 16 - 5 = 11 addresses
    for n in range(11):
        svc.run_instance("red", subnet.id, f"v{n}", "node1", f"ns{n}")
    with pytest.raises(ServiceError) as e:
        svc.run_instance("red", subnet.id, "v11", "node1", "ns11")
    assert e.value.code == "InsufficientFreeAddressesInSubnet"
    assert subnet.id in e.value.message


def test_instance_placement_is_checked(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.run_instance("red", subnet.id, "r1", "node1", "ns1")
    for kwargs in (
        {"node": "node9"},
        {"netns": "ns1"},  # that namespace on node1 already has eth0
        {"netns": "../etc"},
        {"ifname": "a-name-longer-than-15"},
        {"name": "-bad-"},
    ):
        args = {"name": "r2", "node": "node1", "netns": "ns2"} | kwargs
        with fails("InvalidParameterValue"):
            svc.run_instance("red", subnet.id, **args)
    svc.run_instance("red", subnet.id, "r2", "node2", "ns1")  # another node is fine


def test_macs_are_unique_locally_administered_unicast(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    macs = [svc.run_instance("red", subnet.id, "", "node1", f"ns{n}")[1].mac for n in range(20)]
    assert len(set(macs)) == 20
    assert macs[0] == "02:00:00:00:00:01"
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01


@pytest.mark.parametrize(
    ("allowed", "code"),
    [
        (["10.1.0.9"], "InvalidParameterValue"),  # outside the VPC
        (["10.0.1.1"], "InvalidParameterValue"),  # a subnet's gateway
        (["10.0.0.2"], "InvalidParameterValue"),  # the VPC's DNS
        (["10.0.1.50", "10.0.1.50"], "InvalidParameterValue"),
        (["nope"], "InvalidParameterValue"),
        (["10.0.1.5"], "InvalidIPAddress.InUse"),  # r1's address
    ],
)
def test_allowed_address_rules(svc: Service, allowed: list[str], code: str) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.run_instance("red", subnet.id, "r1", "node1", "ns1", ip="10.0.1.5")
    with fails(code):
        svc.run_instance("red", subnet.id, "r2", "node1", "ns2", allowed_addresses=allowed)


def test_an_address_is_either_fixed_or_movable(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    with fails("InvalidParameterValue"):
        svc.run_instance(
            "red", subnet.id, "r", "node1", "n", ip="10.0.1.9", allowed_addresses=["10.0.1.9"]
        )


def test_the_first_interface_listing_an_address_owns_it(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    _, e1 = svc.run_instance("red", subnet.id, "r1", "node1", "n1", allowed_addresses=["10.0.1.4"])
    _, e2 = svc.run_instance("red", subnet.id, "r2", "node2", "n2", allowed_addresses=["10.0.1.4"])
    assert (e1.ip, e2.ip) == ("10.0.1.5", "10.0.1.6")  # IPAM skipped the movable address
    assert svc.describe_address_owners("red") == (AddressOwner(vpc.id, "10.0.1.4", e1.id, "red"),)


def test_terminate_blackholes_routes_and_hands_addresses_on(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    vip = ["10.0.9.9"]
    i1, e1 = svc.run_instance("red", subnet.id, "r1", "node1", "n1", allowed_addresses=vip)
    i2, e2 = svc.run_instance("red", subnet.id, "r2", "node2", "n2", allowed_addresses=vip)
    svc.create_route("red", vpc.main_route_table, "0.0.0.0/0", e1.id)
    svc.terminate_instance("red", i1.id)
    assert _routes(svc, vpc.main_route_table) == [
        ("0.0.0.0/0", e1.id),  # EC2 keeps the target and shows the route as a blackhole
        ("10.0.0.0/16", "local"),
    ]
    (view,) = [v for v in svc.describe_route_table_views("red") if v.main]
    assert view.states == ("blackhole", "active")
    assert [o.interface for o in svc.describe_address_owners("red")] == [e2.id]
    svc.terminate_instance("red", i2.id)
    assert svc.describe_address_owners("red") == ()
    assert (svc.describe_instances("red"), svc.describe_interfaces("red")) == ((), ())
    svc.terminate_instance("red", i2.id)  # terminating again is fine, as in EC2


def test_snapshot_is_sorted_deterministic_and_at_the_current_revision(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    for n in range(5):
        svc.run_instance("red", subnet.id, f"v{n}", f"node{n % 2 + 1}", f"ns{n}")
    svc.create_route_table("red", vpc.id, "t")
    snap = svc.snapshot()
    assert snap == svc.snapshot()
    assert snap.revision == svc.revision()
    for items in (snap.vpcs, snap.subnets, snap.route_tables, snap.instances, snap.interfaces):
        ids = [x.id for x in items]
        assert ids == sorted(ids)
    assert [n.name for n in snap.nodes] == ["node1", "node2"]
    assert [a.node for a in snap.allocations] == ["node1", "node2"]
    for a in snap.allocations:
        assert list(a.vifs) == sorted(a.vifs)
        assert list(a.vrfs) == sorted(a.vrfs)
