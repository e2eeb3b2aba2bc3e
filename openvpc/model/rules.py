"""Security groups and network ACLs as compiled for one port, and their evaluation on the first
packet of a flow (pure; the vRouter's pipeline and the eBPF maps evaluate these).

Matching is on a *selector*, one integer per packet direction (see `selector`): the destination
port for TCP and UDP, `type << 8 | code` for ICMP, 0 for any other protocol, and `UNKNOWN` (-1)
for a fragment, which carries no ports. A rule or entry matches a packet when its protocol is
`ANY` or the packet's, `lo <= selector <= hi`, and the remote address is inside its prefix:

- all protocols (-1), a protocol without ports (neither TCP, UDP nor ICMP), TCP/UDP 0-65535 and
  ICMP type -1 are unrestricted: `lo = UNKNOWN`, `hi = 0xFFFF`, so they match fragments too;
- TCP/UDP from-to match destination ports from..to (a fragment matches no narrower range);
- ICMP type t with code -1 matches every code of type t, type t code c only that pair.

Security groups are stateful and allow-only: a flow is allowed when some rule matches its first
packet (egress: remote = destination; ingress: remote = source; both on the destination port);
nothing matching denies. Replies, ICMP echo replies included, pass by the flow table, not by
rules. A network ACL is stateless: its entries are tried in rule-number order, the first match
decides, the `*` rule (32767) denies; each direction of a flow is checked on its own (the reply
direction with `reply_selector`), and only when the flow crosses the subnet's boundary.

`leaving` and `entering` put these together for the two sides of a new flow: the sending
port's (egress rules, its subnet's ACL) and the receiving port's (its subnet's ACL, ingress
rules), each answering with what decided, for the flow table and `openvpc flows`.
"""

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from openvpc.model.policy import ACL_DEFAULT_RULE

ANY = -1  # every IP protocol
UNKNOWN = -1  # the selector of a fragment: no ports, no ICMP type
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
_PORTED = (PROTO_TCP, PROTO_UDP)
_FULL = (UNKNOWN, 0xFFFF)
# ICMP queries and their answers: the reply direction of an echo request is an echo reply
_ICMP_REPLY = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}


def selector_range(proto: int, from_port: int, to_port: int) -> tuple[int, int]:
    """The selectors a rule matches: see the module docstring. For ICMP the ports are the type
    and the code (-1: all), as in EC2's security group rules."""
    if proto in _PORTED:
        lo = 0 if from_port < 0 else from_port
        hi = 0xFFFF if to_port < 0 else to_port
        if not 0 <= lo <= hi <= 0xFFFF:
            raise ValueError(f"bad port range {from_port}-{to_port}")
        return _FULL if (lo, hi) == (0, 0xFFFF) else (lo, hi)
    if proto == PROTO_ICMP:
        if from_port < 0:
            if to_port >= 0:
                raise ValueError(f"ICMP code {to_port} without a type")
            return _FULL
        if from_port > 0xFF or to_port > 0xFF:
            raise ValueError(f"bad ICMP type {from_port} or code {to_port}")
        base = from_port << 8
        return (base, base | 0xFF) if to_port < 0 else (base | to_port, base | to_port)
    if not ANY <= proto <= 0xFF:
        raise ValueError(f"bad IP protocol {proto}")
    return _FULL


def selector(proto: int, dport: int, icmp_type: int, icmp_code: int, fragment: bool) -> int:
    """What a packet is matched on. `dport` as the pipeline keys flows (packet.l4.l4_ports);
    for ICMP pass the header's type and code (the flow key holds the identifier for echo)."""
    if fragment:
        return UNKNOWN
    if proto in _PORTED:
        return dport
    if proto == PROTO_ICMP:
        return icmp_type << 8 | icmp_code if icmp_type >= 0 else UNKNOWN
    return 0


def reply_selector(proto: int, sport: int, icmp_type: int, icmp_code: int, fragment: bool) -> int:
    """The selector of a flow's reply direction: its source port for TCP and UDP; for an ICMP
    query its answer (echo request -> echo reply, ...), any other ICMP message itself."""
    if proto == PROTO_ICMP and not fragment and icmp_type >= 0:
        return _ICMP_REPLY.get(icmp_type, icmp_type) << 8 | icmp_code
    return selector(proto, sport, icmp_type, icmp_code, fragment)


@functools.lru_cache(maxsize=1 << 16)
def _prefix(cidr: str) -> tuple[int, int]:
    """(network, mask) as integers; cached: an expanded group repeats its members' /32s in
    every port of a node, and decoding a config parses each of them again."""
    try:
        net = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError as e:
        raise ValueError(f"bad prefix {cidr!r}: {e}") from e
    return int(net.network_address), int(net.netmask)


@dataclass(frozen=True, slots=True)
class SgRule:
    """One allow rule of a port's security groups, a referenced group already expanded to one
    /32 per member address. `ref` names what allowed it: "sg-.../sgr-...".

    lo, hi, net and mask are derived (not in the document): the selector range and the prefix
    as integers, so evaluation parses nothing.
    """

    proto: int  # ANY or an IP protocol number
    from_port: int  # TCP/UDP: first port; ICMP: type; -1 where ignored or all
    to_port: int  # TCP/UDP: last port; ICMP: code; -1 where ignored or all
    cidr: str  # the remote prefix, "10.0.1.5/32"
    ref: str
    lo: int = field(init=False, repr=False, compare=False)
    hi: int = field(init=False, repr=False, compare=False)
    net: int = field(init=False, repr=False, compare=False)
    mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lo, hi = selector_range(self.proto, self.from_port, self.to_port)
        net, mask = _prefix(self.cidr)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "mask", mask)

    def match_key(self) -> tuple[int, int, int, int, int]:
        """What the rule matches (its reference aside): equal keys are one rule."""
        return self.proto, self.lo, self.hi, self.net, self.mask


_HOST_MASK = 0xFFFFFFFF
_NO_RULE = 1 << 62


class RuleTable:
    """A direction's rules indexed for evaluation: /32 rules (a referenced group expands to
    many) by address, the others in order. Finds the same rule as `sg_verdict`, the first
    matching one in the flat order, touching only rules the address can match."""

    __slots__ = ("hosts", "others")

    def __init__(self, rules: tuple[SgRule, ...]) -> None:
        hosts: dict[int, list[tuple[int, SgRule]]] = {}
        others: list[tuple[int, SgRule]] = []
        for pos, rule in enumerate(rules):
            if rule.mask == _HOST_MASK:
                hosts.setdefault(rule.net, []).append((pos, rule))
            else:
                others.append((pos, rule))
        self.hosts = {addr: tuple(found) for addr, found in hosts.items()}
        self.others = tuple(others)

    def verdict(self, proto: int, remote: bytes, sel: int) -> str | None:
        """As `sg_verdict` over the rules the table was built from."""
        addr = int.from_bytes(remote)
        first, ref = _NO_RULE, None
        for pos, r in self.others:
            if (
                (r.proto == proto or r.proto == ANY)
                and r.lo <= sel <= r.hi
                and addr & r.mask == r.net
            ):
                first, ref = pos, r.ref
                break
        for pos, r in self.hosts.get(addr, ()):
            if pos > first:
                break
            if (r.proto == proto or r.proto == ANY) and r.lo <= sel <= r.hi:
                return r.ref
        return ref


@dataclass(frozen=True, slots=True)
class PortSecurity:
    """The union of a port's security groups' rules, per direction, flat and deduplicated.
    Empty rules deny every new flow in that direction. The tables are derived (not in the
    document): evaluate with `ingress_verdict` and `egress_verdict`."""

    ingress: tuple[SgRule, ...] = ()
    egress: tuple[SgRule, ...] = ()
    ingress_table: RuleTable = field(init=False, repr=False, compare=False)
    egress_table: RuleTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ingress_table", RuleTable(self.ingress))
        object.__setattr__(self, "egress_table", RuleTable(self.egress))

    def ingress_verdict(self, proto: int, source: bytes, sel: int) -> str | None:
        """The reference of the rule admitting a new flow from `source` into the port's VM,
        None when no rule does (deny)."""
        return self.ingress_table.verdict(proto, source, sel)

    def egress_verdict(self, proto: int, destination: bytes, sel: int) -> str | None:
        """The reference of the rule letting the port's VM open a flow to `destination`."""
        return self.egress_table.verdict(proto, destination, sel)


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One numbered network ACL entry (ports and ICMP as in `SgRule`); derived fields likewise."""

    number: int
    proto: int
    from_port: int
    to_port: int
    cidr: str
    allow: bool
    lo: int = field(init=False, repr=False, compare=False)
    hi: int = field(init=False, repr=False, compare=False)
    net: int = field(init=False, repr=False, compare=False)
    mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.number <= ACL_DEFAULT_RULE:
            raise ValueError(f"bad rule number {self.number}")
        lo, hi = selector_range(self.proto, self.from_port, self.to_port)
        net, mask = _prefix(self.cidr)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "mask", mask)


DEFAULT_DENY = AclEntry(ACL_DEFAULT_RULE, ANY, -1, -1, "0.0.0.0/0", False)


@dataclass(frozen=True, slots=True)
class NetworkAclConfig:
    """The network ACL at a port's subnet boundary: the ACL's id, the subnet's CIDR, and the
    entries per direction in rule-number order, each ending with the `*` deny.
    `ingress` is inbound (entering the subnet), `egress` outbound (leaving it)."""

    id: str  # "acl-..."
    subnet: str  # "10.0.1.0/24"
    ingress: tuple[AclEntry, ...] = (DEFAULT_DENY,)
    egress: tuple[AclEntry, ...] = (DEFAULT_DENY,)
    net: int = field(init=False, repr=False, compare=False)
    mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        net, mask = _prefix(self.subnet)
        object.__setattr__(self, "net", net)
        object.__setattr__(self, "mask", mask)
        for name, entries in (("ingress", self.ingress), ("egress", self.egress)):
            numbers = [e.number for e in entries]
            if numbers != sorted(set(numbers)):
                raise ValueError(f"{self.id} {name}: rule numbers not strictly ascending")

    def crosses(self, remote: bytes) -> bool:
        """Whether traffic between this subnet and `remote` crosses its boundary (traffic
        inside one subnet is not subject to its network ACL)."""
        return (int.from_bytes(remote) & self.mask) != self.net


def sg_verdict(rules: tuple[SgRule, ...], proto: int, remote: bytes, sel: int) -> str | None:
    """The reference of the first rule allowing the packet, None when none does (deny).
    `remote`: the 4-byte destination for egress rules, the source for ingress rules."""
    addr = int.from_bytes(remote)
    for r in rules:
        if (r.proto == proto or r.proto == ANY) and r.lo <= sel <= r.hi and addr & r.mask == r.net:
            return r.ref
    return None


def acl_verdict(
    entries: tuple[AclEntry, ...], proto: int, remote: bytes, sel: int
) -> tuple[bool, int]:
    """(allowed, the deciding rule number) for one direction's entries: the first match wins,
    none matching is the `*` deny. `remote`: the source inbound, the destination outbound."""
    addr = int.from_bytes(remote)
    for e in entries:
        if (e.proto == proto or e.proto == ANY) and e.lo <= sel <= e.hi and addr & e.mask == e.net:
            return e.allow, e.number
    return False, ACL_DEFAULT_RULE


class Decision(NamedTuple):
    """A side's verdict on a new flow and what decided it: the allowing rule's reference
    ("sg-.../sgr-..."), an ACL entry ("acl-.../outbound/100"; "/replies" when it is the reply
    direction's), "no security group rule", or "" when nothing is compiled for the port."""

    allowed: bool
    by: str


NOT_COMPILED = Decision(True, "")
NO_RULE = "no security group rule"


def _acl_check(
    acl: NetworkAclConfig, inbound: bool, proto: int, remote: bytes, sel: int, replies: bool
) -> Decision:
    entries = acl.ingress if inbound else acl.egress
    allowed, number = acl_verdict(entries, proto, remote, sel)
    name = "inbound" if inbound else "outbound"
    return Decision(allowed, f"{acl.id}/{name}/{number}{'/replies' if replies else ''}")


def leaving(
    security: PortSecurity | None,
    acl: NetworkAclConfig | None,
    proto: int,
    destination: bytes,
    sel: int,
    reply_sel: int,
) -> Decision:
    """A new flow from a port's VM to `destination`, on its side: its groups' egress rules,
    then (when the flow leaves the subnet) its subnet's ACL outbound for the packet and
    inbound for the replies, which a stateless ACL must let back in."""
    allowed = NOT_COMPILED
    if security is not None:
        ref = security.egress_verdict(proto, destination, sel)
        if ref is None:
            return Decision(False, f"egress: {NO_RULE}")
        allowed = Decision(True, ref)
    if acl is not None and acl.crosses(destination):
        out = _acl_check(acl, False, proto, destination, sel, replies=False)
        if not out.allowed:
            return out
        back = _acl_check(acl, True, proto, destination, reply_sel, replies=True)
        if not back.allowed:
            return back
        return allowed if allowed.by else out
    return allowed


def entering(
    security: PortSecurity | None,
    acl: NetworkAclConfig | None,
    proto: int,
    source: bytes,
    sel: int,
    reply_sel: int,
) -> Decision:
    """A new flow from `source` into a port's VM, on its side: (when it comes from outside
    the subnet) the subnet's ACL inbound for the packet and outbound for the replies, then
    the port's groups' ingress rules."""
    via_acl = NOT_COMPILED
    if acl is not None and acl.crosses(source):
        via_acl = _acl_check(acl, True, proto, source, sel, replies=False)
        if not via_acl.allowed:
            return via_acl
        back = _acl_check(acl, False, proto, source, reply_sel, replies=True)
        if not back.allowed:
            return back
    if security is None:
        return via_acl
    ref = security.ingress_verdict(proto, source, sel)
    return Decision(False, f"ingress: {NO_RULE}") if ref is None else Decision(True, ref)
