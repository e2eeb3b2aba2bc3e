"""The topology file: parsing with errors that name the bad field, the example file, and
applying it to a real service (twice, after losses, and against conflicting state)."""

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_setup import open_service

from openvpc.lab.topology import (
    RouteSpec,
    SubnetSpec,
    Topology,
    TopologyError,
    VmSpec,
    apply_topology,
    load_topology,
    loads_topology,
    parse_topology,
)
from openvpc.service import Service

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two-tenants.yaml"


def base() -> dict[str, Any]:
    """A small valid document; tests break one field of a deep copy."""
    return {
        "name": "t",
        "underlay": "l2",
        "nodes": ["node1", "node2"],
        "tenants": [
            {"name": "red", "vpcs": [{"name": "other", "cidr": "10.9.0.0/16"}]},
            {
                "name": "blue",
                "vpcs": [
                    {"name": "a", "cidr": "10.1.0.0/16"},
                    {
                        "name": "prod",
                        "cidr": "10.0.0.0/16",
                        "mode": "l2_l3",
                        "encap": "vlan",
                        "route_tables": [
                            {
                                "name": "iso",
                                "routes": [
                                    {"destination": "10.0.1.0/24", "target": "blackhole"},
                                    {"destination": "0.0.0.0/0", "target": "vm:v2"},
                                ],
                            }
                        ],
                        "subnets": [
                            {"name": "web", "cidr": "10.0.1.0/24"},
                            {"name": "app", "cidr": "10.0.2.0/24"},
                            {"name": "db", "cidr": "10.0.3.0/24", "route_table": "iso"},
                        ],
                        "vms": [
                            {"name": "v1", "subnet": "web", "node": "node1"},
                            {"name": "v2", "subnet": "db", "node": "node2", "ip": "10.0.3.10"},
                        ],
                    },
                ],
            },
        ],
    }


def test_a_valid_document_and_its_defaults() -> None:
    topo = parse_topology(base())
    assert (topo.name, topo.underlay, topo.encap, topo.fabric_mtu, topo.nodes) == (
        "t",
        "l2",
        "vxlan",
        1500,
        ("node1", "node2"),
    )
    prod = topo.tenants[1].vpcs[1]
    assert (prod.mode, prod.encap) == ("l2_l3", "vlan")
    assert topo.tenants[1].vpcs[0].encap == "vxlan"  # the lab's default
    assert prod.subnets[0] == SubnetSpec("web", "10.0.1.0/24", "main")
    assert prod.route_tables[0].routes[1] == RouteSpec("0.0.0.0/0", "vm:v2")
    assert prod.vms[1] == VmSpec("v2", "db", "node2", "10.0.3.10")
    assert [vm.name for _, _, vm in topo.vms()] == ["v1", "v2"]


P = "tenants[1].vpcs[1]"
P_RE = re.escape(P)
BAD: list[tuple[str, Any, str]] = [
    # (path to set, value, the message's start); "-" deletes the field
    ("name", "-", "name: missing"),
    ("colour", "red", "colour: unknown field"),
    ("name", "Bad_Name", "name: 'Bad_Name' is not a name"),
    ("underlay", "l4", "underlay: expected one of l2, l3"),
    ("encap", "gre", "encap: expected one of"),
    ("fabric_mtu", "1500", "fabric_mtu: expected an integer"),
    ("fabric_mtu", 100, "fabric_mtu: expected an integer from 1280"),
    ("nodes", "node1", "nodes: expected a list"),
    ("nodes", [], "nodes: at least one"),
    ("nodes", ["node1", "node1"], "nodes: two nodes named 'node1'"),
    ("nodes", ["node1", "averylongnode"], "nodes[1]: 'averylongnode' is not a name"),
    ("tenants", {"red": 1}, "tenants: expected a list"),
    ("tenants.1.name", "red", "tenants: two tenants named 'red'"),
    ("tenants.1.vpcs.0", "x", "tenants[1].vpcs[0]: expected a mapping"),
    ("tenants.1.vpcs.0.name", "prod", "tenants[1].vpcs: two VPCs named 'prod'"),
    ("tenants.1.vpcs.1.cidr", "10.0.0.0/8", f"{P}.cidr: 10.0.0.0/8 must be between /16"),
    ("tenants.1.vpcs.1.cidr", "10.0.0.1/16", f"{P}.cidr: '10.0.0.1/16' is not an IPv4"),
    ("tenants.1.vpcs.1.mode", "l7", f"{P}.mode: expected one of l3, l2, l2_l3"),
    ("underlay", "l3", f"{P}.encap: vlan needs the l2 underlay"),
    ("tenants.1.vpcs.1.subnets.2.cidr", "10.0.0.300/24", f"{P}.subnets[2].cidr: "),
    ("tenants.1.vpcs.1.subnets.2.cidr", "10.1.3.0/24", f"{P}.subnets[2].cidr: 10.1.3.0/24 is not"),
    ("tenants.1.vpcs.1.subnets.2.cidr", "10.0.2.0/25", f"{P}.subnets[2].cidr: 10.0.2.0/25 overl"),
    ("tenants.1.vpcs.1.subnets.2.name", "web", f"{P}.subnets: two subnets named 'web'"),
    ("tenants.1.vpcs.1.subnets.2.route_table", "nope", f"{P}.subnets[2].route_table: no route"),
    ("tenants.1.vpcs.1.subnets.2.extra", 1, f"{P}.subnets[2].extra: unknown field"),
    ("tenants.1.vpcs.1.route_tables.0.name", "-", f"{P}.route_tables[0].name: missing"),
    ("tenants.1.vpcs.1.route_tables.0.routes.0.target", "igw", f"{P}.route_tables[0].routes[0]"),
    ("tenants.1.vpcs.1.route_tables.0.routes.1.target", "vm:zz", f"{P}.route_tables[0].routes[1]"),
    (
        "tenants.1.vpcs.1.route_tables.0.routes.0.target",
        "local",
        f"{P}.route_tables[0].routes[0].target: only the VPC CIDR",
    ),
    (
        "tenants.1.vpcs.1.route_tables.0.routes.0.destination",
        "10.0.0.0/16",
        f"{P}.route_tables[0].routes[0].destination: 10.0.0.0/16 is the VPC's local route",
    ),
    (
        "tenants.1.vpcs.1.route_tables.0.routes.1.destination",
        "10.0.1.0/24",
        f"{P}.route_tables[0].routes: two route destinations",
    ),
    ("tenants.1.vpcs.1.vms.0.name", "toolong", f"{P}.vms[0].name: 'toolong' is not a name"),
    ("tenants.1.vpcs.1.vms.0.subnet", "nope", f"{P}.vms[0].subnet: no subnet named 'nope'"),
    ("tenants.1.vpcs.1.vms.0.node", "node3", f"{P}.vms[0].node: 'node3' is not one of"),
    ("tenants.1.vpcs.1.vms.0.node", "-", f"{P}.vms[0].node: missing"),
    ("tenants.1.vpcs.1.vms.0.ip", "10.0.1.255", f"{P}.vms[0].ip: 10.0.1.255 is reserved"),
    ("tenants.1.vpcs.1.vms.0.ip", "10.0.2.9", f"{P}.vms[0].ip: 10.0.2.9 is not inside subnet web"),
    ("tenants.1.vpcs.1.vms.0.ip", "10.0.1.x", f"{P}.vms[0].ip: '10.0.1.x' is not an IPv4"),
    ("tenants.1.vpcs.1.vms.0.ip", 7, f"{P}.vms[0].ip: expected a string, got int 7"),
    ("tenants.1.vpcs.1.vms.0.allowed_addresses", ["10.5.0.1"], f"{P}.vms[0].allowed_addresses[0]"),
    ("tenants.1.vpcs.1.vms.1.subnet", "web", f"{P}.vms[1].ip: 10.0.3.10 is not inside"),
    (
        "tenants.1.vpcs.0.vms",
        [{"name": "v1", "subnet": "s", "node": "node1"}],
        "tenants[1].vpcs[0]",
    ),
]


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    target: Any = doc
    for k in keys[:-1]:
        target = target[k]
    if value == "-":
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_errors_name_the_bad_field(path: str, value: Any, message: str) -> None:
    doc = copy.deepcopy(base())
    _set(doc, path, value)
    with pytest.raises(TopologyError) as e:
        parse_topology(doc)
    assert str(e.value).startswith(message), str(e.value)


def test_vm_names_are_global_to_the_lab() -> None:
    doc = base()
    doc["tenants"][0]["vpcs"][0]["subnets"] = [{"name": "s", "cidr": "10.9.1.0/24"}]
    doc["tenants"][0]["vpcs"][0]["vms"] = [{"name": "v1", "subnet": "s", "node": "node1"}]
    with pytest.raises(TopologyError, match=r"two VMs named 'v1' \(VM names are global"):
        parse_topology(doc)


def test_fixed_and_movable_addresses_may_not_collide() -> None:
    doc = base()
    vms = doc["tenants"][1]["vpcs"][1]["vms"]
    vms[0]["allowed_addresses"] = ["10.0.3.10"]
    with pytest.raises(TopologyError, match=rf"^{P_RE}\.vms\[1\]\.ip: .*movable"):
        parse_topology(doc)
    vms[0]["allowed_addresses"] = []
    vms[0].update(subnet="db", ip="10.0.3.10")
    with pytest.raises(TopologyError, match=rf"^{P_RE}\.vms\[1\]\.ip: 10.0.3.10 is given to two"):
        parse_topology(doc)


def test_yaml_problems_are_topology_errors(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="not valid YAML"):
        loads_topology("name: [unclosed")
    with pytest.raises(TopologyError, match=r"^topology: expected a mapping, got nothing"):
        loads_topology("")
    with pytest.raises(TopologyError, match=r"nowhere\.yaml"):
        load_topology(tmp_path / "nowhere.yaml")
    with pytest.raises(TopologyError, match=r"^nodes\[0\]: expected a string, got bool"):
        loads_topology("name: t\nnodes: [yes]\n")  # YAML 1.1 reads yes as true


def test_the_example_file() -> None:
    topo = load_topology(EXAMPLE)
    assert (topo.name, topo.underlay, topo.nodes) == ("two-tenants", "l3", ("node1", "node2"))
    assert [t.name for t in topo.tenants] == ["red", "blue"]
    for tenant in topo.tenants:
        (vpc,) = tenant.vpcs
        assert vpc.cidr == "10.0.0.0/16"
        assert len({s.route_table for s in vpc.subnets}) == 3  # three subnets, three tables
        assert any(r.target == "blackhole" for t in vpc.route_tables for r in t.routes)
        assert {vm.node for vm in vpc.vms} == set(topo.nodes)
    assert all(len(vm.name) <= 6 for _, _, vm in topo.vms())


# -- applying ---------------------------------------------------------------------------
@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def netns(vm: str) -> str:
    return f"ov-t-{vm}"


def test_apply_creates_everything_through_the_service(svc: Service) -> None:
    topo = parse_topology(base())
    vms = apply_topology(svc, topo, netns)
    assert {n: (i.ip, i.node, i.netns) for n, i in vms.items()} == {
        "v1": ("10.0.1.4", "node1", "ov-t-v1"),
        "v2": ("10.0.3.10", "node2", "ov-t-v2"),
    }
    (prod,) = [v for v in svc.describe_vpcs("blue") if v.name == "prod"]
    assert (prod.mode, prod.encap, prod.cidr) == ("l2_l3", "vlan", "10.0.0.0/16")
    tables = {t.name: t for t in svc.describe_route_tables("blue") if t.vpc == prod.id}
    assert sorted(tables) == ["iso", "main"]
    assert [(r.destination, r.target) for r in tables["iso"].routes] == [
        ("0.0.0.0/0", vms["v2"].id),  # vm:v2 became v2's interface
        ("10.0.0.0/16", "local"),
        ("10.0.1.0/24", "blackhole"),
    ]
    subnets = {s.id: s.name for s in svc.describe_subnets("blue")}
    assert [(subnets[a.subnet], a.route_table) for a in svc.describe_associations("blue")] == [
        ("db", tables["iso"].id)
    ]
    assert [v.name for v in svc.describe_vpcs("red")] == ["other"]


def test_applying_twice_changes_nothing(svc: Service) -> None:
    topo = load_topology(EXAMPLE)
    first = apply_topology(svc, topo, netns)
    rev, snap = svc.revision(), svc.snapshot()
    assert apply_topology(svc, topo, netns) == first
    assert (svc.revision(), svc.snapshot()) == (rev, snap)
    assert len(snap.instances) == 8
    red = {n: i.ip for n, i in first.items() if n.startswith("r")}
    blue = {n: i.ip for n, i in first.items() if n.startswith("b")}
    assert set(red.values()) == set(blue.values())  # the tenants overlap


def test_apply_completes_what_is_missing(svc: Service) -> None:
    topo = parse_topology(base())
    first = apply_topology(svc, topo, netns)
    svc.terminate_instance("blue", first["v2"].instance)  # its route becomes a blackhole
    kept = svc.snapshot().allocations
    again = apply_topology(svc, topo, netns)
    assert again["v1"] == first["v1"]
    assert again["v2"].id != first["v2"].id and again["v2"].ip == "10.0.3.10"
    (iso,) = [t for t in svc.describe_route_tables("blue") if t.name == "iso"]
    assert ("0.0.0.0/0", again["v2"].id) in [(r.destination, r.target) for r in iso.routes]
    node1 = [a for a in svc.snapshot().allocations if a.node == "node1"]
    assert node1 == [a for a in kept if a.node == "node1"]


def test_apply_refuses_state_that_contradicts_the_file(svc: Service) -> None:
    svc.create_vpc("blue", "prod", "10.0.0.0/20")
    with pytest.raises(TopologyError, match=r"^tenants\[1\]\.vpcs\[1\]: VPC prod exists as"):
        apply_topology(svc, parse_topology(base()), netns)


def test_apply_reports_service_errors_with_the_path(svc: Service) -> None:
    doc = base()
    doc["nodes"].append("node3")  # in the file, never registered with the controller
    doc["tenants"][1]["vpcs"][1]["vms"][0]["node"] = "node3"
    with pytest.raises(TopologyError, match=rf"^{P_RE}\.vms\[0\]: InvalidParameterValue: "):
        apply_topology(svc, parse_topology(doc), netns)


def test_a_topology_is_plain_data() -> None:
    topo = parse_topology(base())
    assert isinstance(topo, Topology)
    assert parse_topology(base()) == topo
    assert hash(topo) == hash(parse_topology(base()))


def test_the_datapath_defaults_to_auto_and_is_checked() -> None:
    assert parse_topology(base()).datapath == "auto"
    assert parse_topology({**base(), "datapath": "ebpf"}).datapath == "ebpf"
    assert parse_topology({**base(), "datapath": "python"}).datapath == "python"
    with pytest.raises(
        TopologyError, match=r"^datapath: expected one of auto, python, ebpf, got 'xdp'"
    ):
        parse_topology({**base(), "datapath": "xdp"})
