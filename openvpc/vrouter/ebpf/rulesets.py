"""Security groups and network ACLs as ov_rules and ov_rule_chunks contents (layout.h): each
rule set, one direction of a port's groups or of a network ACL, laid out per remote prefix so
that one longest-prefix lookup yields every rule that can match an address, in the set's order
(chained over chunks when more than a chunk's worth apply). `Names`
keeps the numbers the maps use for rule sets and for what decided a flow stable across syncs."""

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from openvpc.model.policy import ACL_DEFAULT_RULE
from openvpc.model.rules import (
    ANY,
    NO_RULE,
    PROTO_TCP,
    PROTO_UDP,
    UNKNOWN,
    NetworkAclConfig,
    SgRule,
)
from openvpc.vrouter.ebpf import layout as L

# one compiled rule: what the program matches, and the remote prefix (network, length)
Compiled = tuple[L.Rule, int, int]
# map name (MAP_RULES, MAP_RULE_CHUNKS) -> key -> value
RuleImage = dict[str, dict[bytes, bytes]]
_FAST = (ANY, PROTO_TCP, PROTO_UDP)  # the protocols the fast path decides first packets of
_FIXED = ("", f"egress: {NO_RULE}", f"ingress: {NO_RULE}")  # BY_NONE, BY_*_NO_RULE


def _rule(proto: int, lo: int, hi: int, allow: bool, by: int) -> L.Rule:
    flags = L.RULE_ALLOW if allow else 0
    if proto == ANY:
        flags |= L.RULE_ANY_PROTO
    if lo == UNKNOWN:
        flags |= L.RULE_FRAGMENTS
    return L.Rule(0 if proto == ANY else proto, flags, max(lo, 0), hi, by)


def _plen(mask: int) -> int:
    return mask.bit_count()


def compile_set(
    rules: tuple[tuple[int, int, int, bool, int, int, int], ...],
) -> tuple[Compiled, ...]:
    """(proto, lo, hi, allow, by, net, mask) in evaluation order as compiled rules: only those
    that can match TCP or UDP, and none that an earlier rule of the same match hides (it can
    never be the first match)."""
    seen: set[tuple[int, int, int, int, int]] = set()
    out: list[Compiled] = []
    for proto, lo, hi, allow, by, net, mask in rules:
        if proto not in _FAST:
            continue
        match = (proto, lo, hi, net, mask)
        if match in seen:
            continue
        seen.add(match)
        out.append((_rule(proto, lo, hi, allow, by), net, _plen(mask)))
    return tuple(out)


# what a rule covers, per protocol the fast path decides: (TCP?, UDP?, first, last selector)
_Reach = tuple[bool, bool, int, int]


def _reach(rule: L.Rule) -> _Reach:
    lo = UNKNOWN if rule.flags & L.RULE_FRAGMENTS else rule.lo
    any_proto = bool(rule.flags & L.RULE_ANY_PROTO)
    return any_proto or rule.proto == PROTO_TCP, any_proto or rule.proto == PROTO_UDP, lo, rule.hi


def _covers(starts: list[int], ends: list[int], lo: int, hi: int) -> bool:
    i = bisect.bisect_right(starts, lo) - 1
    return i >= 0 and ends[i] >= hi


def _add(starts: list[int], ends: list[int], lo: int, hi: int) -> None:
    """lo..hi into sorted, disjoint, non-adjacent spans (starts[i]..ends[i])."""
    left = bisect.bisect_left(ends, lo - 1)  # the first span touching lo..hi
    right = bisect.bisect_right(starts, hi + 1)  # past the last one
    if left < right:
        lo, hi = min(lo, starts[left]), max(hi, ends[right - 1])
    starts[left:right] = [lo]
    ends[left:right] = [hi]


def live_rules(rules: list[L.Rule]) -> list[int]:
    """The indexes of the rules of one entry (in order) that can be the first match of a TCP
    or UDP packet: every rule of an entry matches every address that finds the entry, so a
    rule whose protocols and selectors the rules before it cover (together) never decides,
    and is left out."""
    tcp_starts: list[int] = []
    tcp_ends: list[int] = []
    udp_starts: list[int] = []
    udp_ends: list[int] = []
    whole = [UNKNOWN], [0xFFFF]
    out: list[int] = []
    for pos, rule in enumerate(rules):
        tcp, udp, lo, hi = _reach(rule)
        if (not tcp or _covers(tcp_starts, tcp_ends, lo, hi)) and (
            not udp or _covers(udp_starts, udp_ends, lo, hi)
        ):
            continue
        out.append(pos)
        if tcp:
            _add(tcp_starts, tcp_ends, lo, hi)
        if udp:
            _add(udp_starts, udp_ends, lo, hi)
        if (tcp_starts, tcp_ends) == whole == (udp_starts, udp_ends):
            break  # every packet matches a rule kept: none after can decide
    return out


def set_entries(set_id: int, compiled: tuple[Compiled, ...]) -> RuleImage:
    """ov_rules and ov_rule_chunks entries of one set: at each distinct prefix, every rule
    whose prefix contains it (pushed down from the shorter ones), in order, cut into chunks of
    MAX_RULES; where more than MAX_RULE_CHUNKS would be needed, only those that can decide
    there (`live_rules`: this costs, and only rescues what would not fit), and RULES_OVERFLOW
    if they still need more. Chunks after the first are numbered within the set, and
    identical ones (the same rules, the same rest) are shared."""
    at: dict[tuple[int, int], list[int]] = {}
    for pos, (_, net, plen) in enumerate(compiled):
        at.setdefault((net, plen), []).append(pos)
    bound = L.MAX_RULES * L.MAX_RULE_CHUNKS
    heads: dict[bytes, bytes] = {}
    chunks: dict[bytes, bytes] = {}
    numbers: dict[bytes, int] = {}  # a chunk's value -> its number
    for net, plen in at:
        positions: list[int] = []
        for shorter in range(plen + 1):
            mask = (0xFFFFFFFF << (32 - shorter)) & 0xFFFFFFFF
            positions.extend(at.get((net & mask, shorter), ()))
        positions.sort()
        key = L.rule_key(set_id, net.to_bytes(4, "big"), plen)
        if len(positions) > bound:
            kept = live_rules([compiled[i][0] for i in positions])
            positions = [positions[k] for k in kept]
        if len(positions) > bound:
            heads[key] = L.rule_list(None)
            continue
        rules = [compiled[i][0] for i in positions]
        cuts = [tuple(rules[i : i + L.MAX_RULES]) for i in range(0, len(rules), L.MAX_RULES)]
        following = 0
        for cut in reversed(cuts[1:]):  # the last first: each chunk names the one after it
            value = L.rule_list(cut, following)
            following = numbers.get(value, 0)
            if not following:
                following = numbers[value] = len(numbers) + 1
                chunks[L.rule_chunk_key(set_id, following)] = value
        heads[key] = L.rule_list(cuts[0] if cuts else (), following)
    return {L.MAP_RULES: heads, L.MAP_RULE_CHUNKS: chunks}


@dataclass(slots=True)
class Names:
    """The numbers the maps name things by, stable while the things live: `by` ids of what
    decided a flow (interned strings; BY_REPLIES marks an ACL entry judging replies) and rule
    set ids (by content, so that a set keeps its id, and its entries stay put, while ports
    come and go). The shell keeps one for the life of its maps."""

    _by: dict[str, int] = field(default_factory=lambda: {s: i for i, s in enumerate(_FIXED)})
    _names: list[str] = field(default_factory=lambda: list(_FIXED))
    _sets: dict[tuple[Compiled, ...], int] = field(default_factory=dict)
    _next_set: int = 1
    # compiled sets by their source (a rules tuple, or (ACL, inbound)), as of the last encode
    _cache: dict[object, tuple[int, RuleImage]] = field(default_factory=dict)
    _used: dict[object, tuple[int, RuleImage]] = field(default_factory=dict)

    def by(self, name: str) -> int:
        """The id of a `by` string, interned on first use."""
        found = self._by.get(name)
        if found is None:
            found = self._by[name] = len(self._names)
            self._names.append(name)
        return found

    def name(self, by: int) -> str:
        """The string of a `by` id read from a flow ("" for an id never given out)."""
        base = by & ~L.BY_REPLIES
        name = self._names[base] if base < len(self._names) else ""
        return f"{name}/replies" if by & L.BY_REPLIES and name else name

    def _set(self, source: object, make: Callable[[], tuple[Compiled, ...]]) -> int:
        known = self._used.get(source) or self._cache.get(source)
        if known is None:
            compiled = make()
            set_id = self._sets.get(compiled)
            if set_id is None:
                set_id = self._sets[compiled] = self._next_set
                self._next_set += 1
            known = (set_id, set_entries(set_id, compiled))
        self._used[source] = known
        return known[0]

    def sg_set(self, rules: tuple[SgRule, ...]) -> int:
        """The set id of one direction of a port's security group rules."""
        return self._set(
            rules,
            lambda: compile_set(
                tuple((r.proto, r.lo, r.hi, True, self.by(r.ref), r.net, r.mask) for r in rules)
            ),
        )

    def acl_set(self, acl: NetworkAclConfig, inbound: bool) -> int:
        """The set id of one direction of a network ACL, ending with its `*` deny."""
        name = "inbound" if inbound else "outbound"
        entries = acl.ingress if inbound else acl.egress

        def make() -> tuple[Compiled, ...]:
            default = (ANY, UNKNOWN, 0xFFFF, False, ACL_DEFAULT_RULE, 0, 0)
            rows = [(e.proto, e.lo, e.hi, e.allow, e.number, e.net, e.mask) for e in entries]
            return compile_set(
                tuple(
                    (proto, lo, hi, allow, self.by(f"{acl.id}/{name}/{number}"), net, mask)
                    for proto, lo, hi, allow, number, net, mask in (*rows, default)
                )
            )

        return self._set((acl, inbound), make)

    def begin(self) -> None:
        """A new encode starts: what an encode that failed half way used is not used."""
        self._used = {}

    def take_entries(self) -> RuleImage:
        """Every entry of the sets used since the last call (the ov_rules and ov_rule_chunks
        images); the sets no longer used are forgotten (their content gets a new id if it
        comes back)."""
        image: RuleImage = {L.MAP_RULES: {}, L.MAP_RULE_CHUNKS: {}}
        for _, entries in self._used.values():
            for name, found in entries.items():
                image[name].update(found)
        live = {set_id for set_id, _ in self._used.values()}
        self._sets = {c: i for c, i in self._sets.items() if i in live}
        self._cache, self._used = self._used, {}
        return image
