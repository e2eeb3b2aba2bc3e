"""The real lab's underlay plan: addresses, links, ECMP routes and sysctls, without a kernel."""

import ipaddress

import pytest

from openvpc.lab.naming import FABRIC_IF
from openvpc.lab.underlay import UnderlayPlan, plan_underlay


def _addresses(plan: UnderlayPlan) -> dict[tuple[str, str], str]:
    return {(a.ns, a.ifname): a.cidr for a in plan.addresses}


def test_l2_one_bridge_and_a_veth_per_node() -> None:
    plan = plan_underlay("t", "l2", ["node1", "node2", "node3"], 1500)
    assert plan.fabric_ns == ("ov-t-u-sw",)
    assert [p.ip for p in plan.nodes] == ["192.168.0.10", "192.168.0.11", "192.168.0.12"]
    assert [p.ns for p in plan.nodes] == ["ov-t-n-node1", "ov-t-n-node2", "ov-t-n-node3"]
    assert len(plan.bridges) == 1
    bridge = plan.bridges[0]
    assert bridge.ns == "ov-t-u-sw"
    assert sorted(bridge.ports) == sorted(v.if_a for v in plan.veths)
    assert all(v.ns_a == "ov-t-u-sw" and v.if_b == FABRIC_IF for v in plan.veths)
    assert _addresses(plan)[("ov-t-n-node2", FABRIC_IF)] == "192.168.0.11/24"
    assert plan.routes == () and plan.sysctls == ()


def test_l3_nodes_alternate_between_leaves() -> None:
    plan = plan_underlay("t", "l3", ["a", "b", "c", "d", "e"], 9000)
    leaves = [p.attached_to for p in plan.nodes]
    assert leaves == ["ov-t-u-leaf1", "ov-t-u-leaf2"] * 2 + ["ov-t-u-leaf1"]
    assert [p.ip for p in plan.nodes] == [
        "172.16.1.10",
        "172.16.2.10",
        "172.16.1.11",
        "172.16.2.11",
        "172.16.1.12",
    ]
    for p in plan.nodes:
        gateway = [r for r in plan.routes if r.ns == p.ns]
        assert len(gateway) == 1 and gateway[0].dst == "default"
        subnet = ipaddress.ip_network(f"{p.ip}/24", strict=False)
        assert ipaddress.ip_address(gateway[0].gateways[0]) in subnet
        assert _addresses(plan)[(p.attached_to, "br0")] == f"{gateway[0].gateways[0]}/24"


def test_l3_leaf_spine_links_are_point_to_point_and_disjoint() -> None:
    plan = plan_underlay("t", "l3", ["a", "b"], 1500)
    links = [v for v in plan.veths if "spine" in v.if_a]
    assert len(links) == 4  # full mesh between two leaves and two spines
    seen: set[ipaddress.IPv4Network] = set()
    for v in links:
        a = ipaddress.IPv4Interface(_addresses(plan)[(v.ns_a, v.if_a)])
        b = ipaddress.IPv4Interface(_addresses(plan)[(v.ns_b, v.if_b)])
        assert a.network == b.network and a.network.prefixlen == 31 and a.ip != b.ip
        assert a.network not in seen
        seen.add(a.network)


def test_l3_leaves_have_ecmp_routes_over_both_spines() -> None:
    plan = plan_underlay("t", "l3", ["a", "b"], 1500)
    addrs = _addresses(plan)
    subnets = ["172.16.1.0/24", "172.16.2.0/24"]
    for j in range(2):
        other = subnets[1 - j]
        ns = f"ov-t-u-leaf{j + 1}"
        (route,) = [r for r in plan.routes if r.ns == ns]
        assert route.dst == other and len(route.gateways) == 2
        spine_sides = {
            addrs[(f"ov-t-u-spine{s + 1}", f"leaf{j + 1}")].split("/")[0] for s in range(2)
        }
        assert set(route.gateways) == spine_sides
    for s in range(2):
        ns = f"ov-t-u-spine{s + 1}"
        dsts = sorted(r.dst for r in plan.routes if r.ns == ns)
        assert dsts == ["172.16.1.0/24", "172.16.2.0/24"]
        assert all(len(r.gateways) == 1 for r in plan.routes if r.ns == ns)


def test_l3_routers_forward_and_leaves_hash_on_layer4() -> None:
    plan = plan_underlay("t", "l3", ["a"], 1500)
    forwarding = {s.ns for s in plan.sysctls if s.key == "net.ipv4.ip_forward" and s.value == "1"}
    assert forwarding == set(plan.fabric_ns)
    hashing = {
        s.ns
        for s in plan.sysctls
        if s.key == "net.ipv4.fib_multipath_hash_policy" and s.value == "1"
    }
    assert hashing == {"ov-t-u-leaf1", "ov-t-u-leaf2"}


def test_every_interface_is_unique_in_its_namespace() -> None:
    for kind in ("l2", "l3"):
        plan = plan_underlay("t", kind, [f"n{i}" for i in range(7)], 1500)
        ends = [(v.ns_a, v.if_a) for v in plan.veths] + [(v.ns_b, v.if_b) for v in plan.veths]
        ends += [(b.ns, b.name) for b in plan.bridges]
        assert len(ends) == len(set(ends))
        assert all(len(ifname) <= 15 for _, ifname in ends)
        namespaces = {ns for ns, _ in ends}
        assert namespaces == set(plan.all_netns())


@pytest.mark.parametrize(
    ("kind", "nodes", "mtu", "message"),
    [
        ("l4", ["a"], 1500, "l2 or l3"),
        ("l2", [], 1500, "at least one"),
        ("l2", ["a", "a"], 1500, "unique"),
        ("l2", ["A B"], 1500, "node name"),
        ("l3", ["a"], 100, "fabric_mtu"),
        ("l2", [f"n{i}" for i in range(241)], 1500, "at most"),
    ],
)
def test_bad_input_is_a_clear_error(kind: str, nodes: list[str], mtu: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_underlay("t", kind, nodes, mtu)


def test_bad_lab_name() -> None:
    with pytest.raises(ValueError, match="lab name"):
        plan_underlay("with/slash", "l2", ["a"], 1500)
