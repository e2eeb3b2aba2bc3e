"""Pure allocation of VNIs, VLANs and per-node VRF ids, MPLS label pairs and vif ids.

Round-robin from a hint, not lowest free: a freed number comes back as late as possible."""

from collections.abc import Iterable, Set
from dataclasses import dataclass
from itertools import chain

from openvpc.model.internet import INTERNET_VIF, PUBLIC_L3_LABEL, PUBLIC_VRF
from openvpc.model.resources import NodeAllocation

VNI_RANGE = (5001, (1 << 24) - 1)
VLAN_RANGE = (101, 4094)
VRF_RANGE = (1, PUBLIC_VRF - 1)  # the public VRF's id is the last (model/internet.py)
LABEL_RANGE = (16, PUBLIC_L3_LABEL - 1)  # 0-15 are reserved MPLS labels; the public VRF's last
VIF_RANGE = (2, 65535)  # 0 is the fabric, 1 the agent; the punt header carries 16 bits
RESERVED_VIFS = frozenset({INTERNET_VIF})  # the internet port on the gateway node


class Exhausted(Exception):
    """No free number is left in a range."""


def next_free(used: Set[int], bounds: tuple[int, int], hint: int) -> int:
    """The first number >= hint (wrapping to the bottom once) in `bounds` not in `used`.

    Reuse is delayed because a remote vRouter still on an older config may send a stale
    label or VNI, and it must not land in someone else's network."""
    lo, hi = bounds
    start = hint if lo <= hint <= hi else lo
    for n in chain(range(start, hi + 1), range(lo, start)):
        if n not in used:
            return n
    raise Exhausted(f"no free number in {lo}..{hi}")


@dataclass(frozen=True, slots=True)
class NodeHints:
    """Where each per-node allocator resumes."""

    vrf: int = VRF_RANGE[0]
    label: int = LABEL_RANGE[0]
    vif: int = VIF_RANGE[0]


def plan_node(
    current: NodeAllocation, tables: Iterable[str], interfaces: Iterable[str], hints: NodeHints
) -> tuple[NodeAllocation, NodeHints]:
    """The node's allocation for exactly `tables` and `interfaces`: existing numbers kept,
    numbers of things gone released, new things numbered in id order."""
    table_set, iface_set = set(tables), set(interfaces)
    want_tables = sorted(table_set)
    want_ifaces = sorted(iface_set)
    vrfs = {t: v for t, v in current.vrfs if t in table_set}
    labels = {t: (l3, l2) for t, l3, l2 in current.labels if t in table_set}
    vifs = {i: v for i, v in current.vifs if i in iface_set}
    vrf_hint, label_hint, vif_hint = hints.vrf, hints.label, hints.vif
    used_labels = {n for pair in labels.values() for n in pair}
    for table in want_tables:
        if table not in vrfs:
            vrfs[table] = vrf_hint = next_free(set(vrfs.values()), VRF_RANGE, vrf_hint)
            vrf_hint += 1
        if table not in labels:
            l3 = next_free(used_labels, LABEL_RANGE, label_hint)
            used_labels.add(l3)
            l2 = next_free(used_labels, LABEL_RANGE, l3 + 1)
            used_labels.add(l2)
            labels[table] = (l3, l2)
            label_hint = l2 + 1
    used_vifs = set(vifs.values()) | RESERVED_VIFS
    for iface in want_ifaces:
        if iface not in vifs:
            vifs[iface] = vif_hint = next_free(used_vifs, VIF_RANGE, vif_hint)
            used_vifs.add(vif_hint)
            vif_hint += 1
    allocation = NodeAllocation(
        current.node,
        tuple(sorted(vrfs.items())),
        tuple((t, *labels[t]) for t in sorted(labels)),
        tuple(sorted(vifs.items())),
    )
    return allocation, NodeHints(vrf_hint, label_hint, vif_hint)
