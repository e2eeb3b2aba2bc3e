"""The map writer: small tables encoded to exact map contents (every next-hop kind, ECMP,
replication going up, labels/VNIs/VLANs, allowed IPs, a vif not attached), flows, and diffs."""

import dataclasses
import sys

import pytest

from openvpc.model.forwarding import VROUTER_MAC
from openvpc.model.nodeconfig import (
    MacRouteConfig,
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
)
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.encode import (
    TABLE_MAPS,
    Device,
    diff_images,
    encode_flow,
    encode_flow_key,
    encode_tables,
)
from openvpc.vrouter.flow import Flow, FlowAction
from openvpc.vrouter.limits import NodeLimits
from openvpc.vrouter.program import Programmer, build_tables
from openvpc.vrouter.tables import Fabric

FABRIC = Fabric(0, ip_to_bytes("192.168.0.10"), bytes.fromhex("02fa00000001"), mtu=9000)
MAC_A, MAC_B, MAC_R = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
RED = VrfConfig(1, "red", "l3", "mplsogre", 5001, 101, 17, 18, decrement_ttl=True)
BLUE = VrfConfig(2, "blue", "l2", "vxlan", 5002, None, 19, 20, arp_mode="single_mac")
GREEN = VrfConfig(3, "green", "l2_l3", "vlan", 5003, 300, 21, 22, link_local_gateway=True)
FABRIC_IFINDEX, PKT0_IFINDEX = 2, 9
DEVICES = {2: Device(11, peer=True), 3: Device(12, peer=False)}  # vif 4 is not attached


def ip(text: str) -> bytes:
    return ip_to_bytes(text)


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def port(vif: int, addr: str, mac_: str, **changes: object) -> PortConfig:
    p = PortConfig(
        vif=vif,
        interface_id=f"eni-{vif}",
        instance_id=f"i-{vif}",
        name=f"vm{vif}",
        netns=f"ns-vm{vif}",
        ifname="eth0",
        vrf=1,
        mac=mac_,
        ip=addr,
        prefix_len=24,
        gateway="10.0.1.1",
        dns="10.0.0.2",
        domain="ec2.internal",
        hostname=f"ip-{vif}",
        mtu=1400,
        policy=False,
    )
    return dataclasses.replace(p, **changes)  # type: ignore[arg-type]


OBJECTS: list[VrouterObject] = [
    RED,
    BLUE,
    GREEN,
    NextHopConfig("receive", "receive"),
    NextHopConfig("l2receive", "l2receive"),
    NextHopConfig("discard", "discard"),
    NextHopConfig("resolve", "resolve"),
    NextHopConfig("encap:2", "encap", vif=2, dst_mac=MAC_A),
    NextHopConfig("encap:3", "encap", vif=3, dst_mac=MAC_B),
    NextHopConfig("t:gre", "tunnel", encap="mplsogre", dst_ip="192.168.0.11"),
    NextHopConfig("t:udp", "tunnel", encap="mplsoudp", dst_ip="192.168.0.12"),
    NextHopConfig("t:vx", "tunnel", encap="vxlan", dst_ip="192.168.0.13"),
    NextHopConfig("t:vlan", "tunnel", encap="vlan", dst_ip="192.168.0.14"),
    NextHopConfig(
        "ecmp", "composite", ecmp=True, members=(("t:gre", 40), ("t:udp", 41), ("encap:3", None))
    ),
    NextHopConfig("ecmp:nolabel", "composite", ecmp=True, members=(("t:gre", None),)),
    NextHopConfig(
        "ecmp:big", "composite", ecmp=True, members=tuple(("encap:2", i) for i in range(17))
    ),
    NextHopConfig("ecmp:empty", "composite", ecmp=True),
    NextHopConfig("flood", "composite", members=(("encap:2", None), ("t:vx", 5002))),
    port(2, "10.0.1.5", MAC_A, policy=True, allowed_ips=("10.0.1.100", "10.0.1.101")),
    port(3, "10.0.1.6", MAC_B, source_check=False),
    port(4, "10.0.1.7", MAC_R, vrf=2, policy=True, agent_decides=False),
    RouteConfig(1, "10.0.1.1/32", "receive"),
    RouteConfig(1, "10.0.1.5/32", "encap:2", mac=MAC_A),
    RouteConfig(1, "10.0.2.0/24", "t:gre", label=27),
    RouteConfig(1, "0.0.0.0/0", "ecmp", label=28),
    RouteConfig(3, "10.3.0.0/16", "discard"),
    MacRouteConfig(2, "ff:ff:ff:ff:ff:ff", "flood"),
    MacRouteConfig(2, "00:00:5e:00:01:00", "l2receive"),
    MacRouteConfig(2, MAC_B, "t:vx", label=5002),
]


@pytest.fixture
def prog() -> Programmer:
    return build_tables(FABRIC, OBJECTS, limits=NodeLimits(vif_punt_rate=250.5, vif_punt_burst=7))


def image_of(prog: Programmer) -> dict[str, dict[bytes, bytes]]:
    return encode_tables(prog.tables, DEVICES, PKT0_IFINDEX, FABRIC_IFINDEX)


def nh(prog: Programmer, image: dict[str, dict[bytes, bytes]], key: str) -> L.Nexthop:
    return L.Nexthop.unpack(image[L.MAP_NEXTHOPS][L.u32(prog.nh_ids[key])])


def test_every_table_map_is_in_the_image(prog: Programmer) -> None:
    image = image_of(prog)
    assert set(image) == set(TABLE_MAPS)
    assert L.MAP_FLOWS not in image and L.MAP_DROPS not in image


def test_vifs_attached_and_not(prog: Programmer) -> None:
    image = image_of(prog)
    vifs = {int.from_bytes(k, sys.byteorder): L.Vif.unpack(v) for k, v in image[L.MAP_VIFS].items()}
    assert sorted(vifs) == [0, 2, 3, 4]  # the agent vif (1) has no slot
    assert vifs[2] == L.Vif(
        ifindex=11,
        vrf=1,
        ip=ip("10.0.1.5"),
        gateway_ip=ip("10.0.1.1"),
        mtu=1400,
        prefix_len=24,
        kind=L.VifKind.VM,
        flags=L.VIF_POLICY | L.VIF_AGENT | L.VIF_SOURCE_CHECK | L.VIF_PEER,
        mac=mac(MAC_A),
        has_ip=1,
    )
    assert vifs[3].flags == 0 and vifs[3].ifindex == 12  # no policy, no source check, a TAP
    assert vifs[4].ifindex == 0 and vifs[4].vrf == 2  # not attached: deliveries go up
    assert vifs[4].flags == L.VIF_POLICY | L.VIF_SOURCE_CHECK  # the vRouter decides its flows
    fabric = vifs[0]
    assert (fabric.kind, fabric.ifindex, fabric.ip, fabric.mac, fabric.mtu) == (
        L.VifKind.FABRIC,
        FABRIC_IFINDEX,
        FABRIC.ip,
        FABRIC.mac,
        9000,
    )
    assert image[L.MAP_IFINDEX] == {
        L.u32(11): L.u32(2),
        L.u32(12): L.u32(3),
        L.u32(FABRIC_IFINDEX): L.u32(0),
    }
    assert image[L.MAP_ALLOWED_IPS] == {
        L.allowed_ip_key(2, ip("10.0.1.100")): b"\x01",
        L.allowed_ip_key(2, ip("10.0.1.101")): b"\x01",
    }


def test_vrfs_labels_vnis_vlans(prog: Programmer) -> None:
    image = image_of(prog)
    vrfs = {k: L.Vrf.unpack(v) for k, v in image[L.MAP_VRFS].items()}
    assert vrfs[L.u32(1)] == L.Vrf(
        L.VrfMode.L3,
        L.ArpMode.PROXY,
        L.VRF_DECREMENT_TTL | L.VRF_UNICAST_ONLY,
        VROUTER_MAC,
        L.ZERO4,
    )
    assert vrfs[L.u32(2)].mode == L.VrfMode.L2
    assert vrfs[L.u32(2)].arp_mode == L.ArpMode.SINGLE_MAC
    assert vrfs[L.u32(3)].mode == L.VrfMode.L2_L3
    assert vrfs[L.u32(3)].link_local_gateway == ip("169.254.0.1")
    labels = {
        int.from_bytes(k, sys.byteorder): L.Label.unpack(v) for k, v in image[L.MAP_LABELS].items()
    }
    assert labels == {
        17: (1, 0),
        18: (1, 1),
        19: (2, 0),
        20: (2, 1),
        21: (3, 0),
        22: (3, 1),
    }
    assert image[L.MAP_VNIS] == {L.u32(5001 + i): L.u32(1 + i) for i in range(3)}
    assert image[L.MAP_VLANS] == {L.u32(101): L.u32(1), L.u32(300): L.u32(3)}


def test_routes(prog: Programmer) -> None:
    image = image_of(prog)
    fib = image[L.MAP_IP_FIB]
    assert len(fib) == 5
    host = L.Route.unpack(fib[L.fib_key(1, ip("10.0.1.5"), 32)])
    assert host == L.Route(prog.nh_ids["encap:2"], L.NO_LABEL, mac(MAC_A), 1)
    net = L.Route.unpack(fib[L.fib_key(1, ip("10.0.2.0"), 24)])
    assert net == L.Route(prog.nh_ids["t:gre"], 27, L.ZERO6, 0)
    assert L.fib_key(1, ip("0.0.0.0"), 0) in fib
    assert L.fib_key(1, ip("0.0.0.0"), 0)[:4] == (32).to_bytes(4, sys.byteorder)
    macs = image[L.MAP_MAC_FIB]
    assert L.Route.unpack(macs[L.mac_key(2, mac(MAC_B))]) == L.Route(
        prog.nh_ids["t:vx"], 5002, L.ZERO6, 0
    )
    assert len(macs) == 3


def test_every_nexthop_kind(prog: Programmer) -> None:
    image = image_of(prog)
    assert L.Nexthop.unpack(image[L.MAP_NEXTHOPS][L.u32(0)]).kind == L.NhKind.DISCARD
    assert nh(prog, image, "discard").kind == L.NhKind.DISCARD
    assert nh(prog, image, "receive").kind == L.NhKind.RECEIVE
    assert nh(prog, image, "l2receive").kind == L.NhKind.L2RECEIVE
    assert nh(prog, image, "resolve").kind == L.NhKind.RESOLVE
    assert nh(prog, image, "encap:2") == L.Nexthop(
        L.NhKind.ENCAP, vif=2, dst_mac=mac(MAC_A), src_mac=VROUTER_MAC
    )
    for key, encap, dst in (
        ("t:gre", L.EncapKind.MPLSOGRE, "192.168.0.11"),
        ("t:udp", L.EncapKind.MPLSOUDP, "192.168.0.12"),
        ("t:vx", L.EncapKind.VXLAN, "192.168.0.13"),
        ("t:vlan", L.EncapKind.VLAN, "192.168.0.14"),
    ):
        assert nh(prog, image, key) == L.Nexthop(L.NhKind.TUNNEL, encap=encap, dst_ip=ip(dst))


def test_ecmp_and_what_goes_up(prog: Programmer) -> None:
    image = image_of(prog)
    ids = prog.nh_ids
    assert nh(prog, image, "ecmp") == L.Nexthop(
        L.NhKind.ECMP,
        members=((ids["t:gre"], 40), (ids["t:udp"], 41), (ids["encap:3"], L.NO_LABEL)),
    )
    # replication, too many members, no member, a tunnel member without its own label
    for key in ("flood", "ecmp:big", "ecmp:empty", "ecmp:nolabel"):
        assert nh(prog, image, key).kind == L.NhKind.SLOW, key


def test_node(prog: Programmer) -> None:
    node = L.Node.unpack(image_of(prog)[L.MAP_NODE][L.u32(0)])
    assert node == L.Node(250_500, 7, FABRIC_IFINDEX, FABRIC.ip, PKT0_IFINDEX, FABRIC.mac, 9000, 1)
    without_agent = build_tables(FABRIC, OBJECTS, agent_vif=False)
    raw = encode_tables(without_agent.tables, DEVICES, 0, FABRIC_IFINDEX)[L.MAP_NODE][L.u32(0)]
    assert L.Node.unpack(raw).agent == 0 and L.Node.unpack(raw).pkt0_ifindex == 0


def test_vif_beyond_the_array_is_refused(prog: Programmer) -> None:
    prog.set("vif", port(L.MAX_VIFS, "10.0.1.9", "02:00:00:00:00:99"))
    with pytest.raises(ValueError, match="4096"):
        image_of(prog)


def test_flows() -> None:
    key = (1, 6, ip("10.0.1.5"), ip("10.0.2.9"), 40000, 443)
    flow = Flow(key, FlowAction.FORWARD, 1.0, 2.5)
    k, v = encode_flow(flow) or (b"", b"")
    assert L.FlowKey.unpack(k) == L.FlowKey(
        1, ip("10.0.1.5"), ip("10.0.2.9"), b"\x9c\x40", b"\x01\xbb", 6
    )
    assert L.Flow.unpack(v) == L.Flow(
        0, 0, 2_500_000_000, L.ZERO4, L.ZERO4, 0, 0, L.FlowActionKind.FORWARD, 0
    )
    nat = (ip("172.16.0.1"), ip("10.0.2.9"), 1024, 443)
    k, v = encode_flow(Flow(key, FlowAction.NAT, 1.0, 1.0, nat=nat)) or (b"", b"")
    assert L.Flow.unpack(v)[3:8] == (ip("172.16.0.1"), ip("10.0.2.9"), 1024, 443, 3)
    dropped = encode_flow(Flow(key, FlowAction.DROP, 0, 0))
    assert dropped is not None and L.Flow.unpack(dropped[1]).action == L.FlowActionKind.DROP
    assert encode_flow(Flow(key, FlowAction.HOLD, 1.0, 1.0)) is None


def test_icmp_flow_keys() -> None:
    echo = L.FlowKey.unpack(encode_flow_key((1, 1, ip("10.0.0.1"), ip("10.0.0.2"), 0x1234, 0x1234)))
    assert (echo.sport, echo.dport) == (b"\x12\x34", b"\x12\x34")  # the id as on the wire
    err = L.FlowKey.unpack(encode_flow_key((1, 1, ip("10.0.0.1"), ip("10.0.0.2"), 3, 1)))
    assert (err.sport, err.dport) == (L.U16_HOST.pack(3), L.U16_HOST.pack(1))  # type, code


def test_diff_images(prog: Programmer) -> None:
    old = image_of(prog)
    assert diff_images(old, old) == {}
    prog.delete("route", "1/10.0.2.0/24")
    prog.delete("vif", "4")
    prog.set("route", RouteConfig(1, "10.0.1.5/32", "encap:2", mac=MAC_B))
    new = image_of(prog)
    diff = diff_images(old, new)
    assert set(diff) == {L.MAP_IP_FIB, L.MAP_VIFS}
    fib = diff[L.MAP_IP_FIB]
    assert fib.delete == [L.fib_key(1, ip("10.0.2.0"), 24)]
    assert list(fib.update) == [L.fib_key(1, ip("10.0.1.5"), 32)]
    # an ARRAY slot is zeroed, not deleted: VIF_NONE
    assert diff[L.MAP_VIFS].delete == []
    assert diff[L.MAP_VIFS].update == {L.u32(4): bytes(L.VIF.struct.size)}
    assert diff_images({}, new)[L.MAP_VRFS].update == new[L.MAP_VRFS]
