"""Table dumps: stable, fixed-width, and showing what the tables hold."""

import pytest
from vrouter_setup import AGENT_VIF, FABRIC_VIF, VM1, VM2, VM3, build_node, tcp_frame, udp_frame

from openvpc.model.forwarding import Encap, Mode
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.packet.l4 import TCP_ACK, TCP_SYN
from openvpc.vrouter import pipeline
from openvpc.vrouter.dump import (
    dump_all,
    dump_drops,
    dump_flows,
    dump_labels,
    dump_nexthops,
    dump_routes,
    dump_underlay,
    dump_vifs,
    dump_vlans,
    dump_vnis,
    flow_records,
)
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.nexthop import CompositeNH, L2ReceiveNH, ResolveNH
from openvpc.vrouter.tables import LabelEntry, Route, Tables, Vrf


def columns(table: str) -> list[int]:
    """Where each header word starts."""
    header = table.splitlines()[0]
    return [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]


def test_routes_golden() -> None:
    t = build_node(encap=Encap.MPLSOGRE)
    assert dump_routes(t, 1) == "\n".join(
        [
            "Vrf 1 (vpc-a) mode l3 gateway-mac 00:00:5e:00:01:00 link-local-gateway -",
            "Flags: L=label/VNI valid, P=proxy ARP with the stitched MAC",
            "inet:",
            "Destination     PPL  Flags Label    Nexthop  Stitched MAC",
            "10.0.1.1        32   -     -        2        -",
            "10.0.1.3        32   P     -        13       02:00:00:01:00:03",
            "10.0.1.4        32   P     -        14       02:00:00:01:00:04",
            "10.0.1.9        32   LP    18       22       02:00:00:01:00:09",
            "10.0.2.1        32   -     -        2        -",
            "10.0.2.9        32   LP    18       22       02:00:00:02:00:09",
            "bridge:",
            "DestMac           Flags Label/VNID Nexthop",
            "02:00:00:01:00:03 -     -          13",
            "02:00:00:01:00:04 -     -          14",
            "02:00:00:01:00:09 L     18         22",
            "02:00:00:02:00:09 L     18         22",
        ]
    )
    assert dump_routes(t, 42) == "Vrf 42: no such routing instance"


def test_labels_vnis_vlans_golden() -> None:
    t = build_node()
    t.add_vrf(Vrf(2, "vpc-l2", Mode.L2))
    t.add_label(19, LabelEntry(2, l2=True))
    t.add_vni(200, 2)
    t.add_vlan(7, 5)
    assert dump_labels(t) == (
        "Label    Vrf                      Payload\n"
        "17       1 (vpc-a)                l3\n"
        "19       2 (vpc-l2)               l2"
    )
    assert dump_vnis(t) == "VNID      Vrf\n100       1 (vpc-a)\n200       2 (vpc-l2)"
    assert dump_vlans(t) == "VLAN  Vrf\n7     5 (missing)\n100   1 (vpc-a)"


def test_nexthops() -> None:
    t = build_node()
    t.add_nexthop(35, CompositeNH(True, ((22, 100), (13, None))))
    t.add_nexthop(36, ResolveNH())
    t.add_nexthop(41, L2ReceiveNH())
    lines = dump_nexthops(t).splitlines()
    assert lines[0].split() == ["Id", "Type", "Details"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["0", "discard"],
        ["2", "receive"],
        ["13", "encap"],
        ["14", "encap"],
        ["22", "tunnel"],
        ["35", "composite"],
        ["36", "resolve"],
        ["41", "l2-receive"],
    ]
    assert "oif vif0/3 dmac 02:00:00:01:00:03 smac 00:00:5e:00:01:00" in lines[3]
    assert "encap vxlan sip 10.1.0.1 dip 10.1.0.2 oif vif0/0" in lines[5]
    assert "ecmp sub-nh(label) 22(100) 13(-)" in lines[6]


def test_vifs_show_kind_flags_and_counters() -> None:
    t = build_node(policy=True)
    t.vifs[VM2.vif].policy = False
    pipeline.process(t, udp_frame(VM2, VM1.ip), VM2.vif, 0.0)  # punted: vm1 has policy
    pipeline.process(t, udp_frame(VM2, ip_to_bytes("10.9.9.9")), VM2.vif, 0.0)
    text = dump_vifs(t)
    lines = text.splitlines()
    assert lines[0].startswith("Flags: P=policy")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == [f"vif0/{i}" for i in (FABRIC_VIF, AGENT_VIF, VM1.vif, VM2.vif)]
    assert rows["vif0/0"][1:3] == ["fabric", "physical"]
    assert rows["vif0/1"][1:3] == ["pkt0", "agent"]
    assert rows["vif0/3"][1:9] == [
        "tap-vm1",
        "virtual",
        "1",
        "02:00:00:01:00:03",
        "10.0.1.3/24",
        "10.0.1.1",
        "1500",
        "PAgSc",  # the agent decides its first packets
    ]
    assert rows["vif0/4"][8:] == ["Sc", "2/94", "0/0", "1"]  # two in, one dropped
    assert rows["vif0/1"][-3:] == ["0/0", "1/55", "0"]  # the punt
    starts = columns(text.split("\n", 1)[1])
    for line in lines[2:]:  # every column starts where its header does
        assert all(line[s - 1] == " " and line[s] != " " for s in starts[1:]), line


def test_flows() -> None:
    t = build_node(policy=True)
    key = (1, 6, VM1.ip, VM2.ip, 33000, 80)
    reverse = (1, 6, VM2.ip, VM1.ip, 80, 33000)
    pipeline.install_flow(t, key, FlowAction.FORWARD, 0.0, reverse=reverse)
    pipeline.process(t, tcp_frame(VM1, VM2.ip, 33000, 80, TCP_SYN), VM1.vif, 0.0)
    pipeline.process(t, tcp_frame(VM1, VM2.ip, 33000, 80, TCP_ACK, b"data"), VM1.vif, 0.0)
    nat = (VM1.ip, VM3.ip, 40001, 53)
    pipeline.install_flow(t, (1, 17, VM1.ip, VM2.ip, 40000, 53), FlowAction.NAT, 0.0, nat=nat)
    pipeline.process(t, udp_frame(VM1, VM2.ip, sport=5, dport=6), VM1.vif, 0.0)  # held
    decided = t.flows.lookup(key)
    assert decided is not None
    decided.by = "sg-1/sgr-2"
    lines = dump_flows(t).splitlines()
    assert lines[0] == "Flow table (capacity 65536, entries 4, created 4, deleted 0)"
    assert lines[1].split()[:3] == ["Vrf", "Proto", "Source:Port"]
    body = [line.split() for line in lines[2:]]
    assert [row[2] for row in body] == [
        "10.0.1.3:33000",
        "10.0.1.4:80",
        "10.0.1.3:5",
        "10.0.1.3:40000",
    ]
    fwd, back, hold, natted = body
    assert fwd[1:] == [
        "tcp", "10.0.1.3:33000", "->", "10.0.1.4:80", "forward",
        "10.0.1.4:80", "->", "10.0.1.3:33000", "2/84", "SA", "-", "sg-1/sgr-2",
    ]  # fmt: skip
    assert back[5:] == ["forward", "10.0.1.3:33000", "->", "10.0.1.4:80", "0/0", "-", "-", "-"]
    assert hold[5:] == ["hold(1)", "-", "0/0", "-", "-", "-"]
    assert natted[5:] == [
        "nat", "-", "0/0", "-", "N(D,Ps)", "10.0.1.3:40001", "->", "10.0.2.9:53", "-",
    ]  # fmt: skip

    records = flow_records(t, now=2.5, limit=2)
    assert (records["entries"], records["matched"]) == (4, 4)
    first, second = records["flows"]
    assert first == {
        "vrf": 1, "vrf_name": t.vrfs[1].name, "proto": "tcp", "src": "10.0.1.3", "sport": 33000,
        "dst": "10.0.1.4", "dport": 80, "action": "forward", "by": "sg-1/sgr-2", "reverse": True,
        "nat": None, "packets": 2, "bytes": 84, "tcp_flags": "SA", "idle": 2.5,
    }  # fmt: skip
    assert (second["src"], second["sport"], second["by"]) == ("10.0.1.4", 80, "")
    assert flow_records(t, 0.0, vrf=2)["flows"] == []
    with pytest.raises(ValueError, match="limit"):
        flow_records(t, 0.0, limit=0)


def test_drops_sorted_non_zero_with_total() -> None:
    t = build_node()
    for dst in ("10.9.9.9", "10.9.9.8", "255.255.255.255"):
        pipeline.process(t, udp_frame(VM1, ip_to_bytes(dst)), VM1.vif, 0.0)
    pipeline.process(t, b"\x00" * 3, VM1.vif, 0.0)
    t.drops["zero"] = 0
    assert dump_drops(t) == (
        "Reason                       Count\n"
        "l3_multicast_or_broadcast    1\n"
        "no_route                     2\n"
        "short_ethernet               1\n"
        "total                        4"
    )


def test_underlay() -> None:
    t = build_node(neighbor=False)
    pipeline.process(t, udp_frame(VM1, VM3.ip), VM1.vif, 0.0)
    assert dump_underlay(t) == (
        "Fabric vif0/0 10.1.0.1 02:00:0a:01:00:01 mtu 1500\n"
        "Destination     PPL  Gateway\n"
        "10.1.0.0        24   direct\n"
        "Neighbor        MAC               Pending\n"
        "10.1.0.2        -                 1"
    )


def reprogram_reversed(t: Tables) -> Tables:
    """The same tables, every entry written in the opposite order."""
    r = Tables(t.fabric)
    for vif in reversed(list(t.vifs.values())):
        r.add_vif(vif)
    for vrf in reversed(list(t.vrfs.values())):
        r.add_vrf(Vrf(vrf.id, vrf.name, vrf.mode, vrf.gateway_mac, vrf.arp_mode))
        for net, plen, route in reversed(list(vrf.ip_fib.items())):
            r.add_route(vrf.id, net, plen, route)
        for mac, route in reversed(list(vrf.mac_fib.items())):
            r.add_mac_route(vrf.id, mac, route)
    for nh_id, nh in reversed(list(t.nexthops.items())):
        if nh_id:
            r.add_nexthop(nh_id, nh)
    for label, entry in reversed(list(t.labels.items())):
        r.add_label(label, entry)
    for vni, vrf_id in reversed(list(t.vnis.items())):
        r.add_vni(vni, vrf_id)
    for vlan, vrf_id in reversed(list(t.vlans.items())):
        r.add_vlan(vlan, vrf_id)
    for net, plen, gw in t.underlay.items():
        r.add_underlay_route(net, plen, gw or None)
    for ip, mac in reversed(list(t.neighbors.items())):
        r.add_neighbor(ip, mac)
    return r


def test_dumps_do_not_depend_on_programming_order() -> None:
    t = build_node()
    t.add_route(1, ip_to_bytes("10.0.0.0"), 16, Route(0))
    t.add_route(1, ip_to_bytes("0.0.0.0"), 0, Route(0))
    assert dump_all(reprogram_reversed(t)) == dump_all(t)
    assert dump_all(t) == dump_all(t)
    assert "\n\nVrf 1 (vpc-a)" in dump_all(t)
