"""The eBPF datapath of one vRouter process: the loaded object, pkt0, the tcx links (fabric_in
on the fabric, slow_in on pkt0, vif_in on every VM's node-side veth or TAP), the map sync after each
table change, the flow mirror and the fast path's counters. Nothing is pinned: every link and
map goes with this process's file descriptors."""

import logging
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from openvpc.model.forwarding import FABRIC_VIF, FlowKey
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.drops import DROP_NAMES
from openvpc.vrouter.ebpf.encode import (
    RULE_MAPS,
    TABLE_MAPS,
    Device,
    MapImage,
    decode_flow_key,
    diff_images,
    encode_flow,
    encode_flow_key,
    encode_tables,
    flow_rooms,
    rules_changed,
)
from openvpc.vrouter.ebpf.layout import SlowReason
from openvpc.vrouter.ebpf.libbpf import BpfMap, BpfObject, TcxLink
from openvpc.vrouter.ebpf.objects import datapath_object
from openvpc.vrouter.ebpf.rulesets import Names
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.ports import FabricLink, Pkt0Port
from openvpc.vrouter.tables import Tables

log = logging.getLogger("openvpc.vrouter")

_U64 = 8
_NS = 1e-9


class EbpfDatapath:
    """Owns the fast path of one vRouter; `close` detaches and frees everything."""

    def __init__(self, fabric: FabricLink, flow_capacity: int, path: Path | None = None) -> None:
        self.fabric = fabric
        self.obj: BpfObject | None = None
        self.pkt0: Pkt0Port | None = None
        self.links: list[TcxLink] = []
        self.vif_links: dict[int, TcxLink] = {}  # vif -> vif_in on its node-side device
        self.devices: dict[int, Device] = {}
        self.image: MapImage = {}
        # what the fast path's counters of each mirrored flow were when last folded in
        self.folded: dict[FlowKey, tuple[int, int]] = {}
        # ... and what the drop and vif counters were (the tables hold both paths' sums)
        self.folded_drops: dict[int, int] = {}
        self.keys: dict[bytes, FlowKey] = {}  # ov_flows keys decoded
        # the fast path's room to make flows (ov_flow_room as written) and ov_flow_made as
        # read when the flows it had made were last adopted
        self.rooms: dict[int, L.FlowRoom] = {}
        self.made_seen: dict[int, int] = {}
        self.folded_vifs: dict[int, tuple[int, ...]] = {}
        self.names = Names()  # rule set and `by` ids, for the life of the maps
        try:
            self.obj = BpfObject.open(
                path or datapath_object(), max_entries={L.MAP_FLOWS: flow_capacity}
            )
            self.pkt0 = Pkt0Port()
            self.maps = {name: self.obj.map(name) for name in _MAPS}
        except BaseException:
            self.close()
            raise

    def start(self, tables: Tables) -> None:
        """Write the tables, then attach the programs that take traffic from outside."""
        assert self.obj is not None and self.pkt0 is not None
        self.sync(tables)
        self.links.append(TcxLink.attach(self.obj.program("slow_in"), self.pkt0.ifindex, "ingress"))
        self.links.append(
            TcxLink.attach(self.obj.program("fabric_in"), self.fabric.index, "ingress")
        )
        log.info(
            "ebpf datapath: fabric_in on %s, slow_in on %s (ifindex %d)",
            self.fabric.ifname,
            self.pkt0.ifname,
            self.pkt0.ifindex,
        )

    # -- vifs ---------------------------------------------------------------------------
    def attach_vif(self, vif: int, ifindex: int, peer: bool = True) -> None:
        """vif_in at the ingress of `vif`'s node-side device (again if the device changed);
        with `peer` (a veth) deliveries go by redirect_peer, else to the device's egress."""
        assert self.obj is not None
        old = self.vif_links.get(vif)
        if old is not None and old.ifindex == ifindex and old.fd is not None:
            self.devices[vif] = Device(ifindex, peer)
            return
        link = TcxLink.attach(self.obj.program("vif_in"), ifindex, "ingress")
        self.detach_vif(vif)
        self.vif_links[vif] = link
        self.devices[vif] = Device(ifindex, peer)

    def detach_vif(self, vif: int) -> None:
        link = self.vif_links.pop(vif, None)
        self.devices.pop(vif, None)
        if link is not None:
            link.close()

    # -- maps ---------------------------------------------------------------------------
    def sync(self, tables: Tables) -> None:
        """Make the table maps what `tables` says now (only the differences are written),
        then mirror the flows that changed.

        New rule sets are written before the vifs name them and old ones deleted after, so a
        first packet never meets a port whose set is half there. When a port's rules changed,
        the DROP flows the programs made in its VRF are adopted and forgotten with the ones
        the slow path already forgot (FlowTable.forget_denied): a flow they denied is decided
        again at its next packet."""
        assert self.pkt0 is not None
        image = encode_tables(
            tables, self.devices, self.pkt0.ifindex, self.fabric.index, self.names
        )
        diffs = diff_images(self.image, image)
        rules = [(name, diffs.pop(name, None)) for name in RULE_MAPS]
        for name, diff in rules:
            for key, value in diff.update.items() if diff is not None else ():
                self.maps[name].update(key, value)
        for name, diff in diffs.items():
            m = self.maps[name]
            for key in diff.delete:
                m.delete(key)
            for key, value in diff.update.items():
                m.update(key, value)
        for name, diff in reversed(rules):
            for key in diff.delete if diff is not None else ():
                self.maps[name].delete(key)
        changed = rules_changed(self.image.get(L.MAP_VIFS, {}), image[L.MAP_VIFS])
        self.image = image
        if changed:
            self.fold_flows(tables)
            for vrf in sorted(changed):
                tables.flows.forget_denied(vrf)
        self.sync_flows(tables)

    def sync_flows(self, tables: Tables) -> None:
        """Write the decided flows the table changed into ov_flows; delete removed ones and
        those that are no longer decided (the fast path never holds). Then the room the fast
        path has left to make flows in."""
        flows = tables.flows
        if flows.dirty is None:
            flows.dirty = set()
            dirty: Iterable[FlowKey] = list(flows.flows)
        else:
            dirty = list(flows.dirty)
            flows.dirty.clear()
        m = self.maps[L.MAP_FLOWS]
        for key in dirty:
            flow = flows.lookup(key)
            entry = None if flow is None else encode_flow(flow, self.names)
            if entry is None:
                if key in self.folded or flow is None:
                    raw = encode_flow_key(key)
                    m.delete(raw)
                    self.keys.pop(raw, None)
                self.folded.pop(key, None)
                continue
            try:
                m.update(*entry)
            except OSError as e:  # E2BIG: the map is full (the Python table bounds it first)
                log.warning("ov_flows: cannot mirror a flow: %s", e)
                continue
            self.folded[key] = (0, 0)
        self._give_room(tables)

    def _give_room(self, tables: Tables) -> None:
        """ov_flow_room: each VRF's quota and the table's capacity, with the flows the table
        holds now and what ov_flow_made said when the fast path's last ones were adopted."""
        rooms = flow_rooms(tables, self.made_seen)
        m = self.maps[L.MAP_FLOW_ROOM]
        for key, room in rooms.items():
            if self.rooms.get(key) != room:
                m.update(L.u32(key), room.pack())
                self.rooms[key] = room
        for key in set(self.rooms) - set(rooms):
            m.delete(L.u32(key))
            del self.rooms[key]

    def fold_flows(self, tables: Tables) -> None:
        """Before an aging pass or a dump: adopt the flows the fast path made, and add what it
        counted since the last fold to the Python flows, so that flows busy only on the fast
        path do not age out."""
        flows = tables.flows
        made = {
            L.U32.unpack(k)[0]: int.from_bytes(v, "little")
            for k, v in self.maps[L.MAP_FLOW_MADE].items()
        }
        pending = flows.dirty or set()  # changed or removed in Python, not mirrored yet
        for raw, value in self.maps[L.MAP_FLOWS].items():
            key = self.keys.get(raw)
            if key is None:
                key = self.keys[raw] = decode_flow_key(raw)
            if key in pending:
                continue
            packets, nbytes, last_ns = _COUNTERS.unpack_from(value, 0)
            flow = flows.lookup(key)
            action = _ACTIONS.get(value[_ACTION_AT])
            by_id = L.U32.unpack_from(value, _BY_AT)[0]
            vrf, proto, src, dst, sport, dport = key
            reverse = (vrf, proto, dst, src, dport, sport)
            if flow is None:
                if action is None:
                    continue
                by = self.names.name(by_id)
                flow = flows.adopt(key, action, last_ns * _NS, _reverse(action, reverse), by)
                before = (0, 0)
            else:
                if action is FlowAction.FORWARD and flow.action in _REWRITTEN:
                    by = self.names.name(by_id)
                    if (flow.action, flow.by) != (action, by):  # flow_make's rewrite
                        flows.take_verdict(flow, action, reverse, by)
                before = self.folded.get(key, (packets, nbytes))
            if packets == before[0]:
                self.folded.setdefault(key, before)
                continue
            flow.packets += packets - before[0]
            flow.octets += nbytes - before[1]
            flow.last_used = max(flow.last_used, last_ns * _NS)
            flow.tcp_flags |= value[_FLAGS_AT]
            self.folded[key] = (packets, nbytes)
        self.made_seen = made
        self._give_room(tables)

    # -- counters -----------------------------------------------------------------------
    def fold_counters(self, tables: Tables) -> None:
        """Add what the programs counted since the last fold (drops by reason, each vif's
        packets, bytes and drops) to the tables' counters, which then hold both paths'."""
        drops = _percpu_sums(self.maps[L.MAP_DROPS], range(len(DROP_NAMES)))
        for i, n in drops.items():
            seen = self.folded_drops.get(i, 0)
            if n > seen:
                tables.drops[DROP_NAMES[i]] += n - seen
                self.folded_drops[i] = n
        for vif_id, vif in tables.vifs.items():
            if vif_id >= L.MAX_VIFS:
                continue
            totals = self._vif_totals(vif_id)
            seen_vif = self.folded_vifs.get(vif_id, (0,) * len(_VIF_COUNTERS))
            if totals == seen_vif:
                continue
            for name, now, before in zip(_VIF_COUNTERS, totals, seen_vif, strict=True):
                setattr(vif.stats, name, getattr(vif.stats, name) + max(0, now - before))
            self.folded_vifs[vif_id] = totals

    def _vif_totals(self, vif_id: int) -> tuple[int, ...]:
        """One vif's counters in ov_vif_stats, summed over CPUs, in _VIF_COUNTERS order."""
        totals = [0] * len(_VIF_COUNTERS)
        for value in self.maps[L.MAP_VIF_STATS].lookup_percpu(L.u32(vif_id)) or ():
            for i, n in enumerate(L.VIF_STATS.struct.unpack_from(value, 0)):
                totals[i] += n
        return tuple(totals)

    def stats(self) -> dict[str, Any]:
        """The programs' counters: drops by reason, per-vif packets, slow-path reasons."""
        drops = _percpu_sums(self.maps[L.MAP_DROPS], range(len(DROP_NAMES)))
        slow = _percpu_sums(self.maps[L.MAP_SLOW], range(len(SlowReason)))
        vifs: dict[str, dict[str, int]] = {}
        for vif in sorted({*self.devices, FABRIC_VIF}):
            totals = self._vif_totals(vif)
            if any(totals):
                vifs[str(vif)] = dict(zip(_VIF_COUNTERS, totals, strict=True))
        return {
            "drops": {DROP_NAMES[i]: n for i, n in drops.items() if n},
            "slow": {SlowReason(i).name.lower(): n for i, n in slow.items() if n},
            "vifs": vifs,
            "flows": len(self.folded),
            "attached": {str(v): link.ifindex for v, link in sorted(self.vif_links.items())},
        }

    def close(self) -> None:
        for link in [*self.vif_links.values(), *self.links]:
            link.close()
        self.vif_links.clear()
        self.links.clear()
        if self.pkt0 is not None:
            self.pkt0.close()
        if self.obj is not None:
            self.obj.close()
            self.obj = None


_VIF_COUNTERS = tuple(L.VIF_STATS.offsets)  # rx_packets ... drops, as VifStats names them
_COUNTERS = struct.Struct("=QQQ")  # packets, bytes, last_used: the head of struct flow
_ACTION_AT, _FLAGS_AT = L.FLOW.offsets["action"], L.FLOW.offsets["tcp_flags"]
_BY_AT = L.FLOW.offsets["by"]
_ACTIONS: dict[int, FlowAction] = {
    L.FlowActionKind.FORWARD: FlowAction.FORWARD,
    L.FlowActionKind.DROP: FlowAction.DROP,
}
_MAPS = (
    *TABLE_MAPS,
    L.MAP_FLOWS,
    L.MAP_FLOW_ROOM,
    L.MAP_FLOW_MADE,
    L.MAP_DROPS,
    L.MAP_VIF_STATS,
    L.MAP_SLOW,
)


_REWRITTEN = (FlowAction.FORWARD, FlowAction.DROP)  # what flow_make may turn into a reverse


def _reverse(action: FlowAction, reverse: FlowKey) -> FlowKey | None:
    """A FORWARD flow the fast path made has its reverse; a DROP stands alone."""
    return reverse if action is FlowAction.FORWARD else None


def _percpu_sums(m: BpfMap, ids: Iterable[int]) -> dict[int, int]:
    """Per id of a PERCPU_ARRAY of u64: the sum over CPUs."""
    out: dict[int, int] = {}
    for i in ids:
        values = m.lookup_percpu(L.u32(i))
        out[i] = sum(int.from_bytes(v[:_U64], "little") for v in values or ())
    return out
