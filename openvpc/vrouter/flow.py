"""Flow table: 5-tuple + VRF -> action, with reverse flows, HOLD queues and TCP-aware aging.

Bounded three ways so that one tenant or VM exhausts only its own share: a capacity, a quota
per VRF, and a limit on the HOLD entries (flows awaiting the agent) of each source."""

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from openvpc.model.forwarding import FlowKey, NatTuple
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_RST
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.limits import (
    DEFAULT_FLOW_CAPACITY,
    DEFAULT_VIF_HOLD_LIMIT,
    DROP_TIMEOUT,
    HOLD_TIMEOUT,
    Source,
)

MAX_HELD = 3


class FlowAction(StrEnum):
    HOLD = "hold"
    FORWARD = "forward"
    DROP = "drop"
    NAT = "nat"


@dataclass(frozen=True, slots=True)
class FlowTimeouts:
    """Idle seconds before a flow ages out, by state."""

    hold: float = HOLD_TIMEOUT
    drop: float = DROP_TIMEOUT
    tcp_embryonic: float = 30.0
    tcp_established: float = 180.0
    tcp_closed: float = 10.0
    other: float = 180.0


@dataclass(slots=True)
class Flow:
    key: FlowKey
    action: FlowAction
    created: float
    last_used: float
    reverse: FlowKey | None = None
    nat: NatTuple | None = None
    packets: int = 0
    octets: int = 0
    tcp_flags: int = 0  # OR of the flags seen in this direction
    held: list[tuple[bytes, int]] = field(default_factory=list)
    source: Source | None = None  # whose HOLD entry this is, while it is one
    by: str = ""  # what decided it: a security group rule, an ACL entry (rules.Decision.by)


class FlowTable:
    """Bounded flow table with a per-VRF quota and a per-source HOLD limit; the agent decides,
    the table remembers."""

    def __init__(
        self,
        capacity: int = DEFAULT_FLOW_CAPACITY,
        vrf_quota: int | None = None,
        timeouts: FlowTimeouts | None = None,
        drops: Counter[str] | None = None,
        hold_limit: int | None = DEFAULT_VIF_HOLD_LIMIT,
    ) -> None:
        self.capacity = capacity
        self.drops: Counter[str] = Counter() if drops is None else drops  # shared with Tables
        self.vrf_quota = vrf_quota
        self.hold_limit = hold_limit
        self.timeouts = timeouts or FlowTimeouts()
        self.flows: dict[FlowKey, Flow] = {}
        self.per_vrf: dict[int, int] = {}
        self.holds: dict[Source, int] = {}  # HOLD entries per source
        self.denied: dict[int, set[FlowKey]] = {}  # DROP entries per VRF (forget_denied)
        self.created = 0
        self.deleted = 0
        # keys whose entry was made, changed or removed since a mirror (the eBPF flow map)
        # last drained it; None while nothing mirrors the table
        self.dirty: set[FlowKey] | None = None

    def lookup(self, key: FlowKey) -> Flow | None:
        return self.flows.get(key)

    def _admit(self, key: FlowKey, *more: FlowKey) -> Drop | None:
        """Whether new entries for these keys fit the table and their VRFs' quotas."""
        keys = {key, *more}
        if len(self.flows) + len(keys) > self.capacity:
            return Drop.FLOW_TABLE_FULL
        if self.vrf_quota is not None:
            for vrf, wanted in Counter(k[0] for k in keys).items():
                if self.per_vrf.get(vrf, 0) + wanted > self.vrf_quota:
                    return Drop.FLOW_QUOTA
        return None

    def _add(self, flow: Flow) -> None:
        self.flows[flow.key] = flow
        self.per_vrf[flow.key[0]] = self.per_vrf.get(flow.key[0], 0) + 1
        self.created += 1

    def can_hold(self, key: FlowKey, source: Source | None = None) -> Drop | None:
        """Why no HOLD entry for `key` can be made for `source` now, or None if one can."""
        if (
            source is not None
            and self.hold_limit is not None
            and self.holds.get(source, 0) >= self.hold_limit
        ):
            return Drop.FLOW_HOLD_LIMIT
        return self._admit(key)

    def hold(self, key: FlowKey, now: float, source: Source | None = None) -> Flow | Drop:
        """A new HOLD entry for a first packet from `source`, or why none can be made."""
        reason = self.can_hold(key, source)
        if reason is not None:
            return reason
        flow = Flow(key, FlowAction.HOLD, now, now, source=source)
        self._add(flow)
        if source is not None:
            self.holds[source] = self.holds.get(source, 0) + 1
        return flow

    def _unhold(self, flow: Flow) -> None:
        """The flow is no HOLD entry any more: its source may make another."""
        source = flow.source
        if source is None:
            return
        flow.source = None
        left = self.holds.get(source, 0) - 1
        if left > 0:
            self.holds[source] = left
        else:
            self.holds.pop(source, None)

    def install(
        self,
        key: FlowKey,
        action: FlowAction,
        now: float,
        reverse: FlowKey | None = None,
        nat: NatTuple | None = None,
        reverse_nat: NatTuple | None = None,
        by: str = "",
    ) -> list[tuple[bytes, int]] | Drop:
        """Install a flow and its reverse (`by`: what decided them); returns the held packets
        to run again.

        Both entries are admitted before either is written, so a refusal changes nothing.
        """
        missing = [k for k in (key, reverse) if k is not None and k not in self.flows]
        if missing:
            reason = self._admit(*missing)
            if reason is not None:
                return reason
        released: list[tuple[bytes, int]] = []
        for k, rk, n in ((key, reverse, nat), (reverse, key, reverse_nat)):
            if k is None:
                continue
            flow = self.flows.get(k)
            if flow is None:
                flow = Flow(k, action, now, now)
                self._add(flow)
            self._unhold(flow)
            self._mark_denied(k, action)
            flow.action, flow.reverse, flow.nat, flow.by = action, rk, n, by
            if self.dirty is not None:
                self.dirty.add(k)
            released.extend(flow.held)
            flow.held = []
        return released

    def adopt(
        self,
        key: FlowKey,
        action: FlowAction,
        last_used: float,
        reverse: FlowKey | None,
        by: str = "",
    ) -> Flow:
        """A flow the fast path made and admitted itself: known from now on (aged, counted,
        shown) without being mirrored back."""
        flow = Flow(key, action, last_used, last_used, reverse, by=by)
        self._add(flow)
        self._mark_denied(key, action)
        return flow

    def take_verdict(
        self, flow: Flow, action: FlowAction, reverse: FlowKey | None, by: str
    ) -> None:
        """The fast path rewrote a flow this table knows, as `install` rewrites an existing
        reverse (a DROP of the other direction allowed now): take its verdict over, without
        mirroring it back."""
        flow.action, flow.reverse, flow.by = action, reverse, by
        self._mark_denied(flow.key, action)

    def _mark_denied(self, key: FlowKey, action: FlowAction) -> None:
        if action is FlowAction.DROP:
            self.denied.setdefault(key[0], set()).add(key)
            return
        denied = self.denied.get(key[0])
        if denied is not None:
            denied.discard(key)
            if not denied:
                del self.denied[key[0]]

    def forget_denied(self, vrf: int) -> int:
        """Remove the VRF's DROP entries (its rules changed: a flow they denied is decided
        again at its next packet, not after the drop timeout); allowed flows stay, as tracked
        connections do in AWS. Returns how many."""
        keys = self.denied.pop(vrf, set())
        for key in keys:
            self.remove(key)
        return len(keys)

    def remove(self, key: FlowKey) -> bool:
        """Remove a flow and its reverse."""
        flow = self.flows.pop(key, None)
        if flow is None:
            return False
        self.per_vrf[key[0]] -= 1
        if not self.per_vrf[key[0]]:
            del self.per_vrf[key[0]]
        self._unhold(flow)
        if flow.action is FlowAction.DROP:
            self._mark_denied(key, FlowAction.FORWARD)
        self.deleted += 1
        if self.dirty is not None:
            self.dirty.add(key)
        if flow.reverse is not None and flow.reverse in self.flows:
            self.remove(flow.reverse)
        return True

    def touch(self, flow: Flow, now: float, size: int, tcp_flags: int) -> None:
        flow.last_used = now
        flow.packets += 1
        flow.octets += size
        flow.tcp_flags |= tcp_flags

    def _timeout(self, flow: Flow) -> float:
        t = self.timeouts
        if flow.action is FlowAction.HOLD:
            return t.hold
        if flow.action is FlowAction.DROP:
            return t.drop
        if flow.key[1] != 6:
            return t.other
        peer = self.flows.get(flow.reverse) if flow.reverse else None
        both = flow.tcp_flags | (peer.tcp_flags if peer else 0)
        fin_both = flow.tcp_flags & TCP_FIN and peer is not None and peer.tcp_flags & TCP_FIN
        if both & TCP_RST or fin_both:
            return t.tcp_closed
        return t.tcp_established if both & TCP_ACK else t.tcp_embryonic

    def age(self, now: float) -> list[FlowKey]:
        """Remove flows idle past their timeout (a pair goes when both sides are idle)."""
        expired = []
        for key, flow in list(self.flows.items()):
            if key not in self.flows:
                continue
            peer = self.flows.get(flow.reverse) if flow.reverse else None
            last = max(flow.last_used, peer.last_used if peer else flow.last_used)
            if now - last >= self._timeout(flow):
                expired.append(key)
                lost = len(flow.held)
                if peer is not None:
                    expired.append(peer.key)
                    lost += len(peer.held)
                if lost:  # the agent never answered these first packets
                    self.drops[Drop.HOLD_EXPIRED] += lost
                self.remove(key)
        return expired
