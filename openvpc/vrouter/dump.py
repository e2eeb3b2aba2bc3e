"""Text dumps of the vRouter's tables, in the spirit of Contrail's `vif`, `rt`, `nh`, `mpls`,
`vxlan`, `flow` and `dropstats` utilities: plain strings, fixed columns, stable order."""

from collections.abc import Iterable
from typing import Any

from openvpc.model.forwarding import ArpMode, FlowKey
from openvpc.packet.ethernet import mac_to_str
from openvpc.packet.ipv4 import ip_to_str
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN
from openvpc.vrouter.flow import Flow
from openvpc.vrouter.nexthop import (
    CompositeNH,
    DiscardNH,
    EncapNH,
    L2ReceiveNH,
    NatNH,
    NextHop,
    ReceiveNH,
    ResolveNH,
    TunnelNH,
)
from openvpc.vrouter.tables import Tables, Vif, VifKind

_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre"}
_TCP_FLAGS = ((TCP_SYN, "S"), (TCP_ACK, "A"), (TCP_PSH, "P"), (TCP_FIN, "F"), (TCP_RST, "R"))


def _table(
    header: tuple[str, ...], widths: tuple[int, ...], rows: Iterable[tuple[str, ...]]
) -> str:
    """Left-aligned columns of fixed width (the last one unpadded), a header line first."""

    def line(cells: tuple[str, ...]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return " ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _ip(addr: bytes | None) -> str:
    return "-" if addr is None else ip_to_str(addr)


def _mac(mac: bytes | None) -> str:
    return "-" if mac is None else mac_to_str(mac)


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


# -- vif --list -------------------------------------------------------------------------
def _vif_flags(vif: Vif) -> str:
    if vif.kind is not VifKind.VIRTUAL:
        return "-"
    flags = ("P" if vif.policy else "") + ("Ag" if vif.policy and vif.agent_decides else "")
    flags += "Sc" if vif.source_check else ""
    return (flags + ("Aa" if vif.allowed_ips else "")) or "-"


def dump_vifs(t: Tables) -> str:
    """Every vif with its VRF, addresses, MTU, flags and counters (like `vif --list`)."""
    legend = (
        "Flags: P=policy (flow table), Ag=first packets to the agent, "
        "Sc=source/destination check, Aa=allowed addresses"
    )
    rows = []
    for vif in sorted(t.vifs.values(), key=lambda v: v.id):
        ip = "-" if vif.ip is None else f"{ip_to_str(vif.ip)}/{vif.prefix_len}"
        s = vif.stats
        rows.append(
            (
                f"vif0/{vif.id}",
                vif.name,
                vif.kind.value,
                str(vif.vrf),
                _mac(vif.mac),
                ip,
                _ip(vif.gateway_ip),
                str(vif.mtu),
                _vif_flags(vif),
                f"{s.rx_packets}/{s.rx_bytes}",
                f"{s.tx_packets}/{s.tx_bytes}",
                str(s.drops),
            )
        )
    header = (
        "Vif", "Name", "Kind", "Vrf", "MAC", "IP", "Gateway", "MTU", "Flags",
        "RX-pkts/bytes", "TX-pkts/bytes", "Drops",
    )  # fmt: skip
    widths = (8, 16, 8, 4, 17, 18, 15, 5, 6, 16, 16)
    return legend + "\n" + _table(header, widths, rows)


# -- rt --dump --------------------------------------------------------------------------
def dump_routes(t: Tables, vrf_id: int) -> str:
    """One VRF's inet (IP FIB) and bridge (MAC FIB) tables (like `rt --dump`)."""
    vrf = t.vrfs.get(vrf_id)
    if vrf is None:
        return f"Vrf {vrf_id}: no such routing instance"
    arp = " arp single-mac" if vrf.arp_mode is ArpMode.SINGLE_MAC else ""
    ttl = " decrement-ttl" if vrf.decrement_ttl else ""
    title = (
        f"Vrf {vrf.id} ({vrf.name}) mode {vrf.mode.value} gateway-mac {_mac(vrf.gateway_mac)}"
        f" link-local-gateway {_ip(vrf.link_local_gateway)}{arp}{ttl}"
    )
    legend = "Flags: L=label/VNI valid, P=proxy ARP with the stitched MAC"
    inet = [
        (
            ip_to_str(net),
            str(plen),
            ("L" if r.label is not None else "") + ("P" if r.mac is not None else "") or "-",
            _opt(r.label),
            str(r.nh),
            _mac(r.mac),
        )
        for net, plen, r in vrf.ip_fib.items()
    ]
    bridge = [
        (_mac(mac), "L" if r.label is not None else "-", _opt(r.label), str(r.nh))
        for mac, r in sorted(vrf.mac_fib.items())
    ]
    return "\n".join(
        [
            title,
            legend,
            "inet:",
            _table(
                ("Destination", "PPL", "Flags", "Label", "Nexthop", "Stitched MAC"),
                (15, 4, 5, 8, 8),
                inet,
            ),
            "bridge:",
            _table(("DestMac", "Flags", "Label/VNID", "Nexthop"), (17, 5, 10), bridge),
        ]
    )


# -- nh --list --------------------------------------------------------------------------
def _nh_detail(t: Tables, nh: NextHop) -> tuple[str, str]:
    if isinstance(nh, EncapNH):
        return "encap", f"oif vif0/{nh.vif} dmac {_mac(nh.dst_mac)} smac {_mac(nh.src_mac)}"
    if isinstance(nh, TunnelNH):
        return "tunnel", (
            f"encap {nh.encap.value} sip {ip_to_str(t.fabric.ip)} dip {ip_to_str(nh.dst_ip)}"
            f" oif vif0/{t.fabric.vif}"
        )
    if isinstance(nh, NatNH):
        pairs = " ".join(f"{ip_to_str(a)}>{ip_to_str(b)}" for a, b in nh.table) or "(none)"
        gateway = f" gateway {nh.gateway}" if nh.gateway else ""
        return "nat", f"{'dst' if nh.dst else 'src'} vrf {nh.vrf}{gateway} {pairs}"
    if isinstance(nh, CompositeNH):
        members = " ".join(f"{m}({_opt(label)})" for m, label in nh.members) or "(none)"
        return "composite", ("ecmp " if nh.ecmp else "replicate ") + f"sub-nh(label) {members}"
    names: dict[type, str] = {
        ReceiveNH: "receive",
        L2ReceiveNH: "l2-receive",
        DiscardNH: "discard",
        ResolveNH: "resolve",
    }
    return names.get(type(nh), type(nh).__name__), ""


def dump_nexthops(t: Tables) -> str:
    """Every next hop: id, type and per type its interface, MACs, tunnel or members."""
    rows = [(str(i), *_nh_detail(t, nh)) for i, nh in sorted(t.nexthops.items())]
    return _table(("Id", "Type", "Details"), (6, 10), rows)


# -- mpls --dump, vxlan --dump, VLAN table ------------------------------------------------
def _vrf_name(t: Tables, vrf_id: int) -> str:
    vrf = t.vrfs.get(vrf_id)
    return f"{vrf_id} ({vrf.name})" if vrf is not None else f"{vrf_id} (missing)"


def dump_labels(t: Tables) -> str:
    """MPLS labels this vRouter allocated: label -> VRF, and whether Ethernet is inside."""
    rows = [
        (str(label), _vrf_name(t, e.vrf), "l2" if e.l2 else "l3")
        for label, e in sorted(t.labels.items())
    ]
    return _table(("Label", "Vrf", "Payload"), (8, 24), rows)


def dump_vnis(t: Tables) -> str:
    """VXLAN network identifiers -> VRF (like `vxlan --dump`)."""
    rows = [(str(vni), _vrf_name(t, vrf)) for vni, vrf in sorted(t.vnis.items())]
    return _table(("VNID", "Vrf"), (9,), rows)


def dump_vlans(t: Tables) -> str:
    """802.1Q VLAN ids on the fabric -> VRF."""
    rows = [(str(vlan), _vrf_name(t, vrf)) for vlan, vrf in sorted(t.vlans.items())]
    return _table(("VLAN", "Vrf"), (5,), rows)


# -- underlay -----------------------------------------------------------------------------
def dump_underlay(t: Tables) -> str:
    """The global (fabric) FIB and the underlay neighbours, with packets awaiting ARP."""
    fib = [
        (ip_to_str(net), str(plen), "direct" if not gw else ip_to_str(gw))
        for net, plen, gw in t.underlay.items()
    ]
    hops = sorted(set(t.neighbors) | set(t.pending))
    neigh = [
        (ip_to_str(ip), _mac(t.neighbors.get(ip)), str(len(t.pending.get(ip, [])))) for ip in hops
    ]
    return "\n".join(
        [
            f"Fabric vif0/{t.fabric.vif} {ip_to_str(t.fabric.ip)} {_mac(t.fabric.mac)}"
            f" mtu {t.fabric.mtu}",
            _table(("Destination", "PPL", "Gateway"), (15, 4), fib),
            _table(("Neighbor", "MAC", "Pending"), (15, 17), neigh),
        ]
    )


# -- flow -l ------------------------------------------------------------------------------
def _endpoints(key: FlowKey) -> str:
    _, _, src, dst, sport, dport = key
    return f"{ip_to_str(src)}:{sport} -> {ip_to_str(dst)}:{dport}"


def _tcp_flags(flags: int) -> str:
    return "".join(letter for bit, letter in _TCP_FLAGS if flags & bit) or "-"


def _nat(flow: Flow) -> str:
    if flow.nat is None:
        return "-"
    src, dst, sport, dport = flow.nat
    _, _, ksrc, kdst, ksport, kdport = flow.key
    changed = [
        name
        for name, differs in (
            ("S", src != ksrc),
            ("D", dst != kdst),
            ("Ps", sport != ksport),
            ("Pd", dport != kdport),
        )
        if differs
    ]
    return f"N({','.join(changed)}) {ip_to_str(src)}:{sport} -> {ip_to_str(dst)}:{dport}"


def dump_flows(t: Tables) -> str:
    """Every flow sorted by key: tuple, action, reverse, NAT, counters, TCP flags (`flow -l`)."""
    ft = t.flows
    title = (
        f"Flow table (capacity {ft.capacity}, entries {len(ft.flows)},"
        f" created {ft.created}, deleted {ft.deleted})"
    )
    rows = []
    for key in sorted(ft.flows):
        flow = ft.flows[key]
        action = flow.action.value + (f"({len(flow.held)})" if flow.held else "")
        rows.append(
            (
                str(key[0]),
                _PROTOS.get(key[1], str(key[1])),
                _endpoints(key),
                action,
                "-" if flow.reverse is None else _endpoints(flow.reverse),
                f"{flow.packets}/{flow.octets}",
                _tcp_flags(flow.tcp_flags),
                _nat(flow),
                flow.by or "-",
            )
        )
    header = ("Vrf", "Proto", "Source:Port -> Destination:Port", "Action", "Reverse",
              "Pkts/Bytes", "TCP", "NAT", "By")  # fmt: skip
    return title + "\n" + _table(header, (4, 5, 43, 10, 43, 14, 5, 30), rows)


MAX_FLOW_RECORDS = 10_000


def flow_records(
    t: Tables, now: float, vrf: int | None = None, limit: int = 1000
) -> dict[str, Any]:
    """The flows as JSON-ready data (the `flows` op, `openvpc flows NODE`): per flow its VRF,
    tuple, action, what decided it (a security group rule, an ACL entry), counters and idle
    seconds; at most `limit` (1..MAX_FLOW_RECORDS) in key order, of `vrf` only if given."""
    if not 1 <= limit <= MAX_FLOW_RECORDS:
        raise ValueError(f"limit must be 1..{MAX_FLOW_RECORDS}")
    ft = t.flows
    keys = sorted(k for k in ft.flows if vrf is None or k[0] == vrf)
    records = []
    for key in keys[:limit]:
        flow = ft.flows[key]
        vrf_id, proto, src, dst, sport, dport = key
        table = t.vrfs.get(vrf_id)
        records.append(
            {
                "vrf": vrf_id,
                "vrf_name": table.name if table is not None else "",
                "proto": _PROTOS.get(proto, str(proto)),
                "src": ip_to_str(src),
                "sport": sport,
                "dst": ip_to_str(dst),
                "dport": dport,
                "action": flow.action.value,
                "by": flow.by,
                "reverse": flow.reverse is not None,
                "nat": None if flow.nat is None else _nat(flow),
                "packets": flow.packets,
                "bytes": flow.octets,
                "tcp_flags": _tcp_flags(flow.tcp_flags),
                "idle": round(max(0.0, now - flow.last_used), 3),
            }
        )
    return {"entries": len(ft.flows), "matched": len(keys), "flows": records}


# -- dropstats ----------------------------------------------------------------------------
def dump_drops(t: Tables) -> str:
    """Every drop reason with a non-zero count, by name, then the total (like `dropstats`)."""
    rows = [(str(reason), str(n)) for reason, n in sorted(t.drops.items()) if n]
    rows.append(("total", str(sum(t.drops.values()))))
    return _table(("Reason", "Count"), (28,), rows)


def stats(t: Tables) -> dict[str, Any]:
    """The counters as JSON-ready data (the `stats` op): drops by reason, the flow table's
    occupancy per VRF and HOLD entries per source, each vif's packet counters."""
    ft = t.flows
    return {
        "drops": {str(reason): n for reason, n in sorted(t.drops.items()) if n},
        "flows": {
            "capacity": ft.capacity,
            "vrf_quota": ft.vrf_quota,
            "entries": len(ft.flows),
            "created": ft.created,
            "deleted": ft.deleted,
            "per_vrf": {str(vrf): n for vrf, n in sorted(ft.per_vrf.items())},
            "holds": {f"{vif}/{vrf}": n for (vif, vrf), n in sorted(ft.holds.items())},
        },
        "vifs": {
            str(vif.id): {
                "name": vif.name,
                "vrf": vif.vrf,
                "rx_packets": vif.stats.rx_packets,
                "tx_packets": vif.stats.tx_packets,
                "drops": vif.stats.drops,
            }
            for vif in sorted(t.vifs.values(), key=lambda v: v.id)
        },
        "nat_gateways": t.nat_gateways.stats(),
    }


def dump_all(t: Tables) -> str:
    """Every table, each VRF's routes included, separated by blank lines."""
    parts = [
        dump_vifs(t),
        *(dump_routes(t, vrf_id) for vrf_id in sorted(t.vrfs)),
        dump_nexthops(t),
        dump_labels(t),
        dump_vnis(t),
        dump_vlans(t),
        dump_underlay(t),
        dump_flows(t),
        dump_drops(t),
    ]
    return "\n\n".join(parts)
