"""Tenant isolation (another tenant's ids look missing and change nothing), movable
addresses learned from gratuitous ARP, and IPAM under random use."""

import tempfile
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_setup import fails, open_service

from openvpc.model.resources import AddressOwner, Instance, Interface, RouteTable, Subnet, Vpc
from openvpc.service import Service, ServiceError
from openvpc.service.instances import Launch
from openvpc.service.ipam import lowest_free, reserved

T0 = 1_800_000_000.0


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


class Red:
    """Red's resources, for blue to poke at."""

    def __init__(self, svc: Service) -> None:
        self.vpc: Vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
        self.subnet: Subnet = svc.create_subnet("red", self.vpc.id, "web", "10.0.1.0/24")
        self.table: RouteTable = svc.create_route_table("red", self.vpc.id, "t")
        self.association = svc.associate_route_table("red", self.table.id, self.subnet.id)
        self.instance: Instance
        self.eni: Interface
        self.instance, self.eni = svc.run_instance(
            "red", self.subnet.id, "r1", "node1", "ns-r1", allowed_addresses=["10.0.1.100"]
        )
        svc.create_route("red", self.table.id, "10.0.9.0/24", "blackhole")


BlueCall = Callable[[Service, Red, Vpc, RouteTable], object]
BLUE_CALLS: dict[str, tuple[str, BlueCall]] = {
    "describe": ("", lambda s, r, v, t: s.describe_vpcs("blue")),
    "create_subnet": (
        "InvalidVpcID.NotFound",
        lambda s, r, v, t: s.create_subnet("blue", r.vpc.id, "x", "10.0.2.0/24"),
    ),
    "create_route_table": (
        "InvalidVpcID.NotFound",
        lambda s, r, v, t: s.create_route_table("blue", r.vpc.id, "x"),
    ),
    "delete_vpc": ("InvalidVpcID.NotFound", lambda s, r, v, t: s.delete_vpc("blue", r.vpc.id)),
    "delete_subnet": (
        "InvalidSubnetID.NotFound",
        lambda s, r, v, t: s.delete_subnet("blue", r.subnet.id),
    ),
    "create_route": (
        "InvalidRouteTableID.NotFound",
        lambda s, r, v, t: s.create_route("blue", r.table.id, "10.0.8.0/24", "blackhole"),
    ),
    "replace_route": (
        "InvalidRouteTableID.NotFound",
        lambda s, r, v, t: s.replace_route("blue", r.table.id, "10.0.9.0/24", "local"),
    ),
    "delete_route": (
        "InvalidRouteTableID.NotFound",
        lambda s, r, v, t: s.delete_route("blue", r.table.id, "10.0.9.0/24"),
    ),
    "delete_route_table": (
        "InvalidRouteTableID.NotFound",
        lambda s, r, v, t: s.delete_route_table("blue", r.table.id),
    ),
    "route_to_red_eni": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.create_route("blue", t.id, "10.0.8.0/24", r.eni.id),
    ),
    "associate_red_subnet": (
        "InvalidSubnetID.NotFound",
        lambda s, r, v, t: s.associate_route_table("blue", t.id, r.subnet.id),
    ),
    "associate_red_table": (
        "InvalidRouteTableID.NotFound",
        lambda s, r, v, t: s.associate_route_table("blue", r.table.id, r.subnet.id),
    ),
    "disassociate": (
        "InvalidAssociationID.NotFound",
        lambda s, r, v, t: s.disassociate_route_table("blue", r.association.id),
    ),
    "replace_association": (
        "InvalidAssociationID.NotFound",
        lambda s, r, v, t: s.replace_route_table_association("blue", r.association.id, t.id),
    ),
    "replace_main_association": (
        "InvalidAssociationID.NotFound",
        lambda s, r, v, t: s.replace_route_table_association("blue", r.vpc.main_association, t.id),
    ),
    "run_instance": (
        "InvalidSubnetID.NotFound",
        lambda s, r, v, t: s.run_instance("blue", r.subnet.id, "b", "node1", "ns-b"),
    ),
    "terminate": (
        "InvalidInstanceID.NotFound",
        lambda s, r, v, t: s.terminate_instance("blue", r.instance.id),
    ),
    "run_instances": (
        "InvalidSubnetID.NotFound",
        lambda s, r, v, t: s.run_instances("blue", Launch(r.subnet.id), T0),
    ),
    "stop_instances": (
        "InvalidInstanceID.NotFound",
        lambda s, r, v, t: s.stop_instances("blue", [r.instance.id], T0),
    ),
    "start_instances": (
        "InvalidInstanceID.NotFound",
        lambda s, r, v, t: s.start_instances("blue", [r.instance.id], T0),
    ),
    "terminate_instances": (
        "InvalidInstanceID.NotFound",
        lambda s, r, v, t: s.terminate_instances("blue", [r.instance.id], T0),
    ),
    "create_interface": (
        "InvalidSubnetID.NotFound",
        lambda s, r, v, t: s.create_interface("blue", r.subnet.id),
    ),
    "delete_interface": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.delete_interface("blue", r.eni.id),
    ),
    "attach_interface": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.attach_interface("blue", r.eni.id, r.instance.id, 1),
    ),
    "detach_interface": (
        "InvalidAttachmentID.NotFound",
        lambda s, r, v, t: s.detach_interface("blue", r.eni.attachment),
    ),
    "modify_interface": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.modify_interface("blue", r.eni.id, source_check=False),
    ),
    "assign_private_ips": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.assign_private_ips("blue", r.eni.id, count=1),
    ),
    "unassign_private_ips": (
        "InvalidNetworkInterfaceID.NotFound",
        lambda s, r, v, t: s.unassign_private_ips("blue", r.eni.id, ["10.0.1.100"]),
    ),
}


@pytest.mark.parametrize("call", sorted(BLUE_CALLS))
def test_a_tenant_cannot_see_or_touch_another_tenants_resources(svc: Service, call: str) -> None:
    red = Red(svc)
    blue_vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    blue_table = svc.create_route_table("blue", blue_vpc.id, "t")
    code, fn = BLUE_CALLS[call]
    rev, snap = svc.revision(), svc.snapshot()
    if not code:
        assert fn(svc, red, blue_vpc, blue_table) == (blue_vpc,)
        return
    with pytest.raises(ServiceError) as e:
        fn(svc, red, blue_vpc, blue_table)
    assert e.value.code == code
    assert (svc.revision(), svc.snapshot()) == (rev, snap)


def test_another_tenants_id_reads_exactly_like_a_missing_one(svc: Service) -> None:
    red = Red(svc)
    with pytest.raises(ServiceError) as theirs:
        svc.create_subnet("blue", red.vpc.id, "x", "10.0.2.0/24")
    with pytest.raises(ServiceError) as missing:
        svc.create_subnet("blue", "vpc-00000000000000000", "x", "10.0.2.0/24")
    assert theirs.value.message.replace(red.vpc.id, "ID") == missing.value.message.replace(
        "vpc-00000000000000000", "ID"
    )
    assert theirs.value.message == f"The vpc ID '{red.vpc.id}' does not exist"


def test_describes_are_tenant_scoped(svc: Service) -> None:
    Red(svc)
    assert svc.describe_vpcs("blue") == ()
    assert svc.describe_subnets("blue") == ()
    assert svc.describe_route_tables("blue") == ()
    assert svc.describe_associations("blue") == ()
    assert svc.describe_instances("blue") == ()
    assert svc.describe_interfaces("blue") == ()
    assert svc.describe_address_owners("blue") == ()
    assert svc.instance_records("blue", T0) == []
    assert svc.interface_records("blue") == []
    assert len(svc.describe_route_tables("red")) == 2


def test_tenants_may_reuse_addresses_and_movable_addresses(svc: Service) -> None:
    red = Red(svc)
    vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    subnet = svc.create_subnet("blue", vpc.id, "web", "10.0.1.0/24")
    _, eni = svc.run_instance(
        "blue", subnet.id, "b1", "node1", "ns-b1", allowed_addresses=["10.0.1.100"]
    )
    assert eni.ip == red.eni.ip == "10.0.1.4"
    assert eni.mac != red.eni.mac
    assert svc.describe_address_owners("blue") == (
        AddressOwner(vpc.id, "10.0.1.100", eni.id, "blue"),
    )


# -- learned addresses ------------------------------------------------------------------
def test_learn_address_moves_an_allowed_address(svc: Service) -> None:
    red = Red(svc)
    _, r2 = svc.run_instance(
        "red", red.subnet.id, "r2", "node2", "ns-r2", allowed_addresses=["10.0.1.100"]
    )
    _, r3 = svc.run_instance("red", red.subnet.id, "r3", "node2", "ns-r3")
    assert [o.interface for o in svc.describe_address_owners("red")] == [red.eni.id]
    assert svc.learn_address("node2", r2.id, "10.0.1.100")
    assert [o.interface for o in svc.describe_address_owners("red")] == [r2.id]
    rev = svc.revision()
    assert svc.learn_address("node2", r2.id, "10.0.1.100")  # already there: no write
    assert svc.revision() == rev
    refused = [
        ("node1", r2.id, "10.0.1.100"),  # r2 is not on node1
        ("node2", r3.id, "10.0.1.100"),  # r3 may not claim it
        ("node2", r2.id, "10.0.1.101"),  # not an allowed address
        ("node2", r2.id, "10.0.1.5"),  # its own address is not movable
        ("node2", "eni-00000000000000000", "10.0.1.100"),
        ("node2", r2.id, "not an ip"),
        ("node9", r2.id, "10.0.1.100"),
    ]
    for node, eni, ip in refused:
        assert not svc.learn_address(node, eni, ip), (node, eni, ip)
    assert svc.revision() == rev
    assert svc.learn_address("node1", red.eni.id, "10.0.1.100")  # and back
    assert [o.interface for o in svc.describe_address_owners("red")] == [red.eni.id]


# -- IPAM -------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=16, max_value=28),
    st.integers(min_value=0, max_value=(1 << 32) - 1),
    st.sets(st.integers(min_value=0, max_value=300), max_size=40),
)
def test_lowest_free_never_gives_a_reserved_or_used_address(
    prefix: int, base: int, offsets: set[int]
) -> None:
    net = IPv4Network((base, prefix), strict=False)
    used = {net.network_address + o for o in offsets if o < net.num_addresses}
    found = lowest_free(net, used)
    if net.num_addresses <= 4096:  # small enough to compare with a brute-force answer
        free = [a for a in net if a not in reserved(net) and a not in used]
        assert found == (free[0] if free else None)
    else:
        assert found is not None and found not in used and found not in reserved(net)
        assert all(IPv4Address(a) in used for a in range(int(net.network_address) + 4, int(found)))


Op = tuple[str, int]
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("auto"), st.just(0)),
        st.tuples(st.just("pick"), st.integers(min_value=0, max_value=15)),
        st.tuples(st.just("kill"), st.integers(min_value=0, max_value=20)),
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(_ops)
def test_ipam_in_the_service_never_hands_out_reserved_or_duplicate_addresses(
    ops: list[Op],
) -> None:
    """Random launches (automatic or with a chosen address) and terminations in a /28."""
    with tempfile.TemporaryDirectory() as d:
        svc = open_service(Path(d) / "store.db")
        try:
            vpc = svc.create_vpc("red", "p", "10.0.0.0/16")
            subnet = svc.create_subnet("red", vpc.id, "s", "10.0.1.0/28")
            net = IPv4Network(subnet.cidr)
            live: list[Instance] = []
            for n, (op, arg) in enumerate(ops):
                if op == "kill":
                    if live:
                        svc.terminate_instance("red", live.pop(arg % len(live)).id)
                    continue
                ip = str(net.network_address + arg) if op == "pick" else None
                taken = {i.ip for i in svc.describe_interfaces("red")}
                try:
                    inst, eni = svc.run_instance("red", subnet.id, f"v{n}", "node1", f"ns{n}", ip)
                except ServiceError as e:
                    full = len(taken) == 11
                    expected = {
                        "InsufficientFreeAddressesInSubnet": ip is None and full,
                        "InvalidIPAddress.InUse": ip in taken,
                        "InvalidParameterValue": ip is not None
                        and IPv4Address(ip) in reserved(net),
                    }
                    assert expected.get(e.code), (e, ip, taken)
                    continue
                assert ip is None or eni.ip == ip
                if ip is None:
                    assert eni.ip == str(lowest_free(net, {IPv4Address(t) for t in taken}))
                live.append(inst)
                ips = [IPv4Address(i.ip) for i in svc.describe_interfaces("red")]
                assert len(set(ips)) == len(ips)
                assert not set(ips) & reserved(net)
                assert all(a in net for a in ips)
        finally:
            svc.store.close()


def test_a_released_address_is_handed_out_again(svc: Service) -> None:
    vpc = svc.create_vpc("red", "p", "10.0.0.0/16")
    subnet = svc.create_subnet("red", vpc.id, "s", "10.0.1.0/28")
    first, _ = svc.run_instance("red", subnet.id, "a", "node1", "a")
    svc.run_instance("red", subnet.id, "b", "node1", "b")
    svc.terminate_instance("red", first.id)
    _, eni = svc.run_instance("red", subnet.id, "c", "node1", "c")
    assert eni.ip == "10.0.1.4"
    with fails("InvalidIPAddress.InUse"):
        svc.run_instance("red", subnet.id, "d", "node1", "d", ip="10.0.1.5")
