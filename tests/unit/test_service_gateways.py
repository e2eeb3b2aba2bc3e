"""Internet gateways, NAT gateways and Elastic IPs: AWS's rules and error codes, on a real
SQLite store."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.model.gateways import InternetGateway
from openvpc.model.resources import Subnet, Vpc
from openvpc.service import Service, ServiceError
from openvpc.service.addresses import MAX_ADDRESSES
from openvpc.service.gateways import DELETED_VISIBLE, MAX_INTERNET_GATEWAYS


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


def _public(svc: Service, net: tuple[Vpc, Subnet]) -> InternetGateway:
    igw = svc.create_internet_gateway("red")
    svc.attach_internet_gateway("red", igw.id, net[0].id)
    return igw


# -- internet gateways ------------------------------------------------------------------
def test_an_internet_gateway_attaches_detaches_and_goes(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    igw = svc.create_internet_gateway("red")
    assert igw.id.startswith("igw-") and igw.vpc == ""
    svc.attach_internet_gateway("red", igw.id, vpc.id)
    assert svc.describe_internet_gateways("red") == (InternetGateway(igw.id, "red", vpc.id),)
    with pytest.raises(ServiceError) as e:
        svc.delete_internet_gateway("red", igw.id)
    assert (e.value.code, e.value.message) == (
        "DependencyViolation",
        f"The internetGateway '{igw.id}' has dependencies and cannot be deleted.",
    )
    with fails("DependencyViolation"):
        svc.delete_vpc("red", vpc.id)
    svc.detach_internet_gateway("red", igw.id, vpc.id)
    svc.delete_internet_gateway("red", igw.id)
    assert svc.describe_internet_gateways("red") == ()
    with pytest.raises(ServiceError) as e:
        svc.delete_internet_gateway("red", igw.id)
    assert (e.value.code, e.value.message) == (
        "InvalidInternetGatewayID.NotFound",
        f"The internetGateway ID '{igw.id}' does not exist",
    )


def test_one_internet_gateway_per_vpc_and_one_vpc_per_gateway(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, _ = net
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    first = _public(svc, net)
    second = svc.create_internet_gateway("red")
    with pytest.raises(ServiceError) as e:
        svc.attach_internet_gateway("red", second.id, vpc.id)
    assert (e.value.code, e.value.message) == (
        "Resource.AlreadyAssociated",
        f"Network {vpc.id} already has an internet gateway attached",
    )
    with pytest.raises(ServiceError) as e:
        svc.attach_internet_gateway("red", first.id, other.id)
    assert (e.value.code, e.value.message) == (
        "Resource.AlreadyAssociated",
        f"resource {first.id} is already attached to network {vpc.id}",
    )


def test_detach_from_a_vpc_it_is_not_attached_to(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    vpc, _ = net
    other = svc.create_vpc("red", "other", "10.1.0.0/16")
    igw = _public(svc, net)
    with pytest.raises(ServiceError) as e:
        svc.detach_internet_gateway("red", igw.id, other.id)
    assert (e.value.code, e.value.message) == (
        "Gateway.NotAttached",
        f"resource {igw.id} is not attached to network {other.id}",
    )
    loose = svc.create_internet_gateway("red")
    with fails("Gateway.NotAttached"):
        svc.detach_internet_gateway("red", loose.id, vpc.id)


def test_internet_gateway_quota(svc: Service) -> None:
    for _ in range(MAX_INTERNET_GATEWAYS):
        svc.create_internet_gateway("red")
    with fails("InternetGatewayLimitExceeded"):
        svc.create_internet_gateway("red")
    svc.create_internet_gateway("blue")  # per tenant


def test_another_tenants_internet_gateway_is_missing(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    igw = _public(svc, net)
    blue = svc.create_vpc("blue", "p", "10.0.0.0/16")
    with fails("InvalidInternetGatewayID.NotFound"):
        svc.attach_internet_gateway("blue", igw.id, blue.id)
    with fails("InvalidInternetGatewayID.NotFound"):
        svc.detach_internet_gateway("blue", igw.id, blue.id)
    with fails("InvalidInternetGatewayID.NotFound"):
        svc.delete_internet_gateway("blue", igw.id)
    with fails("InvalidVpcID.NotFound"):  # nor may blue attach to red's VPC
        svc.attach_internet_gateway("blue", svc.create_internet_gateway("blue").id, net[0].id)
    assert svc.describe_internet_gateways("blue")[0].vpc == ""


# -- Elastic IPs ------------------------------------------------------------------------
def test_addresses_come_from_the_pool_up_to_the_quota(svc: Service) -> None:
    got = [svc.allocate_address("red") for _ in range(MAX_ADDRESSES)]
    assert [e.public_ip for e in got] == [f"198.51.100.{i}" for i in range(1, 6)]
    assert all(e.id.startswith("eipalloc-") for e in got)
    with fails("AddressLimitExceeded"):
        svc.allocate_address("red")
    assert svc.allocate_address("blue").public_ip == "198.51.100.6"  # one pool for all
    svc.release_address("red", got[1].id)
    assert svc.allocate_address("red").public_ip == "198.51.100.2"


def test_the_pool_is_an_operator_setting(svc: Service) -> None:
    svc.set_public_pool("203.0.113.0/30")
    assert [svc.allocate_address(t).public_ip for t in ("red", "blue")] == [
        "203.0.113.1",
        "203.0.113.2",
    ]
    with fails("InsufficientAddressCapacity"):
        svc.allocate_address("red")
    for bad in ("203.0.113.0/31", "nonsense"):
        with fails("InvalidParameterValue"):
            svc.set_public_pool(bad)


def test_associate_needs_an_internet_gateway_and_moves_an_address(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, subnet = net
    i1, e1 = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    i2, e2 = svc.run_instance("red", subnet.id, "b", "node2", "ns2")
    eip = svc.allocate_address("red")
    with pytest.raises(ServiceError) as e:
        svc.associate_address("red", eip.id, instance_id=i1.id)
    assert (e.value.code, e.value.message) == (
        "Gateway.NotAttached",
        f"Network {vpc.id} is not attached to any internet gateway",
    )
    _public(svc, net)
    first = svc.associate_address("red", eip.id, instance_id=i1.id)
    assert first.association.startswith("eipassoc-")
    assert (first.interface, first.private_ip, first.instance) == (e1.id, e1.ip, i1.id)
    with fails("Resource.AlreadyAssociated"):
        svc.associate_address("red", eip.id, interface_id=e2.id, allow_reassociation=False)
    moved = svc.associate_address("red", eip.id, interface_id=e2.id)
    assert (moved.interface, moved.private_ip, moved.instance) == (e2.id, e2.ip, i2.id)
    with fails("InvalidAssociationID.NotFound"):
        svc.disassociate_address("red", first.association)
    with fails("InvalidIPAddress.InUse"):
        svc.release_address("red", eip.id)
    svc.disassociate_address("red", moved.association)
    (after,) = svc.describe_addresses("red")
    assert (after.association, after.interface) == ("", "")
    svc.release_address("red", eip.id)
    with pytest.raises(ServiceError) as e:
        svc.release_address("red", eip.id)
    assert (e.value.code, e.value.message) == (
        "InvalidAllocationID.NotFound",
        f"The allocation ID '{eip.id}' does not exist",
    )


def test_associate_parameters(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    _, subnet = net
    instance, eni = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    _public(svc, net)
    eip = svc.allocate_address("red")
    with fails("MissingParameter"):
        svc.associate_address("red", eip.id)
    with fails("InvalidParameterCombination"):
        svc.associate_address("red", eip.id, instance_id=instance.id, interface_id=eni.id)
    with fails("InvalidParameterValue"):
        svc.associate_address("red", eip.id, interface_id=eni.id, private_ip="10.0.1.200")
    with fails("InvalidInstanceID.NotFound"):
        svc.associate_address("red", eip.id, instance_id="i-00000000000000000")


def test_a_second_address_for_the_same_private_address_replaces_the_first(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    _, subnet = net
    instance, _ = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    _public(svc, net)
    a, b = svc.allocate_address("red"), svc.allocate_address("red")
    svc.associate_address("red", a.id, instance_id=instance.id)
    svc.associate_address("red", b.id, instance_id=instance.id)
    assert {e.id: e.instance for e in svc.describe_addresses("red")} == {
        a.id: "",
        b.id: instance.id,
    }


def test_a_terminated_instance_lets_go_of_its_address(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    vpc, subnet = net
    instance, _ = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    igw = _public(svc, net)
    eip = svc.allocate_address("red")
    svc.associate_address("red", eip.id, instance_id=instance.id)
    with fails("DependencyViolation"):  # a mapped public address needs the gateway
        svc.detach_internet_gateway("red", igw.id, vpc.id)
    svc.terminate_instance("red", instance.id)
    assert svc.describe_addresses("red")[0].association == ""
    with fails("InvalidInstanceID.NotFound"):
        svc.associate_address("red", eip.id, instance_id=instance.id)
    svc.detach_internet_gateway("red", igw.id, vpc.id)
    svc.release_address("red", eip.id)


def test_another_tenants_address_is_missing(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    _, subnet = net
    instance, _ = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    _public(svc, net)
    eip = svc.allocate_address("red")
    assoc = svc.associate_address("red", eip.id, instance_id=instance.id).association
    blue_eip = svc.allocate_address("blue")
    with fails("InvalidAllocationID.NotFound"):
        svc.release_address("blue", eip.id)
    with fails("InvalidAllocationID.NotFound"):
        svc.associate_address("blue", eip.id, instance_id=instance.id)
    with fails("InvalidInstanceID.NotFound"):
        svc.associate_address("blue", blue_eip.id, instance_id=instance.id)
    with fails("InvalidAssociationID.NotFound"):
        svc.disassociate_address("blue", assoc)
    assert [e.id for e in svc.describe_addresses("blue")] == [blue_eip.id]


# -- NAT gateways -----------------------------------------------------------------------
def test_a_nat_gateway_takes_an_address_of_its_subnet_and_an_elastic_ip(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    _, subnet = net
    _public(svc, net)
    eip = svc.allocate_address("red")
    nat = svc.create_nat_gateway("red", subnet.id, eip.id, now=1000.0)
    assert nat.id.startswith("nat-") and nat.interface.startswith("eni-")
    assert (nat.state, nat.ip, nat.created, nat.allocation) == (
        "available",
        "10.0.1.4",
        1000.0,
        eip.id,
    )
    (held,) = svc.describe_addresses("red")
    assert (held.nat_gateway, held.interface, held.private_ip) == (nat.id, nat.interface, nat.ip)
    # the address is taken: the next VM gets the one after it, nobody may ask for it
    _, eni = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    assert eni.ip == "10.0.1.5"
    with fails("InvalidIPAddress.InUse"):
        svc.run_instance("red", subnet.id, "b", "node1", "ns2", ip="10.0.1.4")
    with fails("Resource.AlreadyAssociated"):
        svc.create_nat_gateway("red", subnet.id, eip.id, now=1001.0)
    with fails("InvalidIPAddress.InUse"):
        svc.release_address("red", eip.id)
    with fails("OperationNotPermitted"):
        svc.disassociate_address("red", held.association)
    with fails("DependencyViolation"):
        svc.delete_subnet("red", subnet.id)


def test_a_deleted_nat_gateway_frees_its_addresses_and_stays_describable_a_while(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    _, subnet = net
    _public(svc, net)
    eip = svc.allocate_address("red")
    nat = svc.create_nat_gateway("red", subnet.id, eip.id, now=1000.0)
    gone = svc.delete_nat_gateway("red", nat.id, now=2000.0)
    assert (gone.state, gone.deleted) == ("deleted", 2000.0)
    assert svc.delete_nat_gateway("red", nat.id, now=2001.0).state == "deleted"
    assert [n.state for n in svc.describe_nat_gateways("red", now=2000.0 + 60)] == ["deleted"]
    assert svc.describe_nat_gateways("red", now=2000.0 + DELETED_VISIBLE + 1) == ()
    assert svc.describe_addresses("red")[0].association == ""
    _, eni = svc.run_instance("red", subnet.id, "a", "node1", "ns1")
    assert eni.ip == "10.0.1.4"
    svc.terminate_instance("red", svc.describe_instances("red")[0].id)
    svc.delete_subnet("red", subnet.id)


def test_a_public_nat_gateway_without_an_internet_gateway_fails(
    svc: Service, net: tuple[Vpc, Subnet]
) -> None:
    _, subnet = net
    eip = svc.allocate_address("red")
    nat = svc.create_nat_gateway("red", subnet.id, eip.id, now=1.0)
    assert (nat.state, nat.failure, nat.ip) == ("failed", "Gateway.NotAttached", "")
    assert svc.describe_addresses("red")[0].association == ""  # the address stays free


def test_nat_gateway_parameters(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    _, subnet = net
    eip = svc.allocate_address("red")
    with fails("MissingParameter"):
        svc.create_nat_gateway("red", subnet.id, None)
    with fails("InvalidParameterCombination"):
        svc.create_nat_gateway("red", subnet.id, eip.id, connectivity="private")
    with fails("InvalidAllocationID.NotFound"):
        svc.create_nat_gateway("red", subnet.id, "eipalloc-00000000000000000")
    with fails("InvalidSubnetID.NotFound"):
        svc.create_nat_gateway("red", "subnet-00000000000000000", eip.id)
    private = svc.create_nat_gateway("red", subnet.id, None, connectivity="private")
    assert (private.state, private.allocation, private.ip) == ("available", "", "10.0.1.4")


def test_another_tenants_nat_gateway_is_missing(svc: Service, net: tuple[Vpc, Subnet]) -> None:
    _, subnet = net
    nat = svc.create_nat_gateway("red", subnet.id, None, connectivity="private")
    with pytest.raises(ServiceError) as e:
        svc.delete_nat_gateway("blue", nat.id)
    assert (e.value.code, e.value.message) == (
        "NatGatewayNotFound",
        f"The natGateway ID '{nat.id}' does not exist",
    )
    assert svc.describe_nat_gateways("blue") == ()
    with fails("InvalidSubnetID.NotFound"):
        svc.create_nat_gateway("blue", subnet.id, None, connectivity="private")


def test_the_operator_sets_the_pool_from_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openvpc.cli import app

    db = str(tmp_path / "ov.db")
    shown = CliRunner().invoke(app, ["public-pool", "--db", db])
    assert (shown.exit_code, shown.output) == (0, "198.51.100.0/24\n")
    changed = CliRunner().invoke(app, ["public-pool", "203.0.113.7/28", "--db", db])
    assert (changed.exit_code, changed.output) == (0, "203.0.113.0/28\n")
    refused = CliRunner().invoke(app, ["public-pool", "nonsense", "--db", db])
    assert refused.exit_code == 1
    assert CliRunner().invoke(app, ["public-pool", "--db", db]).output == "203.0.113.0/28\n"


def test_a_tenant_goes_with_its_ended_nat_gateways_and_peering_records(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc, "blue")
    other = svc.create_vpc("blue", "other", "10.1.0.0/16")
    nat = svc.create_nat_gateway("blue", subnet.id, None, connectivity="private", now=1.0)
    svc.create_vpc_peering_connection("blue", vpc.id, other.id, now=1.0)
    with fails("DependencyViolation"):
        svc.delete_tenant("blue")
    svc.delete_nat_gateway("blue", nat.id, now=2.0)
    svc.delete_subnet("blue", subnet.id)
    svc.delete_vpc("blue", vpc.id)
    svc.delete_vpc("blue", other.id)
    svc.delete_tenant("blue")
    svc.create_tenant("blue")  # a new tenant of the name inherits nothing
    assert svc.describe_nat_gateways("blue", now=3.0) == ()
    assert svc.describe_vpc_peering_connections("blue", now=3.0) == ()
