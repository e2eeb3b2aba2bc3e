"""The two sides of the equivalence test: a scratch namespace whose devices the maps name, the
BPF programs run with BPF_PROG_TEST_RUN on the maps encode_tables wrote, and the Python
pipeline on the same Tables; then the comparison of one frame's outcomes."""

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from equiv_frames import FABRIC, Frame
from equiv_scenario import FABRIC_IP, FABRIC_MAC, REMOTES, Scenario

from openvpc.lab import netns
from openvpc.model.forwarding import AGENT_VIF, FABRIC_VIF, FlowKey
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.drops import DROP_COUNT, drop_name
from openvpc.vrouter.ebpf.encode import (
    Device,
    decode_flow_key,
    encode_flow,
    encode_tables,
    flow_rooms,
)
from openvpc.vrouter.ebpf.libbpf import BpfObject
from openvpc.vrouter.ebpf.objects import datapath_object
from openvpc.vrouter.ebpf.rulesets import Names
from openvpc.vrouter.flow import Flow
from openvpc.vrouter.pipeline import process

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
_RETVAL = {
    L.VerdictKind.TX: TC_ACT_REDIRECT,
    L.VerdictKind.DROP: TC_ACT_SHOT,
    L.VerdictKind.SLOW: TC_ACT_REDIRECT,
    L.VerdictKind.PASS: TC_ACT_OK,
}
VERDICT_NAMES = {1: "V_DROP", 2: "V_TX", 3: "V_SLOW", 4: "V_PASS"}
_ZERO = L.u32(0)
_NO_VERDICT = L.Verdict(0, 0, 0).pack()
NUD_PERMANENT = 0x80
_TPID = b"\x81\x00"


@dataclass(frozen=True)
class Net:
    """The scratch namespace and the ifindexes the maps use."""

    ns: str
    devices: dict[int, Device]  # by vif id
    fabric_ifindex: int
    pkt0_ifindex: int


@contextmanager
def scratch_net(scenario: Scenario) -> Iterator[Net]:
    """A namespace with a veth per attached VM, a fabric veth with the underlay's addresses
    and neighbours (bpf_fib_lookup answers from them), and a pkt0; removed after."""
    name = f"equiv-{uuid.uuid4().hex[:8]}"
    netns.create_netns(name)
    try:
        devices: dict[int, Device] = {}
        with netns.rtnl(name) as ipr:

            def veth(node_side: str, peer: str) -> int:
                ipr.link("add", ifname=node_side, kind="veth", peer=peer)
                index = int(ipr.link_lookup(ifname=node_side)[0])
                ipr.link("set", index=index, state="up")
                ipr.link("set", index=int(ipr.link_lookup(ifname=peer)[0]), state="up")
                return index

            for vm in scenario.vms:
                if vm.attached:
                    devices[vm.vif] = Device(veth(f"eqv{vm.vif}", f"eqp{vm.vif}"), peer=True)
            fabric = veth("eqfab", "eqfabp")
            ipr.link("set", index=fabric, address=":".join(f"{b:02x}" for b in FABRIC_MAC))
            ipr.addr("add", index=fabric, address=".".join(map(str, FABRIC_IP)), prefixlen=24)
            for ip, mac in REMOTES.values():
                lladdr = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
                ipr.neigh("add", dst=ip, lladdr=lladdr, ifindex=fabric, state=NUD_PERMANENT)
            pkt0 = veth("eqpkt0", "eqpkt0p")  # this kernel has no dummy devices
        # bpf_fib_lookup answers (neighbour known or not) only where the device forwards
        netns.write_sysctl(name, "net.ipv4.conf.eqfab.forwarding", "1")
        yield Net(name, devices, fabric, pkt0)
    finally:
        netns.remove_netns(name)


@dataclass(frozen=True)
class BpfOutcome:
    kind: int
    vif: int
    reason: int
    retval: int
    data: bytes

    def describe(self) -> str:
        kind = VERDICT_NAMES.get(self.kind, f"kind {self.kind} (none written)")
        if self.kind == L.VerdictKind.DROP:
            what = f"reason {self.reason} ({_drop_name(self.reason)})"
        elif self.kind == L.VerdictKind.SLOW:
            what = f"input vif {self.vif}, reason {_slow_name(self.reason)}"
        else:
            what = f"vif {self.vif}"
        return f"{kind} {what}, retval {self.retval}, out {self.data.hex()}"


def _drop_name(reason: int) -> str:
    try:
        return drop_name(reason)
    except IndexError:
        return "?"


def _slow_name(reason: int) -> str:
    try:
        return L.SlowReason(reason).name
    except ValueError:
        return str(reason)


class BpfSide:
    """A freshly loaded datapath object whose maps hold the scenario's tables and flows; runs
    frames pinned to one CPU so that the per-CPU verdict read back is this frame's."""

    def __init__(self, obj: BpfObject, scenario: Scenario, net: Net) -> None:
        self.obj = obj
        self.names = Names()
        image = encode_tables(
            scenario.tables, net.devices, net.pkt0_ifindex, net.fabric_ifindex, self.names
        )
        for name, entries in image.items():
            m = obj.map(name)
            for key, value in entries.items():
                m.update(key, value)
        flows = obj.map(L.MAP_FLOWS)
        for flow in scenario.tables.flows.flows.values():
            entry = encode_flow(flow, self.names)
            if entry is not None:
                flows.update(*entry)
        rooms = obj.map(L.MAP_FLOW_ROOM)
        for vrf, room in flow_rooms(scenario.tables, {}).items():
            rooms.update(L.u32(vrf), room.pack())
        self.vif_in = obj.program("vif_in")
        self.fabric_in = obj.program("fabric_in")
        self.slow_in = obj.program("slow_in")
        self.pkt0_ifindex = net.pkt0_ifindex
        self.verdict = obj.map(L.MAP_VERDICT)
        self.ifindex = {vif: d.ifindex for vif, d in net.devices.items()}
        self.fabric_ifindex = net.fabric_ifindex
        self.cpu = min(os.sched_getaffinity(0))
        self.verdict.update(_ZERO, _NO_VERDICT)

    def run(self, frame: Frame) -> BpfOutcome:
        # ov_verdict is not cleared between frames (a syscall each): a path that wrote none
        # would show the last frame's verdict, which the checks of retval, slow_hdr, output
        # and drop reason against Python then refuse
        if frame.port == FABRIC:
            prog, ifindex = self.fabric_in, self.fabric_ifindex
        else:
            prog, ifindex = self.vif_in, self.ifindex[frame.vif]
        result = prog.test_run(frame.data, ifindex=ifindex, data_size_out=len(frame.data) + 512)
        values = self.verdict.lookup_percpu(_ZERO)
        assert values is not None
        v = L.Verdict.unpack(values[self.cpu])
        return BpfOutcome(v.kind, v.vif, v.reason, result.retval, result.data)

    def run_slow_in(self, data: bytes) -> BpfOutcome:
        """A frame the slow path writes to pkt0 (slow_hdr first), through slow_in."""
        result = self.slow_in.test_run(
            data, ifindex=self.pkt0_ifindex, data_size_out=len(data) + 512
        )
        values = self.verdict.lookup_percpu(_ZERO)
        assert values is not None
        v = L.Verdict.unpack(values[self.cpu])
        return BpfOutcome(v.kind, v.vif, v.reason, result.retval, result.data)

    def drops(self) -> Counter[str]:
        out: Counter[str] = Counter()
        m = self.obj.map(L.MAP_DROPS)
        for i in range(DROP_COUNT):
            values = m.lookup_percpu(L.u32(i)) or []
            n = sum(L.U64.unpack(v)[0] for v in values)
            if n:
                out[drop_name(i)] = n
        return out

    def vif_stats(self, vifs: list[int]) -> dict[int, tuple[int, ...]]:
        m = self.obj.map(L.MAP_VIF_STATS)
        return {v: L.percpu_sum(m.lookup_percpu(L.u32(v)) or [], L.VIF_STATS.struct) for v in vifs}

    def slow(self) -> Counter[str]:
        m = self.obj.map(L.MAP_SLOW)
        out: Counter[str] = Counter()
        for reason in L.SlowReason:
            n = sum(L.U64.unpack(v)[0] for v in m.lookup_percpu(L.u32(reason)) or [])
            if n:
                out[reason.name] = n
        return out

    def flow_packets(self) -> dict[bytes, tuple[int, int]]:
        out = {}
        for key, value in self.obj.map(L.MAP_FLOWS).items():
            flow = L.Flow.unpack(value)
            out[key] = (flow.packets, flow.nbytes)
        return out

    def flow_verdicts(self) -> dict[FlowKey, tuple[int, str]]:
        """Every ov_flows entry's action and what decided it, as strings."""
        out = {}
        for key, value in self.obj.map(L.MAP_FLOWS).items():
            flow = L.Flow.unpack(value)
            out[decode_flow_key(key)] = (flow.action, self.names.name(flow.by))
        return out


class _RecordingCounter(Counter[str]):
    """The drop counters, noting which reasons each frame increments."""

    def __init__(self, counts: Counter[str]) -> None:
        super().__init__(counts)
        self.log: list[str] = []

    def __setitem__(self, key: str, value: int) -> None:
        if value > self.get(key, 0):
            self.log.extend([key] * (value - self.get(key, 0)))
        super().__setitem__(key, value)


@dataclass
class PyOutcome:
    emits: list[tuple[int, bytes]]
    drops: Counter[str]
    rx: tuple[int, int]  # the input vif's receive counters' increase
    vif_drops: int
    touched: list[tuple[FlowKey, int]]  # flows hit, with the size counted

    def describe(self) -> str:
        emits = ", ".join(f"vif {v}: {d.hex()}" for v, d in self.emits) or "nothing"
        return f"emits {emits}; drops {dict(self.drops) or 'none'}"


class PySide:
    """The pipeline on the scenario's Tables, recording what each frame changed."""

    def __init__(self, scenario: Scenario) -> None:
        self.t = scenario.tables
        self._touched: list[tuple[FlowKey, int]] = []
        # one Counter is shared by the tables and their flow table: record its increments
        self._drops = _RecordingCounter(self.t.drops)
        self.t.drops = self.t.flows.drops = self._drops
        flows = self.t.flows
        original = flows.touch

        def touch(flow: Flow, now: float, size: int, tcp_flags: int) -> None:
            self._touched.append((flow.key, size))
            original(flow, now, size, tcp_flags)

        flows.touch = touch  # type: ignore[method-assign]

    def run(self, frame: Frame, now: float) -> PyOutcome:
        vif = self.t.vifs[frame.vif]
        rx0, rxb0, d0 = vif.stats.rx_packets, vif.stats.rx_bytes, vif.stats.drops
        self._touched = []
        self._drops.log = []
        emits = process(self.t, frame.data, frame.vif, now)
        return PyOutcome(
            emits,
            Counter(self._drops.log),
            (vif.stats.rx_packets - rx0, vif.stats.rx_bytes - rxb0),
            vif.stats.drops - d0,
            self._touched,
        )


def disagreement(frame: Frame, bpf: BpfOutcome, py: PyOutcome) -> str | None:
    """Why the fast path's decision differs from Python's, or None when it agrees (or went up
    or passed the frame to the kernel, where Python decides)."""
    expected_retval = _RETVAL.get(L.VerdictKind(bpf.kind)) if bpf.kind in (1, 2, 3, 4) else None
    if expected_retval is None:
        return "the program wrote no verdict"
    if bpf.retval != expected_retval:
        return f"retval {bpf.retval} does not go with {VERDICT_NAMES[bpf.kind]}"
    if bpf.kind == L.VerdictKind.SLOW:
        return _slow_frame(frame, bpf)
    if bpf.kind == L.VerdictKind.PASS:
        return "a VM's frame passed to the node's stack" if frame.port != FABRIC else None
    if bpf.kind == L.VerdictKind.DROP:
        if py.emits:
            return "BPF dropped, Python emitted"
        names = list(py.drops.elements())
        if names != [_drop_name(bpf.reason)]:
            return f"drop reason {_drop_name(bpf.reason)!r}, Python {names}"
        return None
    # V_TX
    if len(py.emits) != 1:
        return f"BPF sent one frame, Python emitted {len(py.emits)}"
    if py.drops:
        return f"BPF sent, Python also counted drops {dict(py.drops)}"
    out_vif, data = py.emits[0]
    if out_vif == AGENT_VIF:
        return "BPF sent, Python punted to the agent"
    if bpf.vif != out_vif:
        return f"output vif {bpf.vif}, Python {out_vif}"
    if out_vif != FABRIC_VIF:
        return "output bytes differ" if bpf.data != data else None
    if bpf.reason & L.VERDICT_TAGGED:
        # bpf_skb_vlan_push puts the tag in the skb's metadata (the device inserts it on
        # transmit), which BPF_PROG_TEST_RUN does not return: the verdict carries its VLAN id
        if data[12:14] != _TPID:
            return "BPF tagged the frame (skb metadata), Python did not"
        if bpf.reason & 0xFFFF != int.from_bytes(data[14:16], "big"):
            return f"802.1Q VLAN {bpf.reason & 0xFFFF}, Python TCI {data[14:16].hex()}"
        data = data[:12] + data[16:]
    if bpf.data[12:] != data[12:]:
        return "fabric frame differs after byte 12"
    return None


def _slow_frame(frame: Frame, bpf: BpfOutcome) -> str | None:
    """A frame going up carries struct slow_hdr, then the frame exactly as it came in."""
    size = L.SLOW_HDR.struct.size
    if len(bpf.data) < size:
        return "a frame sent up without its slow_hdr"
    hdr = L.SlowHdr.unpack(bpf.data[:size])
    if hdr.proto != L.SLOW_ETH_P or hdr.vif != frame.vif or hdr.reason != bpf.reason:
        return f"slow_hdr {hdr} does not match the verdict"
    if bpf.data[size:] != frame.data:
        return "the frame sent up is not the frame that came in"
    return None


@dataclass
class Tally:
    """Per class, how often each verdict; the first disagreements in full; the counters the
    fast path should have moved (Python's changes on the frames it decided)."""

    verdicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_class: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    must_up: list[str] = field(default_factory=list)
    must_up_kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    rx: Counter[int] = field(default_factory=Counter)
    rx_bytes: Counter[int] = field(default_factory=Counter)
    tx: Counter[int] = field(default_factory=Counter)
    tx_bytes: Counter[int] = field(default_factory=Counter)
    vif_drops: Counter[int] = field(default_factory=Counter)
    flows: Counter[FlowKey] = field(default_factory=Counter)
    flow_bytes: Counter[FlowKey] = field(default_factory=Counter)
    slow: Counter[str] = field(default_factory=Counter)

    def add(self, frame: Frame, bpf: BpfOutcome, py: PyOutcome, why: str | None) -> None:
        name = VERDICT_NAMES.get(bpf.kind, "none")
        self.verdicts[(frame.cls, name)] += 1
        self.per_class[frame.cls] += 1
        if why is not None:
            self.failure_kinds[(frame.cls, why)] += 1
            if len(self.failures) < 25:
                self.failures.append(report(frame, bpf, py, why))
        if frame.must and bpf.kind in (L.VerdictKind.SLOW, L.VerdictKind.PASS):
            self.must_up_kinds[(frame.cls, bpf.describe().split(",")[0])] += 1
            if len(self.must_up) < 25:
                self.must_up.append(report(frame, bpf, py, "a must-handle frame went up"))
        if bpf.kind == L.VerdictKind.SLOW:
            self.slow[_slow_name(bpf.reason)] += 1
        if bpf.kind not in (L.VerdictKind.TX, L.VerdictKind.DROP):
            return
        self.drops.update(py.drops)
        self.rx[frame.vif] += py.rx[0]
        self.rx_bytes[frame.vif] += py.rx[1]
        self.vif_drops[frame.vif] += py.vif_drops
        for out_vif, data in py.emits:
            self.tx[out_vif] += 1
            self.tx_bytes[out_vif] += len(data)
        for key, size in py.touched:
            self.flows[key] += 1
            self.flow_bytes[key] += size

    def shares(self) -> str:
        lines = [f"{'class':44} {'n':>6}  verdicts (share)"]
        for cls in sorted(self.per_class):
            n = self.per_class[cls]
            parts = [
                f"{v} {100 * c / n:.0f}%" for (k, v), c in sorted(self.verdicts.items()) if k == cls
            ]
            lines.append(f"{cls:44} {n:>6}  " + ", ".join(parts))
        return "\n".join(lines)


def report(frame: Frame, bpf: BpfOutcome, py: PyOutcome, why: str) -> str:
    return (
        f"[{frame.cls}] {why}\n"
        f"  in: {frame.port} vif {frame.vif}, {len(frame.data)} bytes: {frame.data.hex()}\n"
        f"  bpf:    {bpf.describe()}\n"
        f"  python: {py.describe()}"
    )


def load(scenario: Scenario, net: Net) -> tuple[BpfObject, BpfSide]:
    obj = BpfObject.open(datapath_object())
    try:
        return obj, BpfSide(obj, scenario, net)
    except BaseException:
        obj.close()
        raise
