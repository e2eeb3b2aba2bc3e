"""What keeps applying a topology linear changes no answer: node allocations planned from the
new interfaces alone equal a full plan, lowest-free addressing resumes correctly after a
release, a batch commits all or nothing, and the store's field lookups find exactly what a
scan would."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_setup import open_service

from openvpc.model.codec import from_dict, to_dict
from openvpc.model.resources import Interface, NodeAllocation
from openvpc.service import Service, ServiceError
from openvpc.service.allocation import reconcile_all
from openvpc.service.repo import Repo, allocation_body, allocation_from_body
from openvpc.store import Store


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def assert_allocations_complete(svc: Service) -> None:
    """A full plan of every node from every interface would change nothing."""
    with svc.store.transaction() as tx:
        reconcile_all(Repo(tx))
        assert not tx.changed


def test_incremental_allocation_equals_a_full_plan(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    app = svc.create_subnet("red", vpc.id, "app", "10.0.2.0/24")
    table = svc.create_route_table("red", vpc.id, "iso")
    svc.associate_route_table("red", table.id, app.id)
    for i in range(6):
        subnet = web if i % 2 else app
        svc.run_instance("red", subnet.id, f"a{i}", f"node{1 + i % 2}", f"ns-a{i}")
        assert_allocations_complete(svc)
    with svc.batch():
        blue = svc.create_vpc("blue", "prod", "10.0.0.0/16")
        sub = svc.create_subnet("blue", blue.id, "web", "10.0.1.0/24")
        for i in range(5):
            svc.run_instance("blue", sub.id, f"b{i}", "node1", f"ns-b{i}")
    assert_allocations_complete(svc)
    first = svc.describe_instances("red")[0]
    svc.terminate_instance("red", first.id)
    assert_allocations_complete(svc)
    allocations = svc.snapshot().allocations
    assert sum(len(a.vifs) for a in allocations) == 10


def test_lowest_free_resumes_below_the_hint_after_a_release(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    made = [svc.run_instance("red", web.id, f"v{i}", "node1", f"ns{i}") for i in range(3)]
    assert [i.ip for _, i in made] == ["10.0.1.4", "10.0.1.5", "10.0.1.6"]
    svc.terminate_instance("red", made[1][0].id)
    _, again = svc.run_instance("red", web.id, "v3", "node1", "ns3")
    _, next_one = svc.run_instance("red", web.id, "v4", "node1", "ns4")
    assert (again.ip, next_one.ip) == ("10.0.1.5", "10.0.1.7")
    # a fixed address above the hint is stepped over, not handed out twice
    svc.run_instance("red", web.id, "v5", "node1", "ns5", ip="10.0.1.8")
    _, after = svc.run_instance("red", web.id, "v6", "node1", "ns6")
    assert after.ip == "10.0.1.9"


def test_a_released_vip_in_another_subnet_is_free_again(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    app = svc.create_subnet("red", vpc.id, "app", "10.0.2.0/24")
    _, a = svc.run_instance("red", app.id, "a", "node1", "nsa")
    assert a.ip == "10.0.2.4"
    owner, _ = svc.run_instance(
        "red", web.id, "vip", "node1", "nsv", allowed_addresses=["10.0.2.5"]
    )
    _, b = svc.run_instance("red", app.id, "b", "node1", "nsb")
    assert b.ip == "10.0.2.6"  # .5 is the VIP's
    svc.terminate_instance("red", owner.id)
    _, c = svc.run_instance("red", app.id, "c", "node1", "nsc")
    assert c.ip == "10.0.2.5"


def test_same_addresses_in_other_vpcs_do_not_count_as_used(svc: Service) -> None:
    for tenant in ("red", "blue"):
        vpc = svc.create_vpc(tenant, "prod", "10.0.0.0/16")
        web = svc.create_subnet(tenant, vpc.id, "web", "10.0.1.0/24")
        _, iface = svc.run_instance(tenant, web.id, f"{tenant}1", "node1", f"ns-{tenant}")
        assert iface.ip == "10.0.1.4"
    with pytest.raises(ServiceError, match="InUse"):
        svc.run_instance("blue", web.id, "blue2", "node1", "ns-b2", ip="10.0.1.4")


def test_a_batch_commits_all_or_nothing(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    before = svc.revision()
    with pytest.raises(ServiceError), svc.batch():
        svc.run_instance("red", web.id, "v1", "node1", "ns1")
        svc.run_instance("red", web.id, "v2", "node1", "ns2", ip="10.0.1.4")  # v1's
    assert svc.revision() == before
    assert svc.describe_instances("red") == ()
    with svc.batch():
        svc.run_instance("red", web.id, "v1", "node1", "ns1")
        with pytest.raises(ServiceError):
            # a call refused inside a batch does not end it
            svc.run_instance("red", web.id, "v2", "node1", "ns2", ip="10.0.1.4")
        svc.run_instance("red", web.id, "v3", "node1", "ns3")
    assert [i.name for i in svc.describe_instances("red")] in (["v1", "v3"], ["v3", "v1"])
    assert svc.revision() == before + 1
    assert_allocations_complete(svc)


def test_the_fast_allocation_codec_equals_the_generic_one() -> None:
    a = NodeAllocation("n1", (("rtb-1", 1), ("rtb-2", 2)), (("rtb-1", 16, 17),), (("eni-1", 2),))
    assert allocation_body(a) == to_dict(a)
    assert allocation_from_body(to_dict(a)) == a == from_dict(NodeAllocation, to_dict(a))
    assert allocation_from_body({"node": "n2"}) == NodeAllocation("n2")
    with pytest.raises(ValueError, match="unexpected shape"):
        allocation_from_body({"node": "n", "vifs": [["eni-1"]]})


def test_find_equals_a_filtered_scan(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        store.index("ip")
        with store.transaction() as tx:
            for i in range(30):
                tx.put("interface", f"eni-{i:02}", {"ip": f"10.0.0.{i % 3}", "subnet": f"s{i % 2}"})
            tx.put("owner", "x", {"ip": "10.0.0.1"})
        with store.transaction(readonly=True) as tx:
            found = tx.find("interface", "ip", "10.0.0.1")
            assert [d.id for d in found] == sorted(
                d.id for d in tx.list("interface") if d.body["ip"] == "10.0.0.1"
            )
            both = tx.find("interface", "ip", "10.0.0.1", subnet="s0")
            assert [d.id for d in both] == [d.id for d in found if d.body["subnet"] == "s0"]
            assert tx.find("interface", "ip", "10.9.9.9") == []
            with pytest.raises(Exception, match="cannot index or find"):
                tx.find("interface", "ip') OR 1=1 --", "x")
    finally:
        store.close()


def test_interfaces_found_by_tenant_are_the_tenants(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_subnet("red", vpc.id, "web", "10.0.1.0/24")
    svc.run_instance("red", web.id, "v1", "node1", "ns1")
    assert [i.tenant for i in svc.describe_interfaces("red")] == ["red"]
    assert svc.describe_interfaces("blue") == ()
    assert all(isinstance(i, Interface) for i in svc.describe_interfaces("red"))


def test_a_savepoint_undoes_only_its_part(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        with store.transaction() as tx:
            tx.put("k", "outer", {"v": 1})
            with pytest.raises(RuntimeError), tx.savepoint():
                tx.put("k", "inner", {"v": 2})
                tx.put("k", "outer", {"v": 3})
                raise RuntimeError("refused half way")
            with tx.savepoint():
                tx.put("k", "kept", {"v": 4})
        with store.transaction(readonly=True) as tx:
            assert {d.id: d.body["v"] for d in tx.list("k")} == {"outer": 1, "kept": 4}
    finally:
        store.close()
