"""Programming a vRouter from control-channel objects, checked by forwarding frames through it."""

import dataclasses

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from openvpc.model.codec import to_dict
from openvpc.model.forwarding import LINK_LOCAL_GATEWAY, VROUTER_MAC, Mode
from openvpc.model.nodeconfig import (
    MacRouteConfig,
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    decode_object,
    object_key,
    object_kind,
)
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.nexthop import CompositeNH, EncapNH, TunnelNH
from openvpc.vrouter.pipeline import process, process_overlay
from openvpc.vrouter.program import Programmer, build_tables
from openvpc.vrouter.tables import Fabric, LabelEntry

FABRIC = Fabric(0, ip_to_bytes("192.168.0.10"), bytes.fromhex("02fa00000001"))
VRF = VrfConfig(1, "red/prod/main", "l3", "mplsogre", 5001, 101, 17, 18)
MAC_A, MAC_B, MAC_R = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def port(vif: int, ip: str, mac: str, **changes: object) -> PortConfig:
    p = PortConfig(
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=f"ns-vm{vif}",
        ifname="eth0",
        vrf=1,
        mac=mac,
        ip=ip,
        prefix_len=24,
        gateway="10.0.1.1",
        dns="10.0.0.2",
        domain="ec2.internal",
        hostname=f"ip-10-0-1-{vif}",
        mtu=1400,
        policy=False,
    )
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


OBJECTS: list[VrouterObject] = [
    VRF,
    NextHopConfig("receive", "receive"),
    NextHopConfig("encap:2", "encap", vif=2, dst_mac=MAC_A),
    NextHopConfig("encap:3", "encap", vif=3, dst_mac=MAC_B),
    NextHopConfig("tunnel:node2", "tunnel", encap="mplsogre", dst_ip="192.168.0.11"),
    NextHopConfig("flood:1", "composite", members=(("encap:2", None), ("encap:3", None))),
    port(2, "10.0.1.5", MAC_A),
    port(3, "10.0.1.6", MAC_B),
    RouteConfig(1, "10.0.1.1/32", "receive"),
    RouteConfig(1, "10.0.1.5/32", "encap:2", mac=MAC_A),
    RouteConfig(1, "10.0.1.6/32", "encap:3", mac=MAC_B),
    RouteConfig(1, "10.0.1.7/32", "tunnel:node2", label=27, mac=MAC_R),
    MacRouteConfig(1, "ff:ff:ff:ff:ff:ff", "flood:1"),
]


def ping(src_mac: str, src: str, dst: str, ident: int = 7) -> bytes:
    pkt = Ether(src=src_mac, dst="00:00:5e:00:01:00") / IP(src=src, dst=dst) / ICMP(id=ident)
    return bytes(pkt / b"payload!")


@pytest.fixture
def prog() -> Programmer:
    return build_tables(FABRIC, OBJECTS)


def test_built_tables_forward_between_local_vms(prog: Programmer) -> None:
    out = process(prog.tables, ping(MAC_A, "10.0.1.5", "10.0.1.6"), 2, 0.0)
    assert [vif for vif, _ in out] == [3]
    frame = Ether(out[0][1])
    assert frame.dst == MAC_B and frame[IP].dst == "10.0.1.6" and frame[ICMP].id == 7


def test_built_tables_encapsulate_to_the_remote_label(prog: Programmer) -> None:
    prog.tables.add_underlay_route(ip_to_bytes("192.168.0.0"), 24, None)
    prog.tables.add_neighbor(ip_to_bytes("192.168.0.11"), bytes.fromhex("02fa00000002"))
    out = process(prog.tables, ping(MAC_A, "10.0.1.5", "10.0.1.7"), 2, 0.0)
    assert [vif for vif, _ in out] == [0]
    # GRE (4 bytes) then the label the route carries
    label = int.from_bytes(out[0][1][14 + 20 + 4 : 14 + 20 + 7], "big") >> 4
    assert label == 27


def test_vrf_maps_labels_vni_vlan_and_modes(prog: Programmer) -> None:
    t = prog.tables
    assert t.labels[17] == LabelEntry(1) and t.labels[18] == LabelEntry(1, l2=True)
    assert t.vnis[5001] == 1 and t.vlans[101] == 1
    vrf = t.vrfs[1]
    assert vrf.mode is Mode.L3 and vrf.name == "red/prod/main" and vrf.link_local_gateway is None
    assert t.vifs[1].kind == "agent"


def test_next_hop_keys_resolve_to_ids(prog: Programmer) -> None:
    t = prog.tables
    ids = prog.nh_ids
    assert len(set(ids.values())) == len(ids) and 0 not in ids.values()
    assert t.nexthops[ids["encap:2"]] == EncapNH(2, bytes.fromhex("02000000000a"), VROUTER_MAC)
    assert t.nexthops[ids["flood:1"]] == CompositeNH(
        False, ((ids["encap:2"], None), (ids["encap:3"], None))
    )
    route = t.vrfs[1].ip_fib.exact(ip_to_bytes("10.0.1.7"), 32)
    assert route is not None and route.nh == ids["tunnel:node2"] and route.label == 27


def test_setting_a_next_hop_again_keeps_its_id_and_moves_its_routes(prog: Programmer) -> None:
    before = prog.nh_ids["tunnel:node2"]
    moved = NextHopConfig("tunnel:node2", "tunnel", encap="mplsoudp", dst_ip="192.168.0.12")
    prog.set("nh", moved)
    assert prog.nh_ids["tunnel:node2"] == before
    assert prog.tables.nexthops[before] == TunnelNH(
        "mplsoudp",  # type: ignore[arg-type]
        ip_to_bytes("192.168.0.12"),
    )
    assert prog.get("nh", "tunnel:node2") == moved


def test_updating_a_vrf_keeps_its_fibs_and_moves_its_mappings(prog: Programmer) -> None:
    t = prog.tables
    vrf_obj = t.vrfs[1]
    changed = dataclasses.replace(
        VRF, mode="l2_l3", vni=6001, vlan=202, l3_label=40, link_local_gateway=True
    )
    prog.set("vrf", changed)
    assert t.vrfs[1] is vrf_obj
    assert vrf_obj.mode is Mode.L2_L3 and vrf_obj.link_local_gateway == LINK_LOCAL_GATEWAY
    assert 17 not in t.labels and t.labels[40] == LabelEntry(1) and 18 in t.labels
    assert 5001 not in t.vnis and t.vnis[6001] == 1
    assert 101 not in t.vlans and t.vlans[202] == 1
    # the routes stayed: VMs still reach each other
    out = process(t, ping(MAC_A, "10.0.1.5", "10.0.1.6"), 2, 0.0)
    assert [vif for vif, _ in out] == [3]
    prog.set("vrf", dataclasses.replace(changed, vlan=None))
    assert not t.vlans


def test_deleting_a_vrf_removes_its_mappings_and_routes(prog: Programmer) -> None:
    t = prog.tables
    assert prog.delete("vrf", "1")
    assert 1 not in t.vrfs and not t.labels and not t.vnis and not t.vlans
    kinds = {object_kind(o) for o in prog.dump()}
    assert kinds == {"nh", "vif"}
    # the vifs stay, their traffic is dropped with a reason
    assert process(t, ping(MAC_A, "10.0.1.5", "10.0.1.6"), 2, 0.0) == []
    assert t.drops[Drop.INVALID_VRF] == 1


def test_dump_returns_exactly_what_was_set(prog: Programmer) -> None:
    assert prog.dump() == OBJECTS
    assert prog.delete("route", "1/10.0.1.7/32")
    assert not prog.delete("route", "1/10.0.1.7/32")
    assert prog.dump() == [o for o in OBJECTS if object_key(o) != "1/10.0.1.7/32"]
    assert prog.tables.vrfs[1].ip_fib.exact(ip_to_bytes("10.0.1.7"), 32) is None


def test_deleting_a_port_and_mac_route(prog: Programmer) -> None:
    assert prog.delete("vif", "3")
    assert 3 not in prog.tables.vifs
    assert prog.delete("mac_route", "1/ff:ff:ff:ff:ff:ff")
    assert not prog.tables.vrfs[1].mac_fib


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (RouteConfig(9, "10.0.2.0/24", "receive"), "unknown vrf 9"),
        (RouteConfig(1, "10.0.2.0/24", "nope"), "unknown next hop 'nope'"),
        (RouteConfig(1, "10.0.2.1/24", "receive"), "not an IPv4 prefix"),
        (MacRouteConfig(1, "02:00", "receive"), "not a MAC address"),
        (MacRouteConfig(4, MAC_A, "receive"), "unknown vrf 4"),
        (port(4, "10.0.1.9", MAC_R, vrf=5), "unknown vrf 5"),
        (port(1, "10.0.1.9", MAC_R), "VM vifs start at 2"),
        (port(4, "10.0.1.300", MAC_R), "not an IPv4 address"),
        (NextHopConfig("x", "composite", members=(("nope", None),)), "unknown next hop 'nope'"),
        (NextHopConfig("x", "tunnel", encap="vxlan"), "tunnel needs encap and dst_ip"),
        (NextHopConfig("x", "encap", vif=3), "encap needs vif and dst_mac"),
        (dataclasses.replace(VRF, id=2), "label 17 belongs to vrf 1"),
        (dataclasses.replace(VRF, id=2, l3_label=50, l2_label=51), "VNI 5001 belongs to vrf 1"),
        (dataclasses.replace(VRF, id=2, l3_label=50, l2_label=51, vni=9, vlan=0), "VLAN id"),
    ],
)
def test_bad_references_are_refused_and_change_nothing(
    prog: Programmer, obj: VrouterObject, message: str
) -> None:
    t = prog.tables
    before = (dict(t.nexthops), dict(t.labels), dict(t.vnis), dict(t.vlans), set(t.vifs))
    with pytest.raises(ValueError, match=message):
        prog.set(object_kind(obj), obj)
    assert prog.dump() == OBJECTS
    assert before == (dict(t.nexthops), dict(t.labels), dict(t.vnis), dict(t.vlans), set(t.vifs))


def test_kind_must_match_the_object(prog: Programmer) -> None:
    with pytest.raises(ValueError, match="not a route"):
        prog.set("route", VRF)
    with pytest.raises(ValueError, match="unknown object kind"):
        prog.delete("bogus", "1")  # type: ignore[arg-type]


def test_decode_object_round_trips_and_refuses_bad_shapes() -> None:
    for obj in OBJECTS:
        assert decode_object(object_kind(obj), to_dict(obj)) == obj
    with pytest.raises(ValueError, match="unknown object kind"):
        decode_object("table", {})
    with pytest.raises(ValueError, match="missing field"):
        decode_object("route", {"vrf": 1})
    with pytest.raises(ValueError):
        decode_object("vrf", {**to_dict(VRF), "mode": "l7"})


def test_port_update_keeps_counters_and_applies_changes(prog: Programmer) -> None:
    t = prog.tables
    process(t, ping(MAC_A, "10.0.1.5", "10.0.1.6"), 2, 0.0)
    assert t.vifs[2].stats.rx_packets == 1
    prog.set("vif", port(2, "10.0.1.5", MAC_A, allowed_ips=("10.0.1.50/32", "10.0.1.51")))
    assert t.vifs[2].stats.rx_packets == 1
    assert t.vifs[2].allowed_ips == {ip_to_bytes("10.0.1.50"), ip_to_bytes("10.0.1.51")}
    out = process(t, ping(MAC_A, "10.0.1.50", "10.0.1.6"), 2, 0.0)
    assert [vif for vif, _ in out] == [3]


def test_vxlan_vrf_receives_through_process_overlay() -> None:
    objs = [dataclasses.replace(VRF, encap="vxlan"), *OBJECTS[1:]]
    t = build_tables(FABRIC, objs).tables
    inner = ping("00:00:5e:00:01:00", "10.0.2.9", "10.0.1.6")
    vxlan = bytes.fromhex("0800000000138900")  # VNI 5001
    out = process_overlay(t, "vxlan", vxlan + inner, 0.0)
    assert [vif for vif, _ in out] == [3]
    assert t.vifs[0].stats.rx_packets == 1
