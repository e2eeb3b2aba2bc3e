"""The control-channel request handler, driven with JSON-shaped requests (no process, no TAPs)."""

import dataclasses
from typing import Any

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from openvpc.model.codec import to_dict
from openvpc.model.nodeconfig import (
    NextHopConfig,
    PortConfig,
    RouteConfig,
    VrfConfig,
    VrouterObject,
    object_kind,
)
from openvpc.packet.ipv4 import ip_to_bytes
from openvpc.vrouter.handler import ControlHandler
from openvpc.vrouter.pipeline import process
from openvpc.vrouter.program import build_tables
from openvpc.vrouter.punt import Punt, parse_punt
from openvpc.vrouter.tables import Fabric

FABRIC = Fabric(0, ip_to_bytes("192.168.0.10"), bytes.fromhex("02fa00000001"))
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def port(vif: int, ip: str, mac: str) -> PortConfig:
    return PortConfig(
        vif, f"eni-{vif}", f"i-{vif}", f"vm{vif}", "ns", "eth0", 1, mac, ip, 24,
        "10.0.1.1", "10.0.0.2", "ec2.internal", "h", 1400,
    )  # fmt: skip


OBJECTS: list[VrouterObject] = [
    VrfConfig(1, "red", "l3", "vxlan", 5001, None, 17, 18),
    NextHopConfig("encap:2", "encap", vif=2, dst_mac=MAC_A),
    NextHopConfig("encap:3", "encap", vif=3, dst_mac=MAC_B),
    port(2, "10.0.1.5", MAC_A),
    port(3, "10.0.1.6", MAC_B),
    RouteConfig(1, "10.0.1.5/32", "encap:2", mac=MAC_A),
    RouteConfig(1, "10.0.1.6/32", "encap:3", mac=MAC_B),
]


def set_ops(objects: list[VrouterObject]) -> list[dict[str, Any]]:
    return [{"op": "set", "kind": object_kind(o), "obj": to_dict(o)} for o in objects]


def new_handler() -> ControlHandler:
    return ControlHandler(build_tables(FABRIC, []), "boot-1")


def ask(h: ControlHandler, op: str, **fields: Any) -> dict[str, Any]:
    reply, emits = h.handle({"id": 4, "op": op, **fields}, 0.0)
    assert reply["id"] == 4 and not emits
    return reply


def test_hello_batch_dump_round_trip() -> None:
    h = new_handler()
    assert ask(h, "hello")["result"] == {
        "boot_id": "boot-1",
        "generation": None,
        "datapath": "python",
    }
    assert ask(h, "batch", ops=set_ops(OBJECTS), generation=3)["result"] == {"applied": 7}
    assert ask(h, "hello")["result"]["generation"] == 3
    dump = ask(h, "dump")["result"]
    objects = [{"kind": object_kind(o), "obj": to_dict(o)} for o in OBJECTS]
    assert dump == {"generation": 3, "objects": objects}
    delete = {"op": "delete", "kind": "route", "key": "1/10.0.1.6/32"}
    assert ask(h, "batch", ops=[delete], generation=4)["ok"]
    assert len(ask(h, "dump")["result"]["objects"]) == 6
    assert "10.0.1.5" in ask(h, "show")["result"]["text"]


def test_a_refused_op_stops_the_batch_and_keeps_the_generation() -> None:
    h = new_handler()
    ask(h, "batch", ops=set_ops(OBJECTS[:1]), generation=1)
    ops = set_ops([OBJECTS[1], RouteConfig(1, "10.0.2.0/24", "nope"), OBJECTS[2]])
    reply = ask(h, "batch", ops=ops, generation=2)
    assert not reply["ok"]
    assert reply["error"].startswith("op 1 (set route '1/10.0.2.0/24'): ")
    assert "unknown next hop 'nope'" in reply["error"] and reply["error"].endswith("1 applied")
    assert ask(h, "hello")["result"]["generation"] == 1
    keys = [o["obj"].get("key") for o in ask(h, "dump")["result"]["objects"]]
    assert keys == [None, "encap:2"]  # the VRF (no "key" field) and the first next hop


def test_malformed_requests_get_error_replies() -> None:
    h = new_handler()
    cases: list[tuple[Any, str]] = [
        ({"id": 1, "op": "reboot"}, "unknown op"),
        ({"id": 1, "op": "batch"}, "'ops' list"),
        ({"id": 1, "op": "batch", "ops": [5]}, "an op is a JSON object"),
        ({"id": 1, "op": "batch", "ops": [{"op": "set", "kind": "table"}]}, "unknown object"),
        ({"id": 1, "op": "batch", "ops": [{"op": "zap", "kind": "vrf"}]}, "unknown batch op"),
        ({"id": 1, "op": "batch", "ops": [{"op": "delete", "kind": "vrf"}]}, "string 'key'"),
        ({"id": 1, "op": "batch", "ops": [], "generation": "x"}, "bad generation"),
        ({"id": 1, "op": "flow", "key": [1, 1, "a", "b", 1, 1], "action": "forward"}, "address"),
        ({"id": 1, "op": "flow", "key": [1, 1, "10.0.0.1", "10.0.0.2", 1, 1]}, "flow action"),
        ({"id": 1, "op": "flow", "key": [1, 1, "10.0.0.1", "10.0.0.2", 1, 70000]}, "range"),
        ({"id": 1, "op": "flows", "limit": 10**9}, "limit must be"),
        ({"id": 1, "op": "flows", "vrf": "1"}, "vrf must be an integer"),
        ({"id": 1, "op": "flows", "limit": True}, "limit must be an integer"),
        ([1, 2], "JSON object"),
    ]
    for request, message in cases:
        reply, emits = h.handle(request, 0.0)
        assert not reply["ok"] and message in reply["error"], (request, reply)
        assert emits == []


def test_flow_op_releases_the_held_packet() -> None:
    h = new_handler()
    policy = [
        dataclasses.replace(o, policy=True) if isinstance(o, PortConfig) else o for o in OBJECTS
    ]
    ask(h, "batch", ops=set_ops(policy))
    frame = bytes(
        Ether(src=MAC_A, dst="00:00:5e:00:01:00") / IP(src="10.0.1.5", dst="10.0.1.6") / ICMP(id=9)
    )
    (punt,) = process(h.programmer.tables, frame, 2, 0.0)
    assert parse_punt(punt[1])[0].reason == Punt.FLOW_MISS
    key = [1, 1, "10.0.1.5", "10.0.1.6", 9, 9]
    reverse = [1, 1, "10.0.1.6", "10.0.1.5", 9, 9]
    reply, emits = h.handle(
        {"id": 2, "op": "flow", "key": key, "reverse": reverse, "action": "forward"}, 1.0
    )
    assert reply == {"id": 2, "ok": True, "result": {"released": 1}}
    assert [vif for vif, _ in emits] == [3] and Ether(emits[0][1])[IP].dst == "10.0.1.6"
    listed = ask(h, "flows", vrf=1)["result"]
    assert [(f["src"], f["action"]) for f in listed["flows"]] == [
        ("10.0.1.5", "forward"),
        ("10.0.1.6", "forward"),
    ]
