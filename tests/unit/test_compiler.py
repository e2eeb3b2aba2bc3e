"""The compiler against golden text, and the properties forwarding relies on."""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from openvpc.compiler.compile import GATEWAY_MAC, compile_all, compile_node
from openvpc.compiler.render import render
from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import NodeConfig
from openvpc.model.resources import (
    AddressOwner,
    Association,
    ComputeNode,
    Instance,
    Interface,
    NodeAllocation,
    Route,
    RouteTable,
    Snapshot,
    Subnet,
    Tenant,
    Vpc,
)

GOLDEN = Path(__file__).parent / "golden"


def _iface(n: int, subnet: str, node: str, ip: str, allowed: tuple[str, ...] = ()) -> Interface:
    mac = f"02:00:00:00:00:{n:02x}"
    return Interface(
        f"eni-{n}", "red", subnet, f"i-{n}", node, mac, ip, f"vm{n}", allowed_addresses=allowed
    )


def l3_snapshot(encap: str = "mplsogre") -> Snapshot:
    """Red: web (main table) and db (a table that blackholes web); a VIP owned by vm1."""
    vip = ("10.0.1.100",)
    return Snapshot(
        revision=7,
        nodes=(ComputeNode("node1", "172.16.1.10"), ComputeNode("node2", "172.16.2.11")),
        tenants=(Tenant("red"),),
        vpcs=(Vpc("vpc-1", "red", "prod", "10.0.0.0/16", "l3", encap, "rtb-main"),),  # type: ignore[arg-type]
        subnets=(
            Subnet("subnet-web", "red", "vpc-1", "web", "10.0.1.0/24"),
            Subnet("subnet-db", "red", "vpc-1", "db", "10.0.2.0/24"),
        ),
        route_tables=(
            RouteTable(
                "rtb-main", "red", "vpc-1", "main", 5001, 101, (Route("10.0.0.0/16", "local"),)
            ),
            RouteTable(
                "rtb-iso",
                "red",
                "vpc-1",
                "isolated",
                5002,
                102,
                (Route("10.0.0.0/16", "local"), Route("10.0.1.0/24", "blackhole")),
            ),
        ),
        associations=(Association("subnet-db", "rtb-iso", "red"),),
        instances=tuple(
            Instance(f"i-{n}", "red", f"r{n}", node, f"eni-{n}")
            for n, node in ((1, "node1"), (2, "node2"), (3, "node2"))
        ),
        interfaces=(
            _iface(1, "subnet-web", "node1", "10.0.1.4", allowed=vip),
            _iface(2, "subnet-web", "node2", "10.0.1.5", allowed=vip),
            _iface(3, "subnet-db", "node2", "10.0.2.4"),
        ),
        address_owners=(AddressOwner("vpc-1", "10.0.1.100", "eni-1", "red"),),
        allocations=(
            NodeAllocation("node1", (("rtb-main", 1),), (("rtb-main", 16, 17),), (("eni-1", 2),)),
            NodeAllocation(
                "node2",
                (("rtb-main", 1), ("rtb-iso", 2)),
                (("rtb-main", 16, 17), ("rtb-iso", 18, 19)),
                (("eni-2", 2), ("eni-3", 3)),
            ),
        ),
    )


def l2_snapshot() -> Snapshot:
    s = l3_snapshot("vlan")
    return replace(s, vpcs=(replace(s.vpcs[0], mode="l2"),))


CASES = {
    "l3_mplsogre": l3_snapshot,
    "l3_vxlan": lambda: l3_snapshot("vxlan"),
    "l2_vlan": l2_snapshot,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    text = "".join(render(c) for c in compile_all(CASES[case]()).values())
    path = GOLDEN / f"compile_{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_config_round_trips_through_json() -> None:
    for config in compile_all(l2_snapshot()).values():
        assert from_dict(NodeConfig, to_dict(config)) == config


def test_compile_is_deterministic_and_node_scoped() -> None:
    snap = l3_snapshot()
    assert compile_all(snap) == compile_all(snap)
    node1 = compile_node(snap, "node1")
    assert [v.name for v in node1.vrfs] == ["red/prod/main"]  # not the db table: no VM here
    assert [p.name for p in node1.ports] == ["r1"]


def _route(config: NodeConfig, vrf: int, prefix: str) -> tuple[str, int | None]:
    found = [r for r in config.routes if r.vrf == vrf and r.prefix == prefix]
    assert len(found) == 1, f"{prefix} in vrf {vrf}: {found}"
    return found[0].nh, found[0].label


def test_tunnel_carries_the_receivers_label_for_the_destinations_table() -> None:
    node1 = compile_node(l3_snapshot(), "node1")
    # vm3 is in db (rtb-iso): node2 allocated 18 (l3) for that table
    assert _route(node1, 1, "10.0.2.4/32") == ("tunnel:mplsogre:172.16.2.11", 18)
    assert _route(node1, 1, "10.0.1.5/32") == ("tunnel:mplsogre:172.16.2.11", 16)
    vx = compile_node(l3_snapshot("vxlan"), "node1")
    assert _route(vx, 1, "10.0.2.4/32") == ("tunnel:vxlan:172.16.2.11", 5002)


def test_more_specific_blackhole_beats_local_host_routes() -> None:
    node2 = compile_node(l3_snapshot(), "node2")
    iso = next(v.id for v in node2.vrfs if v.name.endswith("isolated"))
    assert _route(node2, iso, "10.0.1.0/24") == ("discard", None)
    assert not [
        r for r in node2.routes if r.vrf == iso and r.prefix in ("10.0.1.4/32", "10.0.1.100/32")
    ]
    assert _route(node2, iso, "10.0.2.4/32") == ("encap:3", None)


def test_vip_routes_to_its_owner_and_moves_with_it() -> None:
    snap = l3_snapshot()
    assert _route(compile_node(snap, "node2"), 1, "10.0.1.100/32")[0].startswith("tunnel:")
    moved = replace(snap, address_owners=(AddressOwner("vpc-1", "10.0.1.100", "eni-2", "red"),))
    assert _route(compile_node(moved, "node2"), 1, "10.0.1.100/32") == ("encap:2", None)


def test_ports_get_gateway_dns_and_overlay_mtu() -> None:
    port = compile_node(l3_snapshot("vxlan"), "node2").ports[1]
    assert (port.ip, port.prefix_len, port.gateway, port.dns) == (
        "10.0.2.4",
        24,
        "10.0.2.1",
        "10.0.0.2",
    )
    assert port.mtu == 1450  # 1500 - outer IPv4, UDP, VXLAN and the inner Ethernet header
    assert compile_node(l3_snapshot("mplsogre"), "node2").ports[1].mtu == 1472


def _ports_and_hosts(snap: Snapshot) -> tuple[set[str], set[str]]:
    configs = compile_all(snap).values()
    ports = {p.interface_id for c in configs for p in c.ports}
    hosts = {r.prefix for c in configs for r in c.routes if r.mac and r.mac != GATEWAY_MAC}
    return ports, hosts


def test_only_interfaces_of_running_instances_are_compiled() -> None:
    snap = l3_snapshot()
    assert _ports_and_hosts(snap)[0] == {"eni-1", "eni-2", "eni-3"}
    stopped = replace(
        snap,
        instances=tuple(
            replace(i, state="stopped") if i.id == "i-2" else i for i in snap.instances
        ),
    )
    ports, hosts = _ports_and_hosts(stopped)
    assert ports == {"eni-1", "eni-3"} and "10.0.1.5/32" not in hosts
    detached = replace(
        snap,
        interfaces=tuple(
            replace(i, instance="", node="", netns="") if i.id == "eni-3" else i
            for i in snap.interfaces
        ),
    )
    ports, hosts = _ports_and_hosts(detached)
    assert ports == {"eni-1", "eni-2"} and "10.0.2.4/32" not in hosts
    # the VIP owned by a stopped instance's interface is not routed either
    owner_stopped = replace(
        snap,
        instances=tuple(
            replace(i, state="stopped") if i.id == "i-1" else i for i in snap.instances
        ),
    )
    assert "10.0.1.100/32" not in _ports_and_hosts(owner_stopped)[1]


def test_secondary_addresses_are_host_routes_and_allowed_sources() -> None:
    snap = l3_snapshot()
    snap = replace(
        snap,
        interfaces=tuple(
            replace(i, secondary_ips=("10.0.1.60",)) if i.id == "eni-2" else i
            for i in snap.interfaces
        ),
    )
    configs = compile_all(snap)
    (port,) = [p for p in configs["node2"].ports if p.interface_id == "eni-2"]
    assert port.allowed_ips == ("10.0.1.60", "10.0.1.100")
    routes = [r for c in configs.values() for r in c.routes if r.prefix == "10.0.1.60/32"]
    assert routes and all(r.mac == port.mac for r in routes)
