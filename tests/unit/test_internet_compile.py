"""The compiler's way out (docs/internet.md): the public VRF on the gateway node and on an
Elastic IP instance's node, the NAT next hops both ways, and nothing without the route, the
address or the gateway node."""

from dataclasses import replace

from test_compiler import l3_snapshot

from openvpc.compiler.compile import compile_all
from openvpc.compiler.render import render
from openvpc.model.gateways import ElasticIp, InternetGateway
from openvpc.model.internet import (
    INTERNET_VIF,
    PUBLIC_VNI,
    PUBLIC_VRF,
    InternetEdge,
)
from openvpc.model.nodeconfig import NextHopConfig, NodeConfig, RouteConfig
from openvpc.model.resources import Route, Snapshot

EDGE = InternetEdge("node1", "ov-x-v-_internet", "198.51.100.254", "198.51.100.253", 24)
EIP = "198.51.100.7"


def out_snapshot(routed: bool = True, associated: bool = True, edge: bool = True) -> Snapshot:
    """l3_snapshot's VPC with an attached internet gateway, its main table routing 0.0.0.0/0
    there (`routed`), and an EIP on vm2 (node2, 10.0.1.5) (`associated`)."""
    s = l3_snapshot("vxlan")
    main, *others = s.route_tables
    if routed:
        main = replace(main, routes=(*main.routes, Route("0.0.0.0/0", "igw-1")))
    eip = ElasticIp("eipalloc-1", "red", EIP)
    if associated:
        eip = replace(eip, association="eipassoc-1", interface="eni-2", private_ip="10.0.1.5")
    return replace(
        s,
        route_tables=(main, *others),
        internet=EDGE if edge else None,
        internet_gateways=(InternetGateway("igw-1", "red", "vpc-1"),),
        elastic_ips=(eip,),
    )


def route(config: NodeConfig, vrf: int, prefix: str) -> RouteConfig | None:
    return next((r for r in config.routes if (r.vrf, r.prefix) == (vrf, prefix)), None)


def nexthop(config: NodeConfig, key: str) -> NextHopConfig:
    (found,) = [nh for nh in config.nexthops if nh.key == key]
    return found


def test_the_gateway_node_holds_the_internet_and_tunnels_the_eip_to_its_node() -> None:
    gw = compile_all(out_snapshot())["node1"]
    assert PUBLIC_VRF in {v.id for v in gw.vrfs}
    (port,) = [p for p in gw.ports if p.vif == INTERNET_VIF]
    assert (port.vrf, port.ip, port.gateway, port.netns) == (
        PUBLIC_VRF,
        EDGE.ip,
        EDGE.gateway,
        EDGE.netns,
    )
    default = route(gw, PUBLIC_VRF, "0.0.0.0/0")
    assert default is not None and nexthop(gw, default.nh).vif == INTERNET_VIF
    to_eip = route(gw, PUBLIC_VRF, f"{EIP}/32")
    assert to_eip is not None and to_eip.label == PUBLIC_VNI
    assert nexthop(gw, to_eip.nh).dst_ip == "172.16.2.11"  # node2, vm2's node


def test_the_eip_node_translates_both_ways() -> None:
    node2 = compile_all(out_snapshot())["node2"]
    tenant_vrf = 1  # rtb-main on node2
    inbound = route(node2, PUBLIC_VRF, f"{EIP}/32")
    assert inbound is not None
    nh = nexthop(node2, inbound.nh)
    assert (nh.kind, nh.nat_side, nh.nat, nh.nat_vrf) == (
        "nat",
        "dst",
        ((EIP, "10.0.1.5"),),
        tenant_vrf,
    )
    outbound = route(node2, tenant_vrf, "0.0.0.0/0")
    assert outbound is not None
    nh = nexthop(node2, outbound.nh)
    assert (nh.nat_side, nh.nat, nh.nat_vrf) == ("src", (("10.0.1.5", EIP),), PUBLIC_VRF)
    default = route(node2, PUBLIC_VRF, "0.0.0.0/0")
    assert default is not None and nexthop(node2, default.nh).dst_ip == "172.16.1.10"
    assert "nat src [10.0.1.5 > 198.51.100.7] then vrf 65535" in render(node2)


def test_without_the_route_the_address_is_not_mapped() -> None:
    configs = compile_all(out_snapshot(routed=False))
    assert route(configs["node1"], PUBLIC_VRF, f"{EIP}/32") is None
    assert PUBLIC_VRF not in {v.id for v in configs["node2"].vrfs}


def test_without_the_address_the_route_translates_nobody() -> None:
    configs = compile_all(out_snapshot(associated=False))
    node2 = configs["node2"]
    out = route(node2, 1, "0.0.0.0/0")
    assert out is not None and nexthop(node2, out.nh).nat == ()
    assert PUBLIC_VRF not in {v.id for v in node2.vrfs}
    assert route(configs["node1"], PUBLIC_VRF, f"{EIP}/32") is None


def test_without_a_gateway_node_a_route_to_the_gateway_discards() -> None:
    configs = compile_all(out_snapshot(edge=False))
    out = route(configs["node2"], 1, "0.0.0.0/0")
    assert out is not None and out.nh == "discard"
    assert all(PUBLIC_VRF not in {v.id for v in c.vrfs} for c in configs.values())


def test_a_detached_gateway_does_not_route() -> None:
    s = out_snapshot()
    s = replace(s, internet_gateways=(InternetGateway("igw-1", "red"),))
    configs = compile_all(s)
    out = route(configs["node2"], 1, "0.0.0.0/0")
    assert out is not None and out.nh == "discard"
    assert route(configs["node1"], PUBLIC_VRF, f"{EIP}/32") is None


def test_an_eip_on_the_gateway_node_translates_there() -> None:
    s = out_snapshot()
    (eip,) = s.elastic_ips
    s = replace(s, elastic_ips=(replace(eip, interface="eni-1", private_ip="10.0.1.4"),))
    gw = compile_all(s)["node1"]
    to_eip = route(gw, PUBLIC_VRF, f"{EIP}/32")
    assert to_eip is not None
    assert nexthop(gw, to_eip.nh).nat == ((EIP, "10.0.1.4"),)
