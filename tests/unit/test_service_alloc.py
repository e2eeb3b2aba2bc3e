"""Number allocation: VNIs, VLANs and per-node VRF ids, label pairs and vif ids, first values,
uniqueness, and stability while things come and go."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_setup import open_service, vpc_with_subnet

from openvpc.model.resources import NodeAllocation
from openvpc.service import Service, ServiceError
from openvpc.service.numbers import (
    LABEL_RANGE,
    VIF_RANGE,
    VRF_RANGE,
    Exhausted,
    NodeHints,
    next_free,
    plan_node,
)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def _alloc(svc: Service, node: str) -> NodeAllocation:
    (found,) = [a for a in svc.snapshot().allocations if a.node == node]
    return found


# -- pure -------------------------------------------------------------------------------
def test_next_free_resumes_at_the_hint_and_wraps() -> None:
    assert next_free(set(), (1, 5), 1) == 1
    assert next_free({1, 2}, (1, 5), 1) == 3
    assert next_free({1}, (1, 5), 4) == 4
    assert next_free({4, 5}, (1, 5), 4) == 1  # wrapped
    assert next_free(set(), (1, 5), 99) == 1  # a hint out of range starts at the bottom
    with pytest.raises(Exhausted):
        next_free({1, 2, 3}, (1, 3), 2)


def test_plan_node_first_numbers() -> None:
    plan, hints = plan_node(NodeAllocation("n"), ["rtb-b", "rtb-a"], ["eni-1"], NodeHints())
    assert plan == NodeAllocation(
        "n", (("rtb-a", 1), ("rtb-b", 2)), (("rtb-a", 16, 17), ("rtb-b", 18, 19)), (("eni-1", 2),)
    )
    assert hints == NodeHints(3, 20, 3)


_names = st.sampled_from([f"x{i}" for i in range(8)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.frozensets(_names), st.frozensets(_names)), min_size=1, max_size=12))
def test_plan_node_keeps_numbers_while_things_exist(
    steps: list[tuple[frozenset[str], frozenset[str]]],
) -> None:
    """Whatever comes and goes: kept things keep their numbers, numbers stay unique and in
    range, and a freed number is not handed out again at the very next allocation."""
    current, hints = NodeAllocation("n"), NodeHints()
    for tables, ifaces in steps:
        plan, hints = plan_node(current, tables, ifaces, hints)
        vrfs, vifs = dict(plan.vrfs), dict(plan.vifs)
        labels = {t: (l3, l2) for t, l3, l2 in plan.labels}
        assert set(vrfs) == set(labels) == tables and set(vifs) == ifaces
        for old_t, old_v in current.vrfs:
            if old_t in tables:
                assert vrfs[old_t] == old_v
        for old_t, l3, l2 in current.labels:
            if old_t in tables:
                assert labels[old_t] == (l3, l2)
        for old_i, old_v in current.vifs:
            if old_i in ifaces:
                assert vifs[old_i] == old_v
        all_labels = [n for pair in labels.values() for n in pair]
        assert len(set(vrfs.values())) == len(vrfs)
        assert len(set(vifs.values())) == len(vifs)
        assert len(set(all_labels)) == len(all_labels)
        assert all(VRF_RANGE[0] <= v <= VRF_RANGE[1] for v in vrfs.values())
        assert all(VIF_RANGE[0] <= v <= VIF_RANGE[1] for v in vifs.values())
        assert all(LABEL_RANGE[0] <= n <= LABEL_RANGE[1] for n in all_labels)
        freed = {v for t, v in current.vrfs if t not in tables}
        new = {v for t, v in plan.vrfs if t not in dict(current.vrfs)}
        assert not freed & new
        current = plan


# -- through the service ----------------------------------------------------------------
def test_first_numbers_on_a_node(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    _, eni = svc.run_instance("red", subnet.id, "r1", "node1", "ns1")
    assert _alloc(svc, "node1") == NodeAllocation(
        "node1",
        ((vpc.main_route_table, 1),),
        ((vpc.main_route_table, 16, 17),),
        ((eni.id, 2),),
    )
    assert _alloc(svc, "node2") == NodeAllocation("node2")  # hosts nothing yet


def test_numbers_are_per_node_and_per_table(svc: Service) -> None:
    vpc, web = vpc_with_subnet(svc)
    db = svc.create_subnet("red", vpc.id, "db", "10.0.2.0/24")
    iso = svc.create_route_table("red", vpc.id, "iso")
    svc.associate_route_table("red", iso.id, db.id)
    _, e1 = svc.run_instance("red", web.id, "r1", "node1", "ns1")
    _, e2 = svc.run_instance("red", db.id, "r2", "node1", "ns2")
    _, e3 = svc.run_instance("red", db.id, "r3", "node2", "ns3")
    n1, n2 = _alloc(svc, "node1"), _alloc(svc, "node2")
    assert dict(n1.vrfs) == {vpc.main_route_table: 1, iso.id: 2}
    labels = {t: (a, b) for t, a, b in n1.labels}
    assert labels == {vpc.main_route_table: (16, 17), iso.id: (18, 19)}
    assert dict(n1.vifs) == {e1.id: 2, e2.id: 3}
    assert dict(n2.vrfs) == {iso.id: 1}  # node2 numbers on its own
    assert [(a, b) for _, a, b in n2.labels] == [(16, 17)]
    assert dict(n2.vifs) == {e3.id: 2}


def test_unrelated_changes_leave_numbers_alone(svc: Service) -> None:
    vpc, web = vpc_with_subnet(svc)
    svc.run_instance("red", web.id, "r1", "node1", "ns1")
    gone, _ = svc.run_instance("red", web.id, "r2", "node1", "ns2")
    svc.run_instance("red", web.id, "r3", "node1", "ns3")
    before = _alloc(svc, "node1")
    _, blue_web = vpc_with_subnet(svc, tenant="blue")
    svc.run_instance("blue", blue_web.id, "b1", "node2", "ns1")
    svc.create_route_table("red", vpc.id, "unused")
    assert _alloc(svc, "node1") == before
    svc.terminate_instance("red", gone.id)
    after = _alloc(svc, "node1")
    assert set(after.vifs) < set(before.vifs)
    assert all(dict(before.vifs)[i] == v for i, v in after.vifs)
    assert (after.vrfs, after.labels) == (before.vrfs, before.labels)
    _, again = svc.run_instance("red", web.id, "r2", "node1", "ns2")
    assert dict(_alloc(svc, "node1").vifs)[again.id] == 5  # not the freed 3, not yet


def test_reassociation_numbers_the_new_table_and_releases_the_old(svc: Service) -> None:
    vpc, web = vpc_with_subnet(svc)
    iso = svc.create_route_table("red", vpc.id, "iso")
    _, eni = svc.run_instance("red", web.id, "r1", "node1", "ns1")
    main = vpc.main_route_table
    assert dict(_alloc(svc, "node1").vrfs) == {main: 1}
    association = svc.associate_route_table("red", iso.id, web.id)
    a = _alloc(svc, "node1")
    assert (dict(a.vrfs), [x[1:] for x in a.labels], dict(a.vifs)) == (
        {iso.id: 2},
        [(18, 19)],
        {eni.id: 2},  # the interface keeps its vif
    )
    svc.disassociate_route_table("red", association.id)
    a = _alloc(svc, "node1")
    assert (dict(a.vrfs), [x[1:] for x in a.labels]) == ({main: 3}, [(20, 21)])


def test_vni_and_vlan_are_global_and_not_reused_at_once(svc: Service) -> None:
    vpc, _ = vpc_with_subnet(svc)
    t1 = svc.create_route_table("red", vpc.id, "t1")
    t2 = svc.create_route_table("blue", svc.create_vpc("blue", "p", "10.0.0.0/16").id, "t2")
    assert [(t1.vni, t1.vlan), (t2.vni, t2.vlan)] == [(5002, 102), (5004, 104)]
    svc.delete_route_table("red", t1.id)
    t3 = svc.create_route_table("red", vpc.id, "t3")
    assert (t3.vni, t3.vlan) == (5005, 105)


def test_repeating_a_call_that_changes_nothing_keeps_the_revision(svc: Service) -> None:
    vpc, web = vpc_with_subnet(svc)
    iso = svc.create_route_table("red", vpc.id, "iso")
    svc.associate_route_table("red", iso.id, web.id)
    svc.run_instance("red", web.id, "r1", "node1", "ns1")
    rev, snap = svc.revision(), svc.snapshot()
    with pytest.raises(ServiceError):  # Resource.AlreadyAssociated, and nothing written
        svc.associate_route_table("red", iso.id, web.id)
    svc.register_node("node1", "172.16.1.10")
    assert svc.revision() == rev
    assert svc.snapshot() == snap
