"""Instances through the service: launch checks and placement, stop/start/terminate
transitions, the hour terminated instances stay, and what the compiler makes of them."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.compiler.compile import compile_all
from openvpc.model.resources import ComputeNode
from openvpc.service import Service
from openvpc.service.instances import INSTANCE_QUOTA, KEPT_TERMINATED, Launch
from openvpc.service.repo import Repo

T0 = 1_800_000_000.0


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def _put(svc: Service, *objs: object) -> None:
    """Zones are set by the operator and subnet calls of other modules: put them directly."""
    with svc.store.transaction() as tx:
        repo = Repo(tx)
        for obj in objs:
            repo.put(obj)


def _launch(svc: Service, subnet: str, **kw: object) -> list[str]:
    made = svc.run_instances("red", Launch(subnet, **kw), T0)  # type: ignore[arg-type]
    return [i.id for i, _ in made]


def test_run_instances_records_the_launch(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    rev = svc.revision()
    ((inst, eni),) = svc.run_instances(
        "red", Launch(subnet.id, instance_type="t3.small", name="web-1"), T0
    )
    assert (inst.state, inst.image, inst.instance_type) == (
        "running",
        "ami-0abcdef1234567890",
        "t3.small",
    )
    assert (inst.launched, inst.revision, inst.subnet, inst.vpc) == (
        T0,
        rev + 1,
        subnet.id,
        vpc.id,
    )
    assert inst.name == "web-1" and inst.dns_name == "ip-10-0-1-4.ec2.internal"
    assert eni.netns == f"ovpc-vm-{inst.id}" and eni.attachment.startswith("eni-attach-")
    assert (eni.ip, eni.device_index, eni.delete_on_termination) == ("10.0.1.4", 0, True)


def test_primary_interface_options(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc, cidr="10.0.1.0/28")  # 11 assignable addresses
    launch = Launch(
        subnet.id,
        instance_type="t3.small",
        description="front",
        secondary_count=2,
        delete_on_termination=False,
        max_count=5,
    )
    made = svc.run_instances("red", launch, T0)
    assert len(made) == 3  # three addresses each
    eni = made[0][1]
    assert (eni.description, eni.secondary_ips, eni.delete_on_termination) == (
        "front",
        ("10.0.1.5", "10.0.1.6"),
        False,
    )
    with fails("PrivateIpAddressLimitExceeded"):
        svc.run_instances("red", replace(launch, instance_type="t3.micro"), T0)
    svc.terminate_instances("red", [made[0][0].id], T0)  # its primary interface stays
    kept = [i for i in svc.describe_interfaces("red") if i.id == eni.id]
    assert [(i.instance, i.attachment, i.ip) for i in kept] == [("", "", "10.0.1.4")]


def test_name_tag_that_is_no_dns_label_gives_the_address_name(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    ((inst, _),) = svc.run_instances("red", Launch(subnet.id, name="my web server"), T0)
    assert inst.name == "ip-10-0-1-4"


def test_netns_prefix_is_a_setting(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.set_vm_netns_prefix("ov-lab-v-")
    ((inst, eni),) = svc.run_instances("red", Launch(subnet.id), T0)
    assert eni.netns == f"ov-lab-v-{inst.id}"
    for bad in ("", "a/b", "x" * 41):
        with fails("InvalidParameterValue"):
            svc.set_vm_netns_prefix(bad)


def test_placement_spreads_over_the_least_loaded_nodes(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    made = svc.run_instances("red", Launch(subnet.id, min_count=4, max_count=4), T0)
    assert [i.node for i, _ in made] == ["node1", "node2", "node1", "node2"]
    assert [e.ip for _, e in made] == ["10.0.1.4", "10.0.1.5", "10.0.1.6", "10.0.1.7"]
    assert [i.launch_index for i, _ in made] == [0, 1, 2, 3]
    assert len({i.reservation for i, _ in made}) == 1 and made[0][0].reservation.startswith("r-")


def test_placement_stays_in_the_subnets_zone(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    _put(
        svc,
        ComputeNode("node3", "172.16.3.10", "us-east-1b"),
        replace(subnet, zone="us-east-1b"),
    )
    made = svc.run_instances("red", Launch(subnet.id, min_count=3, max_count=3), T0)
    assert {i.node for i, _ in made} == {"node3"} and made[0][0].zone == "us-east-1b"
    # "" is the region's first zone: nodes without a zone serve it
    other = svc.create_subnet("red", vpc.id, "b", "10.0.2.0/24")
    _put(svc, replace(other, zone="us-east-1a"))
    made = svc.run_instances("red", Launch(other.id, first_zone="us-east-1a"), T0)
    assert made[0][0].node in ("node1", "node2")
    _put(svc, replace(other, zone="us-east-1c"))
    with fails("InsufficientInstanceCapacity"):
        svc.run_instances("red", Launch(other.id, first_zone="us-east-1a"), T0)


def test_a_chosen_node_and_movable_addresses(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    vip = ("10.0.1.100",)
    made = svc.run_instances(
        "red", Launch(subnet.id, node="node2", max_count=2, allowed_addresses=vip), T0
    )
    assert [i.node for i, _ in made] == ["node2", "node2"]
    assert [e.allowed_addresses for _, e in made] == [vip, vip]
    assert [o.interface for o in svc.describe_address_owners("red")] == [made[0][1].id]
    with fails("InvalidHostID.NotFound"):
        svc.run_instances("red", Launch(subnet.id, node="node9"), T0)
    _put(svc, ComputeNode("node3", "172.16.3.10", "us-east-1b"))
    with fails("InvalidParameterValue"):
        svc.run_instances("red", Launch(subnet.id, node="node3", first_zone="us-east-1a"), T0)


def test_launch_checks_image_type_and_counts(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    with fails("InvalidAMIID.NotFound"):
        _launch(svc, subnet.id, image="ami-0123456789abcdef0")
    with fails("InvalidAMIID.Malformed"):
        _launch(svc, subnet.id, image="image-1")
    with fails("InvalidParameterValue"):
        _launch(svc, subnet.id, instance_type="t9.giant")
    for low, high in ((0, 1), (2, 1), (1, 0)):
        with fails("InvalidParameterValue"):
            _launch(svc, subnet.id, min_count=low, max_count=high)
    with fails("InvalidParameterCombination"):
        _launch(svc, subnet.id, ip="10.0.1.9", max_count=2)
    with fails("InvalidSubnetID.NotFound"):
        _launch(svc, "subnet-00000000000000000")
    assert svc.describe_instances("red") == ()


def test_count_between_min_and_max_follows_free_addresses(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc, cidr="10.0.1.0/28")  # 11 assignable addresses
    assert len(_launch(svc, subnet.id, min_count=1, max_count=8)) == 8
    with fails("InsufficientFreeAddressesInSubnet"):
        _launch(svc, subnet.id, min_count=4, max_count=4)
    assert len(_launch(svc, subnet.id, min_count=1, max_count=50)) == 3


def test_instance_quota(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc, cidr="10.0.0.0/24")
    assert len(_launch(svc, subnet.id, min_count=60, max_count=60)) == 60
    assert len(_launch(svc, subnet.id, min_count=1, max_count=10)) == INSTANCE_QUOTA - 60
    with fails("InstanceLimitExceeded"):
        _launch(svc, subnet.id)
    # other tenants have their own quota
    _, blue_subnet = vpc_with_subnet(svc, "blue")
    assert len(svc.run_instances("blue", Launch(blue_subnet.id), T0)) == 1
    # terminated instances do not count
    first = svc.describe_instances("red")[0]
    svc.terminate_instances("red", [first.id], T0)
    assert len(_launch(svc, subnet.id)) == 1


def test_stop_start_terminate_transitions(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    (iid,) = _launch(svc, subnet.id)
    ((before, after),) = svc.stop_instances("red", [iid], T0 + 1)
    assert (before.state, after.state, after.changed) == ("running", "stopped", T0 + 1)
    ((before, after),) = svc.stop_instances("red", [iid], T0 + 2)  # again: no change
    assert before == after
    rev = svc.revision()
    ((_, after),) = svc.start_instances("red", [iid], T0 + 3)
    assert (after.state, after.revision) == ("running", rev + 1)
    ((_, after),) = svc.terminate_instances("red", [iid], T0 + 4)
    assert after.state == "terminated"
    ((before, after),) = svc.terminate_instances("red", [iid], T0 + 5)  # idempotent
    assert before == after and after.changed == T0 + 4
    with fails("IncorrectInstanceState"):
        svc.start_instances("red", [iid], T0 + 6)
    with fails("IncorrectInstanceState"):
        svc.stop_instances("red", [iid], T0 + 6)
    with fails("InvalidInstanceID.NotFound"):
        svc.stop_instances("red", ["i-00000000000000000"], T0)
    with fails("InvalidInstanceID.NotFound"):
        svc.stop_instances("blue", [iid], T0)  # another tenant's is a missing one


def test_a_failing_id_changes_none_of_the_others(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    a, b = _launch(svc, subnet.id, min_count=2, max_count=2)
    svc.terminate_instances("red", [b], T0)
    with fails("IncorrectInstanceState"):
        svc.stop_instances("red", [a, b], T0)
    assert [i.state for i in svc.describe_instances("red")] == ["running"]


def test_terminate_frees_the_address_and_stays_describable_for_an_hour(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    (iid,) = _launch(svc, subnet.id)
    svc.terminate_instances("red", [iid], T0)
    assert svc.describe_interfaces("red") == ()
    assert svc.describe_instances("red") == ()  # the operator's view: live ones only
    (record,) = svc.instance_records("red", T0 + KEPT_TERMINATED - 1)
    assert record.instance.state == "terminated" and record.interfaces == ()
    assert svc.instance_records("red", T0 + KEPT_TERMINATED) == []
    with fails("InvalidInstanceID.NotFound"):
        svc.terminate_instances("red", [iid], T0 + KEPT_TERMINATED)
    (again,) = svc.run_instances("red", Launch(subnet.id), T0 + KEPT_TERMINATED)
    assert again[1].ip == "10.0.1.4"  # the address went with the instance
    assert [r.instance.id for r in svc.instance_records("red", T0)] == [again[0].id]  # purged
    svc.terminate_instances("red", [again[0].id], T0)
    svc.delete_subnet("red", subnet.id)  # terminated instances hold nothing


def test_terminated_instances_do_not_block_deleting_the_tenant(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc, "blue")
    ((inst, _),) = svc.run_instances("blue", Launch(subnet.id), T0)
    svc.terminate_instances("blue", [inst.id], T0)
    svc.delete_subnet("blue", subnet.id)
    svc.delete_vpc("blue", vpc.id)
    svc.delete_tenant("blue")


def test_records_name_the_nodes_running_the_vpc(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    a, b = _launch(svc, subnet.id, min_count=2, max_count=2)
    records = svc.instance_records("red", T0)
    assert [r.vpc_nodes for r in records] == [("node1", "node2")] * 2
    svc.stop_instances("red", [b], T0)
    nodes = {r.instance.id: r.vpc_nodes for r in svc.instance_records("red", T0)}
    running_node = next(i.node for i in svc.describe_instances("red") if i.id == a)
    assert nodes == {a: (running_node,), b: (running_node,)}


def test_the_compiler_plugs_only_running_instances(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    ((inst, eni),) = svc.run_instances("red", Launch(subnet.id), T0)

    def ports() -> list[str]:
        return [p.interface_id for c in compile_all(svc.snapshot()).values() for p in c.ports]

    def host_routes() -> list[str]:
        return [r.prefix for c in compile_all(svc.snapshot()).values() for r in c.routes if r.mac]

    assert ports() == [eni.id] and "10.0.1.4/32" in host_routes()
    svc.stop_instances("red", [inst.id], T0)
    assert ports() == [] and "10.0.1.4/32" not in host_routes()
    svc.start_instances("red", [inst.id], T0)
    assert ports() == [eni.id]
    svc.terminate_instances("red", [inst.id], T0)
    assert ports() == []


def test_revision_inside_a_batch_is_the_one_it_started_from(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    before = svc.revision()
    with svc.batch():
        ((inst, _),) = svc.run_instances("red", Launch(subnet.id), T0)
        assert svc.revision() == before  # not committed yet; and no nested transaction
    assert svc.revision() == before + 1 == inst.revision


def test_modify_instance_type_and_primary_interface(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    ((inst, eni),) = svc.run_instances("red", Launch(subnet.id, instance_type="t3.small"), T0)
    svc.assign_private_ips("red", eni.id, count=3)  # four addresses: t3.small's limit
    with fails("IncorrectInstanceState"):
        svc.modify_instance("red", inst.id, T0, instance_type="t3.micro")
    svc.stop_instances("red", [inst.id], T0)
    with fails("InvalidParameterCombination"):  # t3.micro allows two addresses
        svc.modify_instance("red", inst.id, T0, instance_type="t3.micro")
    with fails("InvalidParameterValue"):
        svc.modify_instance("red", inst.id, T0, instance_type="t9.giant")
    changed = svc.modify_instance("red", inst.id, T0, instance_type="m5.large")
    assert changed.instance_type == "m5.large"
    svc.modify_instance("red", inst.id, T0, source_check=False)
    assert [i.source_check for i in svc.describe_interfaces("red")] == [False]
    svc.terminate_instances("red", [inst.id], T0)
    with fails("IncorrectInstanceState"):
        svc.modify_instance("red", inst.id, T0, source_check=True)
    with fails("IncorrectInstanceState"):
        svc.reboot_instances("red", [inst.id], T0)
