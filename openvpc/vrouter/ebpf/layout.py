"""Python mirrors of bpf/layout.h: every struct as a struct.Struct with pack/unpack, the enums,
flags and map names. Host-order integers use "=" (native order, standard sizes, no padding);
network-order fields are bytes or are converted when packed."""

import struct
from enum import IntEnum
from typing import NamedTuple, Self

MAX_VIFS = 4096
MAX_ECMP = 16
NO_LABEL = 0xFFFFFFFF
SLOW_ETH_P = 0x88B5
# a V_TX verdict's reason: the frame leaves with this VLAN id in the skb's 802.1Q metadata
VERDICT_TAGGED = 0x10000

# map names (layout.h's comments say the kinds)
MAP_VIFS = "ov_vifs"
MAP_IFINDEX = "ov_ifindex"
MAP_ALLOWED_IPS = "ov_allowed_ips"
MAP_VRFS = "ov_vrfs"
MAP_IP_FIB = "ov_ip_fib"
MAP_RULES = "ov_rules"
MAP_RULE_CHUNKS = "ov_rule_chunks"
MAP_MAC_FIB = "ov_mac_fib"
MAP_NEXTHOPS = "ov_nexthops"
MAP_LABELS = "ov_labels"
MAP_VNIS = "ov_vnis"
MAP_VLANS = "ov_vlans"
MAP_NODE = "ov_node"
MAP_FLOWS = "ov_flows"
MAP_FLOW_ROOM = "ov_flow_room"
MAP_FLOW_MADE = "ov_flow_made"
MAP_PUNT_TOKENS = "ov_punt_tokens"
MAP_DROPS = "ov_drops"
MAP_VIF_STATS = "ov_vif_stats"
MAP_SLOW = "ov_slow"
MAP_VERDICT = "ov_verdict"
# the ARRAY maps: their slots cannot be deleted, only overwritten (with zeros when emptied)
ARRAY_MAPS = frozenset({MAP_VIFS, MAP_NODE})

VIF_POLICY = 0x01
VIF_SOURCE_CHECK = 0x02
VIF_PEER = 0x04
VIF_AGENT = 0x08
FLOW_ROOM_ALL = 0xFFFFFFFF
VRF_DECREMENT_TTL = 0x01
VRF_UNICAST_ONLY = 0x02
# ov_rules (layout.h says how a rule set is laid out)
MAX_RULES = 48  # per chunk
MAX_RULE_CHUNKS = 7  # per address: MAX_RULES * MAX_RULE_CHUNKS rules
RULES_OVERFLOW = 0xFFFFFFFF
RULE_ANY_PROTO = 0x01
RULE_FRAGMENTS = 0x02
RULE_ALLOW = 0x04
BY_NONE = 0
BY_EGRESS_NO_RULE = 1
BY_INGRESS_NO_RULE = 2
BY_REPLIES = 0x80000000


class VifKind(IntEnum):
    NONE = 0
    VM = 1
    FABRIC = 2


class VrfMode(IntEnum):
    L3 = 0
    L2 = 1
    L2_L3 = 2


class ArpMode(IntEnum):
    PROXY = 0
    SINGLE_MAC = 1


class NhKind(IntEnum):
    DISCARD = 0
    ENCAP = 1
    TUNNEL = 2
    RECEIVE = 3
    L2RECEIVE = 4
    RESOLVE = 5
    ECMP = 6
    SLOW = 7


class EncapKind(IntEnum):
    VXLAN = 0
    MPLSOUDP = 1
    MPLSOGRE = 2
    VLAN = 3


class FlowActionKind(IntEnum):
    FORWARD = 1
    DROP = 2
    NAT = 3


class SlowReason(IntEnum):
    INJECT = 0
    FLOW = 1
    ARP = 2
    DHCP = 3
    DNS = 4
    MTU = 5
    RESOLVE = 6
    NEXTHOP = 7
    OTHER = 8


SLOW_REASONS = len(SlowReason)


class VerdictKind(IntEnum):
    DROP = 1
    TX = 2
    SLOW = 3
    PASS = 4


# the C names of the enums' members, for the generated size/value check against layout.h
C_ENUM_PREFIX: dict[type[IntEnum], str] = {
    VifKind: "VIF_",
    VrfMode: "MODE_",
    ArpMode: "ARP_",
    NhKind: "NH_",
    EncapKind: "ENCAP_",
    FlowActionKind: "FLOW_",
    SlowReason: "SLOW_",
    VerdictKind: "V_",
}


class Layout(NamedTuple):
    """One C struct: its name, the Struct and each field's offset."""

    c_name: str
    struct: struct.Struct
    offsets: dict[str, int]


def _layout(c_name: str, order: str, fields: tuple[tuple[str, str], ...]) -> Layout:
    offsets: dict[str, int] = {}
    fmt = order
    for name, code in fields:
        offsets[name] = struct.calcsize(fmt)
        fmt += code
    return Layout(c_name, struct.Struct(fmt), offsets)


VIF = _layout(
    "vif",
    "=",
    (
        ("ifindex", "I"),
        ("vrf", "I"),
        ("ip", "4s"),
        ("gateway_ip", "4s"),
        ("mtu", "H"),
        ("prefix_len", "B"),
        ("kind", "B"),
        ("flags", "B"),
        ("mac", "6s"),
        ("has_ip", "B"),
        ("sg_ingress", "I"),
        ("sg_egress", "I"),
        ("acl_inbound", "I"),
        ("acl_outbound", "I"),
        ("acl_net", "4s"),
        ("acl_mask", "4s"),
    ),
)
ALLOWED_IP_KEY = _layout("allowed_ip_key", "=", (("vif", "I"), ("ip", "4s")))
VRF = _layout(
    "vrf",
    "=",
    (
        ("mode", "B"),
        ("arp_mode", "B"),
        ("flags", "B"),
        ("gateway_mac", "6s"),
        ("link_local_gateway", "4s"),
    ),
)
FIB_KEY = _layout("fib_key", "=", (("prefixlen", "I"), ("vrf", "I"), ("addr", "4s")))
MAC_KEY = _layout("mac_key", "=", (("vrf", "I"), ("mac", "6s")))
ROUTE = _layout("route", "=", (("nh", "I"), ("label", "I"), ("mac", "6s"), ("has_mac", "B")))
NH_MEMBER = _layout("nh_member", "=", (("nh", "I"), ("label", "I")))
NEXTHOP = _layout(
    "nexthop",
    "=",
    (
        ("kind", "B"),
        ("encap", "B"),
        ("n_members", "B"),
        ("vif", "I"),
        ("dst_ip", "4s"),
        ("dst_mac", "6s"),
        ("src_mac", "6s"),
        ("members", f"{NH_MEMBER.struct.size * MAX_ECMP}s"),
    ),
)
LABEL = _layout("label", "=", (("vrf", "I"), ("l2", "B")))
NODE = _layout(
    "node",
    "=",
    (
        ("punt_rate_milli", "Q"),
        ("punt_burst", "I"),
        ("fabric_ifindex", "I"),
        ("fabric_ip", "4s"),
        ("pkt0_ifindex", "I"),
        ("fabric_mac", "6s"),
        ("fabric_mtu", "H"),
        ("agent", "B"),
        ("pad", "7s"),
    ),
)
FLOW_KEY = _layout(
    "flow_key",
    "=",
    (("vrf", "I"), ("src", "4s"), ("dst", "4s"), ("sport", "2s"), ("dport", "2s"), ("proto", "B")),
)
FLOW = _layout(
    "flow",
    "=",
    (
        ("packets", "Q"),
        ("bytes", "Q"),
        ("last_used", "Q"),
        ("nat_src", "4s"),
        ("nat_dst", "4s"),
        ("nat_sport", "2s"),
        ("nat_dport", "2s"),
        ("action", "B"),
        ("tcp_flags", "B"),
        ("pad", "2s"),
        ("by", "I"),
    ),
)
RULE_KEY = _layout("rule_key", "=", (("prefixlen", "I"), ("set", "I"), ("addr", "4s")))
RULE = _layout("rule", "=", (("proto", "B"), ("flags", "B"), ("lo", "H"), ("hi", "H"), ("by", "I")))
RULE_CHUNK_KEY = _layout("rule_chunk_key", "=", (("set", "I"), ("chunk", "I")))
RULE_LIST = _layout(
    "rule_list", "=", (("n", "I"), ("next", "I"), ("rules", f"{RULE.struct.size * MAX_RULES}s"))
)
FLOW_ROOM = _layout("flow_room", "=", (("limit", "Q"), ("used", "Q"), ("seen", "Q")))
SLOW_HDR = _layout(
    "slow_hdr",
    "!",
    (("dst", "6s"), ("src", "6s"), ("proto", "H"), ("vif", "I"), ("reason", "H"), ("pad", "H")),
)
PUNT_KEY = _layout("punt_key", "=", (("vif", "I"), ("vrf", "I")))
PUNT_BUCKET = _layout("punt_bucket", "=", (("tokens_milli", "Q"), ("last_ns", "Q")))
VIF_STATS = _layout(
    "vif_stats",
    "=",
    (
        ("rx_packets", "Q"),
        ("rx_bytes", "Q"),
        ("tx_packets", "Q"),
        ("tx_bytes", "Q"),
        ("drops", "Q"),
    ),
)
VERDICT = _layout("verdict", "=", (("kind", "I"), ("vif", "I"), ("reason", "I")))

LAYOUTS: tuple[Layout, ...] = (
    VIF,
    ALLOWED_IP_KEY,
    VRF,
    FIB_KEY,
    MAC_KEY,
    ROUTE,
    NH_MEMBER,
    NEXTHOP,
    LABEL,
    NODE,
    FLOW_KEY,
    FLOW,
    FLOW_ROOM,
    RULE_KEY,
    RULE_CHUNK_KEY,
    RULE,
    RULE_LIST,
    SLOW_HDR,
    PUNT_KEY,
    PUNT_BUCKET,
    VIF_STATS,
    VERDICT,
)

U32 = struct.Struct("=I")
U16_HOST = struct.Struct("=H")  # an ICMP type or code in a flow key
U64 = struct.Struct("=Q")
ZERO4 = bytes(4)
ZERO6 = bytes(6)


def u32(value: int) -> bytes:
    """A __u32 key or value (vif ids, VRF ids, next-hop ids, ifindexes, VNIs, VLANs)."""
    return U32.pack(value)


# -- the structs as values ---------------------------------------------------------------
class Vif(NamedTuple):
    ifindex: int
    vrf: int
    ip: bytes
    gateway_ip: bytes
    mtu: int
    prefix_len: int
    kind: int
    flags: int
    mac: bytes
    has_ip: int
    sg_ingress: int = 0  # ov_rules set ids; 0: nothing compiled (allow)
    sg_egress: int = 0
    acl_inbound: int = 0
    acl_outbound: int = 0
    acl_net: bytes = ZERO4
    acl_mask: bytes = ZERO4

    def pack(self) -> bytes:
        return VIF.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(VIF.struct.unpack(data))


class Vrf(NamedTuple):
    mode: int
    arp_mode: int
    flags: int
    gateway_mac: bytes
    link_local_gateway: bytes

    def pack(self) -> bytes:
        return VRF.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(VRF.struct.unpack(data))


class Route(NamedTuple):
    nh: int
    label: int
    mac: bytes
    has_mac: int

    def pack(self) -> bytes:
        return ROUTE.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(ROUTE.struct.unpack(data))


class Nexthop(NamedTuple):
    kind: int
    encap: int = 0
    vif: int = 0
    dst_ip: bytes = ZERO4
    dst_mac: bytes = ZERO6
    src_mac: bytes = ZERO6
    members: tuple[tuple[int, int], ...] = ()  # (next hop, label or NO_LABEL)

    def pack(self) -> bytes:
        if len(self.members) > MAX_ECMP:
            raise ValueError(f"{len(self.members)} members: at most {MAX_ECMP}")
        raw = b"".join(NH_MEMBER.struct.pack(nh, label) for nh, label in self.members)
        raw += bytes(NH_MEMBER.struct.size * (MAX_ECMP - len(self.members)))
        s = NEXTHOP.struct
        return s.pack(
            self.kind,
            self.encap,
            len(self.members),
            self.vif,
            self.dst_ip,
            self.dst_mac,
            self.src_mac,
            raw,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        kind, encap, n, vif, dst_ip, dst_mac, src_mac, raw = NEXTHOP.struct.unpack(data)
        size = NH_MEMBER.struct.size
        members = tuple(
            NH_MEMBER.struct.unpack_from(raw, i * size)
            for i in range(min(n, MAX_ECMP))  # never trust a count read from a map
        )
        return cls(kind, encap, vif, dst_ip, dst_mac, src_mac, members)


class Label(NamedTuple):
    vrf: int
    l2: int

    def pack(self) -> bytes:
        return LABEL.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(LABEL.struct.unpack(data))


class Node(NamedTuple):
    punt_rate_milli: int
    punt_burst: int
    fabric_ifindex: int
    fabric_ip: bytes
    pkt0_ifindex: int
    fabric_mac: bytes
    fabric_mtu: int
    agent: int

    def pack(self) -> bytes:
        return NODE.struct.pack(*self, bytes(7))

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(NODE.struct.unpack(data)[:-1])


class FlowKey(NamedTuple):
    vrf: int
    src: bytes
    dst: bytes
    sport: bytes  # the two bytes as the program reads them (see encode.flow_key)
    dport: bytes
    proto: int

    def pack(self) -> bytes:
        return FLOW_KEY.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(FLOW_KEY.struct.unpack(data))


class Flow(NamedTuple):
    packets: int
    nbytes: int  # C: bytes
    last_used: int  # ns, CLOCK_MONOTONIC
    nat_src: bytes
    nat_dst: bytes
    nat_sport: int  # host integers; network order in the map
    nat_dport: int
    action: int
    tcp_flags: int
    by: int = 0  # what decided it (encode.Names)

    def pack(self) -> bytes:
        return FLOW.struct.pack(
            self.packets,
            self.nbytes,
            self.last_used,
            self.nat_src,
            self.nat_dst,
            self.nat_sport.to_bytes(2, "big"),
            self.nat_dport.to_bytes(2, "big"),
            self.action,
            self.tcp_flags,
            bytes(2),
            self.by,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        packets, nbytes, last, src, dst, sport, dport, action, flags, _, by = FLOW.struct.unpack(
            data
        )
        return cls(
            packets,
            nbytes,
            last,
            src,
            dst,
            int.from_bytes(sport, "big"),
            int.from_bytes(dport, "big"),
            action,
            flags,
            by,
        )


class FlowRoom(NamedTuple):
    limit: int
    used: int
    seen: int

    def pack(self) -> bytes:
        return FLOW_ROOM.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(FLOW_ROOM.struct.unpack(data))


class SlowHdr(NamedTuple):
    dst: bytes
    src: bytes
    proto: int
    vif: int
    reason: int

    def pack(self) -> bytes:
        return SLOW_HDR.struct.pack(*self, 0)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(SLOW_HDR.struct.unpack_from(data)[:-1])


class PuntBucket(NamedTuple):
    tokens_milli: int
    last_ns: int

    def pack(self) -> bytes:
        return PUNT_BUCKET.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(PUNT_BUCKET.struct.unpack(data))


class VifStats(NamedTuple):
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    drops: int

    def pack(self) -> bytes:
        return VIF_STATS.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(VIF_STATS.struct.unpack_from(data))


class Verdict(NamedTuple):
    kind: int
    vif: int
    reason: int

    def pack(self) -> bytes:
        return VERDICT.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(VERDICT.struct.unpack_from(data))


def fib_key(vrf: int, addr: bytes, plen: int) -> bytes:
    """An ov_ip_fib key: the VRF always matches whole, then `plen` bits of the address."""
    return FIB_KEY.struct.pack(32 + plen, vrf, addr)


class Rule(NamedTuple):
    proto: int
    flags: int  # RULE_*
    lo: int
    hi: int
    by: int

    def pack(self) -> bytes:
        return RULE.struct.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> Self:
        return cls._make(RULE.struct.unpack(data))


def rule_list(rules: tuple[Rule, ...] | None, next_chunk: int = 0) -> bytes:
    """One chunk of an ov_rules entry (its value, or an ov_rule_chunks one): the rules in
    order and the number of the chunk that goes on (0: none); None for RULES_OVERFLOW."""
    if rules is None:
        return RULE_LIST.struct.pack(RULES_OVERFLOW, 0, b"")
    if len(rules) > MAX_RULES:
        raise ValueError(f"{len(rules)} rules: at most {MAX_RULES} per chunk")
    return RULE_LIST.struct.pack(len(rules), next_chunk, b"".join(r.pack() for r in rules))


def unpack_rule_list(data: bytes) -> tuple[tuple[Rule, ...] | None, int]:
    """rule_list's inverse: (the rules, None for RULES_OVERFLOW; the next chunk's number)."""
    n, next_chunk, raw = RULE_LIST.struct.unpack(data)
    if n == RULES_OVERFLOW:
        return None, 0
    size = RULE.struct.size
    rules = tuple(Rule.unpack(raw[i * size : (i + 1) * size]) for i in range(min(n, MAX_RULES)))
    return rules, next_chunk


def rule_key(set_id: int, addr: bytes, plen: int) -> bytes:
    """An ov_rules key: the set always matches whole, then `plen` bits of the address."""
    return RULE_KEY.struct.pack(32 + plen, set_id, addr)


def rule_chunk_key(set_id: int, chunk: int) -> bytes:
    """An ov_rule_chunks key: a chunk's number within its set."""
    return RULE_CHUNK_KEY.struct.pack(set_id, chunk)


def mac_key(vrf: int, mac: bytes) -> bytes:
    return MAC_KEY.struct.pack(vrf, mac)


def allowed_ip_key(vif: int, ip: bytes) -> bytes:
    return ALLOWED_IP_KEY.struct.pack(vif, ip)


def punt_key(vif: int, vrf: int) -> bytes:
    return PUNT_KEY.struct.pack(vif, vrf)


def percpu_sum(values: list[bytes], layout: struct.Struct) -> tuple[int, ...]:
    """Field-wise sum of a per-CPU value (each CPU's slot starts with the struct)."""
    total = [0] * len(layout.unpack_from(values[0])) if values else []
    for value in values:
        for i, field in enumerate(layout.unpack_from(value)):
            total[i] += field
    return tuple(total)
