"""The eBPF datapath shell on a real loaded object in a scratch namespace: the table maps are
written from the Python tables, decided flows are mirrored into ov_flows (and leave with
their Python flow), fast-path hits are folded into the Python flows before aging (so a flow
busy only there stays), a port's changed rules forget the denied flows the fast path made, rule
sets chained over chunks come and go whole, and close() leaves no pkt0, link or program
behind."""

import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from openvpc.lab import netns
from openvpc.lab.real import ebpf_refusal
from openvpc.model.forwarding import FABRIC_VIF, FlowKey
from openvpc.model.rules import PortSecurity, SgRule
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.datapath import EbpfDatapath
from openvpc.vrouter.ebpf.encode import encode_flow_key
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.pipeline import install_flow
from openvpc.vrouter.ports import PKT0, FabricLink, fabric_link
from openvpc.vrouter.program import build_tables
from openvpc.vrouter.tables import Fabric, Tables, Vif, VifKind, Vrf

KEY: FlowKey = (5, 6, socket.inet_aton("10.0.1.3"), socket.inet_aton("10.0.1.4"), 40000, 80)
REVERSE: FlowKey = (5, 6, KEY[3], KEY[2], 80, 40000)


@pytest.fixture
def node() -> Iterator[str]:
    why = ebpf_refusal()
    if why is not None:
        pytest.skip(f"no eBPF datapath here: {why}")
    name = f"integ-dp-{uuid.uuid4().hex[:6]}"
    netns.create_netns(name)
    try:
        with netns.rtnl(name) as ipr:
            # no dummy devices on this kernel: a veth pair whose other end idles
            ipr.link("add", ifname="fabric0", kind="veth", peer={"ifname": "under0"})
            index = ipr.link_lookup(ifname="fabric0")[0]
            ipr.addr("add", index=index, address="172.16.9.10", prefixlen=24)
            ipr.link("set", index=index, state="up")
        yield name
    finally:
        netns.remove_netns(name)


def _fabric() -> tuple[FabricLink, Tables]:
    """The node's fabric link and empty tables for it (inside the node's namespace)."""
    link = fabric_link("fabric0")
    fabric = Fabric(FABRIC_VIF, link.ip, link.mac, link.mtu, kernel_routed=True)
    return link, build_tables(fabric, []).tables


@contextlib.contextmanager
def running(link: FabricLink, tables: Tables) -> Iterator[EbpfDatapath]:
    """The fast path started on `link` with `tables`, closed at the end."""
    dp = EbpfDatapath(link, 1024)
    try:
        dp.start(tables)
        yield dp
    finally:
        dp.close()


def _prog_ids() -> set[int]:
    shown = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    return {p["id"] for p in json.loads(shown.stdout or "[]")}


def test_maps_flows_folding_and_close(node: str) -> None:
    with netns.inside(node):
        link, tables = _fabric()
        dp = EbpfDatapath(link, 1024)
        try:
            dp.start(tables)
            node_map = dp.maps[L.MAP_NODE].lookup(L.u32(0))
            assert node_map is not None and node_map == dp.image[L.MAP_NODE][L.u32(0)]
            assert len(dp.links) == 2
            # a decided flow and its reverse reach ov_flows
            install_flow(tables, KEY, FlowAction.FORWARD, time.monotonic(), REVERSE)
            dp.sync_flows(tables)
            flows = dp.maps[L.MAP_FLOWS]
            assert {encode_flow_key(KEY), encode_flow_key(REVERSE)} == set(flows.keys())
            # the fast path counts hits: as the program would, into the entry
            value = bytearray(flows.lookup(encode_flow_key(KEY)) or b"")
            later = time.monotonic() + 100
            value[:16] = (7).to_bytes(8, "little") + (700).to_bytes(8, "little")
            value[16:24] = round(later * 1e9).to_bytes(8, "little")
            value[L.FLOW.offsets["tcp_flags"]] = 0x10
            flows.update(encode_flow_key(KEY), bytes(value))
            dp.fold_flows(tables)
            flow = tables.flows.lookup(KEY)
            assert flow is not None
            assert (flow.packets, flow.octets, flow.tcp_flags) == (7, 700, 0x10)
            assert flow.last_used == pytest.approx(later, abs=1e-6)
            dp.fold_flows(tables)  # nothing new: nothing added twice
            assert (flow.packets, flow.octets) == (7, 700)
            # aging before `later` keeps it: the fast path used it
            tables.expire(later - 1)
            assert tables.flows.lookup(KEY) is not None
            # a flow Python removes leaves the fast path too
            tables.flows.remove(KEY)
            dp.sync_flows(tables)
            assert list(flows.keys()) == []
        finally:
            before = _prog_ids()
            dp.close()
        assert not netns.link_exists(None, PKT0)
        gone = before - _prog_ids()
        assert len(gone) >= 3, "the object's programs outlived close()"


def test_flows_the_fast_path_made_are_adopted_counted_and_aged(node: str) -> None:
    with netns.inside(node):
        link, tables = _fabric()
        with running(link, tables) as dp:
            rooms, cap = dp.maps[L.MAP_FLOW_ROOM], tables.flows.capacity
            room = rooms.lookup(L.u32(L.FLOW_ROOM_ALL))
            assert room is not None and L.FlowRoom.unpack(room) == L.FlowRoom(cap, 0, 0)
            # what flow_make writes for a first packet: the flow (counted), its reverse, and
            # the flows made under the VRF and the whole table
            now = time.monotonic()
            made = L.Flow(1, 60, round(now * 1e9), L.ZERO4, L.ZERO4, 0, 0, 1, 0x02)
            dp.maps[L.MAP_FLOWS].update(encode_flow_key(KEY), made.pack())
            dp.maps[L.MAP_FLOWS].update(
                encode_flow_key(REVERSE), made._replace(packets=0, nbytes=0, tcp_flags=0).pack()
            )
            for key in (KEY[0], L.FLOW_ROOM_ALL):
                dp.maps[L.MAP_FLOW_MADE].update(L.u32(key), (2).to_bytes(8, "little"))
            dp.fold_flows(tables)
            flow, back = tables.flows.lookup(KEY), tables.flows.lookup(REVERSE)
            assert flow is not None and back is not None
            assert (flow.action, flow.reverse, back.reverse) == (FlowAction.FORWARD, REVERSE, KEY)
            assert (flow.packets, flow.octets, flow.tcp_flags) == (1, 60, 0x02)
            assert flow.last_used == pytest.approx(now, abs=1e-6)
            assert tables.flows.per_vrf == {KEY[0]: 2}
            # the room now counts them as the table's, not as made since
            room = rooms.lookup(L.u32(L.FLOW_ROOM_ALL))
            assert room is not None and L.FlowRoom.unpack(room) == L.FlowRoom(cap, 2, 2)
            dp.fold_flows(tables)  # nothing new: nothing adopted or counted twice
            assert (len(tables.flows.flows), flow.packets) == (2, 1)
            # idle past the embryonic timeout: Python ages them out of the fast path too
            tables.expire(now + 60)
            dp.sync_flows(tables)
            assert list(dp.maps[L.MAP_FLOWS].keys()) == []
            room = rooms.lookup(L.u32(L.FLOW_ROOM_ALL))
            assert room is not None and L.FlowRoom.unpack(room) == L.FlowRoom(cap, 0, 2)


def test_a_ports_changed_rules_forget_the_denied_flows_the_fast_path_made(node: str) -> None:
    with netns.inside(node):
        link, tables = _fabric()
        for vrf in (KEY[0], 7):
            tables.add_vrf(Vrf(vrf, f"vrf{vrf}"))
            tables.add_vif(
                Vif(vrf * 10, VifKind.VIRTUAL, f"vm{vrf}", vrf=vrf, mac=b"\2" * 6, ip=KEY[2],
                    prefix_len=24, policy=True, agent_decides=False, security=PortSecurity())
            )  # fmt: skip
        with running(link, tables) as dp:
            flows = dp.maps[L.MAP_FLOWS]
            # DROP entries as flow_make writes them: one adopted already, one not yet, and one
            # in a VRF whose ports keep their rules
            adopted: FlowKey = (KEY[0], 17, KEY[2], KEY[3], 1, 2)
            other: FlowKey = (7, *KEY[1:])
            denied = L.Flow(1, 60, 1, L.ZERO4, L.ZERO4, 0, 0, L.FlowActionKind.DROP, 0)
            denied = denied._replace(by=L.BY_EGRESS_NO_RULE)
            flows.update(encode_flow_key(adopted), denied.pack())
            dp.fold_flows(tables)
            flow = tables.flows.lookup(adopted)
            assert flow is not None and flow.action is FlowAction.DROP and flow.reverse is None
            assert flow.by == "egress: no security group rule"
            for key in (KEY, other):
                flows.update(encode_flow_key(key), denied.pack())
            # the port's rules change (program.py forgets the VRF's denied flows it knows)
            tables.flows.forget_denied(KEY[0])
            everything = PortSecurity(egress=(SgRule(-1, -1, -1, "0.0.0.0/0", "sg-1/sgr-1"),))
            tables.vifs[KEY[0] * 10].security = everything
            dp.sync(tables)
            assert set(flows.keys()) == {encode_flow_key(other)}
            assert not any(k[0] == KEY[0] for k in tables.flows.flows)
            # the other VRF's port did not change: its DROP stays, and a sync changes nothing
            dp.sync(tables)
            assert set(flows.keys()) == {encode_flow_key(other)}


def _heavy(first_port: int) -> PortSecurity:
    """An ingress set of 120 rules that all apply everywhere: three chunks per entry."""
    return PortSecurity(
        ingress=tuple(
            SgRule(6, p, p, "0.0.0.0/0", f"sg-h/sgr-{p}")
            for p in range(first_port, first_port + 120)
        )
    )


def test_chained_rule_sets_are_written_and_removed_whole(node: str) -> None:
    with netns.inside(node):
        link, tables = _fabric()
        tables.add_vrf(Vrf(KEY[0], "vrf"))
        tables.add_vif(
            Vif(50, VifKind.VIRTUAL, "vm", vrf=KEY[0], mac=b"\2" * 6, ip=KEY[2], prefix_len=24,
                policy=True, agent_decides=False, security=_heavy(1000))
        )  # fmt: skip
        with running(link, tables) as dp:
            heads, chunks = dp.maps[L.MAP_RULES], dp.maps[L.MAP_RULE_CHUNKS]
            assert len(set(chunks.keys())) == 2  # 120 rules: a head and two chunks
            first = set(chunks.keys())
            tables.vifs[50].security = _heavy(2000)  # another set: new chunks, the old gone
            dp.sync(tables)
            after = set(chunks.keys())
            assert len(after) == 2 and not after & first
            assert after == set(dp.image[L.MAP_RULE_CHUNKS])
            assert set(heads.keys()) == set(dp.image[L.MAP_RULES])
            tables.vifs[50].security = None
            dp.sync(tables)
            assert set(chunks.keys()) == set() and set(heads.keys()) == set()


def test_a_drop_the_fast_path_turned_into_a_reverse_is_taken_over(node: str) -> None:
    with netns.inside(node):
        link, tables = _fabric()
        with running(link, tables) as dp:
            flows = dp.maps[L.MAP_FLOWS]
            denied = L.Flow(1, 60, 1, L.ZERO4, L.ZERO4, 0, 0, L.FlowActionKind.DROP, 0)
            flows.update(encode_flow_key(REVERSE), denied._replace(by=L.BY_INGRESS_NO_RULE).pack())
            dp.fold_flows(tables)
            back = tables.flows.lookup(REVERSE)
            assert back is not None and back.action is FlowAction.DROP
            assert tables.flows.denied == {KEY[0]: {REVERSE}}
            # the other direction is allowed: flow_make adds it and turns the DROP into its
            # reverse in place (counters kept)
            by = dp.names.by("sg-1/sgr-1")
            allowed = denied._replace(action=L.FlowActionKind.FORWARD, by=by)
            flows.update(encode_flow_key(KEY), allowed.pack())
            flows.update(encode_flow_key(REVERSE), allowed._replace(packets=2, nbytes=120).pack())
            dp.fold_flows(tables)
            flow = tables.flows.lookup(KEY)
            assert flow is not None and (flow.action, flow.reverse) == (FlowAction.FORWARD, REVERSE)
            assert (back.action, back.reverse, back.by) == (FlowAction.FORWARD, KEY, "sg-1/sgr-1")
            assert back.packets == 2 and tables.flows.denied == {}
            assert tables.flows.dirty == set()  # nothing to mirror back
