"""Network interfaces through the service: create/delete, attach/detach, attributes and
secondary private addresses, and how the compiler plugs and routes them."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.compiler.compile import compile_all
from openvpc.service import Service
from openvpc.service.instances import Launch
from openvpc.service.repo import Repo

T0 = 1_800_000_000.0


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def _instance(svc: Service, subnet: str, kind: str = "t3.small") -> tuple[str, str]:
    ((inst, eni),) = svc.run_instances("red", Launch(subnet, instance_type=kind), T0)
    return inst.id, eni.id


def _ports(svc: Service) -> list[tuple[str, str, str]]:
    return sorted(
        (p.interface_id, p.netns, p.ifname)
        for c in compile_all(svc.snapshot()).values()
        for p in c.ports
    )


def test_create_takes_the_lowest_free_address_and_is_detached(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    eni = svc.create_interface("red", subnet.id, description="spare", groups=["sg-1", "sg-1"])
    assert (eni.ip, eni.instance, eni.node, eni.attachment) == ("10.0.1.4", "", "", "")
    assert (eni.description, eni.groups, eni.source_check) == ("spare", ("sg-1",), True)
    assert _ports(svc) == []  # nothing to plug
    ((_, primary),) = svc.run_instances("red", Launch(subnet.id), T0)
    assert primary.ip == "10.0.1.5"


def test_create_refuses_bad_requests(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.create_interface("red", subnet.id, ip="10.0.1.10")
    with fails("InvalidIPAddress.InUse"):
        svc.create_interface("red", subnet.id, ip="10.0.1.10")
    with fails("InvalidParameterValue"):
        svc.create_interface("red", subnet.id, ip="10.0.1.1")
    with fails("InvalidParameterValue"):
        svc.create_interface("red", subnet.id, ip="10.0.2.5")
    with fails("InvalidParameterValue"):
        svc.create_interface("red", subnet.id, description="x" * 256)
    with fails("PrivateIpAddressLimitExceeded"):
        svc.create_interface("red", subnet.id, secondary_count=10)
    with fails("InvalidSubnetID.NotFound"):
        svc.create_interface("blue", subnet.id)


def test_secondary_addresses_at_creation_and_later(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    eni = svc.create_interface("red", subnet.id, secondary_ips=["10.0.1.20"], secondary_count=1)
    assert (eni.ip, eni.secondary_ips) == ("10.0.1.4", ("10.0.1.20", "10.0.1.5"))
    assert svc.assign_private_ips("red", eni.id, count=2) == ("10.0.1.6", "10.0.1.7")
    with fails("InvalidIPAddress.InUse"):
        svc.assign_private_ips("red", eni.id, ["10.0.1.20"])
    other = svc.create_interface("red", subnet.id)
    assert other.ip == "10.0.1.8"  # IPAM steps around secondary addresses
    with fails("InvalidIPAddress.InUse"):
        svc.assign_private_ips("red", other.id, ["10.0.1.6"])
    assert svc.assign_private_ips("red", other.id, ["10.0.1.6"], allow_reassignment=True) == (
        "10.0.1.6",
    )
    records = {i.id: i for i, _ in svc.interface_records("red")}
    assert records[eni.id].secondary_ips == ("10.0.1.20", "10.0.1.5", "10.0.1.7")
    with fails("InvalidParameterValue"):
        svc.unassign_private_ips("red", eni.id, ["10.0.1.6"])  # no longer its own
    with fails("InvalidParameterValue"):
        svc.unassign_private_ips("red", eni.id, [eni.ip])  # the primary one stays
    svc.unassign_private_ips("red", eni.id, ["10.0.1.5"])
    assert svc.create_interface("red", subnet.id).ip == "10.0.1.5"
    svc.delete_interface("red", eni.id)  # its addresses go with it
    assert {o.ip for o in svc.describe_address_owners("red")} == {"10.0.1.6"}
    assert svc.create_interface("red", subnet.id, ip="10.0.1.20").ip == "10.0.1.20"


def test_the_type_limits_addresses_per_interface(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    _, eni = _instance(svc, subnet.id, "t3.micro")  # 2 addresses per interface
    svc.assign_private_ips("red", eni, count=1)
    with fails("PrivateIpAddressLimitExceeded"):
        svc.assign_private_ips("red", eni, count=1)


def test_attach_and_detach(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    iid, primary = _instance(svc, subnet.id)
    eni = svc.create_interface("red", subnet.id)
    attached = svc.attach_interface("red", eni.id, iid, 1)
    assert attached.attachment.startswith("eni-attach-") and attached.instance == iid
    netns = f"ovpc-vm-{iid}"
    assert _ports(svc) == sorted([(primary, netns, "eth0"), (eni.id, netns, "eth1")])
    with fails("InvalidNetworkInterface.InUse"):
        svc.delete_interface("red", eni.id)
    with fails("InvalidNetworkInterface.InUse"):
        svc.attach_interface("red", eni.id, iid, 2)
    (inst_primary,) = [i for i in svc.describe_interfaces("red") if i.id == primary]
    with fails("OperationNotPermitted"):
        svc.detach_interface("red", inst_primary.attachment)
    with fails("InvalidAttachmentID.NotFound"):
        svc.detach_interface("blue", attached.attachment)
    assert svc.detach_interface("red", attached.attachment).instance == ""
    assert _ports(svc) == [(primary, netns, "eth0")]
    with fails("InvalidAttachmentID.NotFound"):
        svc.detach_interface("red", attached.attachment)
    svc.delete_interface("red", eni.id)
    with fails("InvalidNetworkInterfaceID.NotFound"):
        svc.delete_interface("red", eni.id)


def test_attach_checks_index_state_vpc_zone_and_limit(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    iid, _ = _instance(svc, subnet.id)  # t3.small: 3 interfaces
    one, two, three = (svc.create_interface("red", subnet.id) for _ in range(3))
    for bad in (0, -1, 32):
        with fails("InvalidParameterValue"):
            svc.attach_interface("red", one.id, iid, bad)
    svc.attach_interface("red", one.id, iid, 1)
    with fails("InvalidParameterValue"):
        svc.attach_interface("red", two.id, iid, 1)  # the index is taken
    svc.attach_interface("red", two.id, iid, 3)
    with fails("AttachmentLimitExceeded"):
        svc.attach_interface("red", three.id, iid, 2)
    other_vpc = svc.create_vpc("red", "other", "10.1.0.0/16")
    far = svc.create_subnet("red", other_vpc.id, "far", "10.1.1.0/24")
    iid2, _ = _instance(svc, subnet.id)
    with fails("InvalidParameterCombination"):
        svc.attach_interface("red", svc.create_interface("red", far.id).id, iid2, 1)
    zoned = svc.create_subnet("red", vpc.id, "zoned", "10.0.9.0/24")
    with svc.store.transaction() as tx:
        Repo(tx).put(replace(zoned, zone="us-east-1b"))
    with fails("InvalidParameterCombination"):
        svc.attach_interface("red", svc.create_interface("red", zoned.id).id, iid2, 1)
    svc.stop_instances("red", [iid2], T0)
    svc.attach_interface("red", three.id, iid2, 1)  # a stopped instance takes one
    svc.terminate_instances("red", [iid2], T0)
    assert [i.instance for i in svc.describe_interfaces("red") if i.id == three.id] == [""]
    with fails("IncorrectInstanceState"):
        svc.attach_interface("red", three.id, iid2, 1)
    with fails("InvalidInstanceID.NotFound"):
        svc.attach_interface("red", three.id, "i-00000000000000000", 1)


def test_terminate_deletes_only_interfaces_marked_so(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    iid, _ = _instance(svc, subnet.id)
    keep, drop = svc.create_interface("red", subnet.id), svc.create_interface("red", subnet.id)
    svc.attach_interface("red", keep.id, iid, 1)
    attached = svc.attach_interface("red", drop.id, iid, 2)
    svc.modify_interface("red", drop.id, attachment=(attached.attachment, True))
    with fails("InvalidAttachmentID.NotFound"):
        svc.modify_interface("red", keep.id, attachment=(attached.attachment, True))
    svc.terminate_instances("red", [iid], T0)
    left = svc.describe_interfaces("red")
    assert [(i.id, i.instance, i.netns) for i in left] == [(keep.id, "", "")]


def test_modify_attributes(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    _, eni = _instance(svc, subnet.id)
    svc.modify_interface("red", eni, source_check=False)
    (port,) = [p for c in compile_all(svc.snapshot()).values() for p in c.ports]
    assert port.source_check is False
    changed = svc.modify_interface("red", eni, groups=["sg-2", "sg-3"], description="d")
    assert (changed.groups, changed.description, changed.source_check) == (
        ("sg-2", "sg-3"),
        "d",
        False,
    )
    with fails("InvalidParameterValue"):
        svc.modify_interface("red", eni, groups=[])
    with fails("InvalidNetworkInterfaceID.NotFound"):
        svc.modify_interface("blue", eni, source_check=True)


def test_secondary_addresses_are_routed_and_allowed(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    _, eni = _instance(svc, subnet.id)
    svc.assign_private_ips("red", eni, ["10.0.1.50"])
    configs = compile_all(svc.snapshot()).values()
    (port,) = [p for c in configs for p in c.ports]
    assert port.allowed_ips == ("10.0.1.50",)
    assert [r.mac for c in configs for r in c.routes if r.prefix == "10.0.1.50/32"] == [port.mac]
    svc.unassign_private_ips("red", eni, ["10.0.1.50"])
    configs = compile_all(svc.snapshot()).values()
    assert not any(r.prefix == "10.0.1.50/32" for c in configs for r in c.routes)


def test_a_secondary_address_cannot_be_a_movable_one(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    _, eni = _instance(svc, subnet.id)
    svc.assign_private_ips("red", eni, ["10.0.1.50"])
    with fails("InvalidIPAddress.InUse"):
        svc.run_instance("red", subnet.id, "v", "node1", "ns-v", allowed_addresses=["10.0.1.50"])
