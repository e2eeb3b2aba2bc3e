"""Compiled security groups and network ACLs: their evaluation against an oracle written from
the store's rules, NACL order, port and ICMP edges, fragments, and bad input."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.compiler.policy import compile_acl, protocol_number
from openvpc.model.policy import (
    ACL_DEFAULT_RULE,
    NaclAction,
    NaclEntry,
    NetworkAcl,
    SecurityGroupRule,
)
from openvpc.model.rules import (
    UNKNOWN,
    AclEntry,
    Decision,
    NetworkAclConfig,
    PortSecurity,
    SgRule,
    acl_verdict,
    entering,
    leaving,
    reply_selector,
    selector,
    sg_verdict,
)

TCP, UDP, ICMP, GRE = 6, 17, 1, 47
EDGE_PORTS = (0, 1, 22, 80, 1023, 1024, 32767, 32768, 65534, 65535)


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


# -- the oracle: straight from the store's fields, no selectors --------------------------
def _in(remote: str, cidr: str) -> bool:
    return ipaddress.IPv4Address(remote) in ipaddress.IPv4Network(cidr)


def _ports_match(lo: int, hi: int, dport: int, fragment: bool) -> bool:
    if fragment:  # no ports in a fragment: only a range of every port matches
        return (lo, hi) == (0, 65535)
    return lo <= dport <= hi


def _icmp_match(t: int, c: int, packet_type: int, packet_code: int, fragment: bool) -> bool:
    if t == -1:
        return True
    return not fragment and packet_type == t and c in (-1, packet_code)


def oracle_sg(
    rule: SecurityGroupRule,
    proto: int,
    remote: str,
    dport: int,
    icmp: tuple[int, int],
    fragment: bool,
) -> bool:
    if not _in(remote, rule.cidr):
        return False
    if rule.protocol == "-1":
        return True
    if protocol_number(rule.protocol) != proto:
        return False
    if rule.protocol in ("tcp", "udp"):
        return _ports_match(rule.from_port, rule.to_port, dport, fragment)
    if rule.protocol == "icmp":
        return _icmp_match(rule.from_port, rule.to_port, *icmp, fragment)
    return True


def oracle_acl(
    entries: list[NaclEntry],
    proto: int,
    remote: str,
    dport: int,
    icmp: tuple[int, int],
    fragment: bool,
) -> tuple[bool, int]:
    for e in sorted(entries, key=lambda e: e.rule_number):
        if not _in(remote, e.cidr):
            continue
        if e.protocol != "-1":
            if int(e.protocol) != proto:
                continue
            if e.protocol in ("6", "17"):
                if not _ports_match(e.from_port, e.to_port, dport, fragment):
                    continue
            elif e.protocol == "1" and not _icmp_match(e.icmp_type, e.icmp_code, *icmp, fragment):
                continue
        return e.action == "allow", e.rule_number
    return False, ACL_DEFAULT_RULE


# -- strategies ------------------------------------------------------------------------
addresses = st.builds(
    lambda a, b: f"10.0.{a}.{b}", st.integers(0, 2), st.sampled_from((0, 1, 5, 6, 200, 255))
)
prefixes = st.builds(
    lambda a, plen: str(ipaddress.IPv4Network(f"{a}/{plen}", strict=False)),
    addresses,
    st.sampled_from((0, 8, 16, 23, 24, 30, 31, 32)),
)
ports = st.one_of(st.sampled_from(EDGE_PORTS), st.integers(0, 65535))
port_ranges = st.tuples(ports, ports).map(sorted)
icmp_types = st.sampled_from((0, 3, 8, 11))
icmp_codes = st.sampled_from((0, 1, 4))


@st.composite
def sg_rules(draw: st.DrawFn, n: int) -> SecurityGroupRule:
    protocol = draw(st.sampled_from(("-1", "tcp", "udp", "icmp", "47")))
    lo, hi = -1, -1
    if protocol in ("tcp", "udp"):
        lo, hi = draw(port_ranges)
    elif protocol == "icmp":
        lo = draw(st.one_of(st.just(-1), icmp_types))
        hi = -1 if lo == -1 else draw(st.one_of(st.just(-1), icmp_codes))
    return SecurityGroupRule(f"sgr-{n}", False, protocol, lo, hi, cidr=draw(prefixes))


@st.composite
def nacl_entries(draw: st.DrawFn) -> list[NaclEntry]:
    numbers = draw(st.lists(st.integers(1, ACL_DEFAULT_RULE - 1), max_size=8, unique=True))
    entries = []
    for number in numbers:
        protocol = draw(st.sampled_from(("-1", "6", "17", "1", "47")))
        action: NaclAction = draw(st.sampled_from(("allow", "deny")))
        entry = NaclEntry(number, False, protocol, action, draw(prefixes))
        if protocol in ("6", "17"):
            lo, hi = draw(port_ranges)
            entry = NaclEntry(number, False, protocol, action, entry.cidr, lo, hi)
        elif protocol == "1":
            t = draw(st.one_of(st.just(-1), icmp_types))
            c = -1 if t == -1 else draw(st.one_of(st.just(-1), icmp_codes))
            entry = NaclEntry(number, False, protocol, action, entry.cidr, icmp_type=t, icmp_code=c)
        entries.append(entry)
    entries.append(NaclEntry(ACL_DEFAULT_RULE, False, "-1", "deny", "0.0.0.0/0"))
    return entries


packets = st.tuples(
    st.sampled_from((TCP, UDP, ICMP, GRE)),
    addresses,
    ports,
    st.tuples(icmp_types, icmp_codes),
    st.booleans(),
)


def _compiled(rules: list[SecurityGroupRule]) -> tuple[SgRule, ...]:
    return tuple(
        SgRule(protocol_number(r.protocol), r.from_port, r.to_port, r.cidr, f"sg-1/{r.id}")
        for r in rules
    )


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 12).flatmap(lambda n: st.tuples(*(sg_rules(i) for i in range(n)))),
    st.lists(packets, min_size=1, max_size=8),
)
def test_sg_agrees_with_the_oracle(
    rules: tuple[SecurityGroupRule, ...],
    probes: list[tuple[int, str, int, tuple[int, int], bool]],
) -> None:
    compiled = _compiled(list(rules))
    port = PortSecurity(compiled, compiled)
    for proto, remote, dport, icmp, fragment in probes:
        sel = selector(proto, dport, *icmp, fragment)
        ref = sg_verdict(compiled, proto, ip(remote), sel)
        assert port.ingress_verdict(proto, ip(remote), sel) == ref
        assert port.egress_verdict(proto, ip(remote), sel) == ref
        matching = {
            f"sg-1/{r.id}" for r in rules if oracle_sg(r, proto, remote, dport, icmp, fragment)
        }
        assert (ref is not None) == bool(matching), (proto, remote, dport, icmp, fragment)
        assert ref is None or ref in matching


@settings(max_examples=300, deadline=None)
@given(nacl_entries(), st.lists(packets, min_size=1, max_size=8))
def test_acl_agrees_with_the_oracle(
    entries: list[NaclEntry], probes: list[tuple[int, str, int, tuple[int, int], bool]]
) -> None:
    acl = compile_acl(NetworkAcl("acl-1", "red", "vpc-1", entries=tuple(entries)), "10.0.1.0/24")
    assert acl.ingress[-1].number == ACL_DEFAULT_RULE
    for proto, remote, dport, icmp, fragment in probes:
        sel = selector(proto, dport, *icmp, fragment)
        got = acl_verdict(acl.ingress, proto, ip(remote), sel)
        assert got == oracle_acl(entries, proto, remote, dport, icmp, fragment)


host_rules = st.builds(
    lambda n, proto, addr, ports: SgRule(proto, ports[0], ports[1], f"{addr}/32", f"sg-1/{n}"),
    st.integers(0, 9),
    st.sampled_from((-1, TCP, UDP)),
    addresses,
    port_ranges,
)
wide_rules = st.builds(
    lambda n, proto, cidr, ports: SgRule(proto, ports[0], ports[1], cidr, f"sg-2/{n}"),
    st.integers(0, 9),
    st.sampled_from((-1, TCP, UDP)),
    prefixes,
    port_ranges,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(host_rules, wide_rules), max_size=30),
    st.lists(st.tuples(st.sampled_from((TCP, UDP, GRE)), addresses, ports), max_size=10),
)
def test_the_indexed_table_finds_the_first_matching_rule(
    rules: list[SgRule], probes: list[tuple[int, str, int]]
) -> None:
    """Expanded groups are mostly /32 rules: the index must not change which rule answers."""
    port = PortSecurity(tuple(rules))
    for proto, remote, dport in probes:
        linear = sg_verdict(tuple(rules), proto, ip(remote), dport)
        assert port.ingress_verdict(proto, ip(remote), dport) == linear


# -- network ACL order -----------------------------------------------------------------
def _acl(*entries: tuple[int, str, bool]) -> tuple[AclEntry, ...]:
    """(number, "tcp from-to" or "all", allow) entries from anywhere."""
    out = []
    for number, what, allow in entries:
        if what == "all":
            out.append(AclEntry(number, -1, -1, -1, "0.0.0.0/0", allow))
        else:
            lo, hi = (int(p) for p in what.split("-"))
            out.append(AclEntry(number, TCP, lo, hi, "0.0.0.0/0", allow))
    return tuple(out)


def test_a_deny_numbered_before_an_allow_wins() -> None:
    entries = _acl((90, "22-22", False), (100, "all", True))
    assert acl_verdict(entries, TCP, ip("192.0.2.1"), 22) == (False, 90)
    assert acl_verdict(entries, TCP, ip("192.0.2.1"), 23) == (True, 100)
    swapped = _acl((90, "all", True), (100, "22-22", False))
    assert acl_verdict(swapped, TCP, ip("192.0.2.1"), 22) == (True, 90)


def test_no_match_is_the_star_deny() -> None:
    assert acl_verdict(_acl((100, "80-80", True)), TCP, ip("10.0.0.9"), 81) == (False, 32767)
    assert acl_verdict((), UDP, ip("10.0.0.9"), 53) == (False, 32767)


def test_ephemeral_range_edges() -> None:
    out = _acl((100, "1024-65535", True))
    assert acl_verdict(out, TCP, ip("10.0.2.5"), 1023) == (False, 32767)
    assert acl_verdict(out, TCP, ip("10.0.2.5"), 1024) == (True, 100)
    assert acl_verdict(out, TCP, ip("10.0.2.5"), 65535) == (True, 100)
    assert acl_verdict(out, UDP, ip("10.0.2.5"), 2000) == (False, 32767)


def test_an_outbound_deny_on_ephemeral_ports_breaks_replies() -> None:
    """An inbound connection to port 80 from port 40000: the reply leaves on port 40000."""
    inbound = _acl((100, "80-80", True))
    outbound = _acl((50, "32768-65535", False), (100, "all", True))
    forward = selector(TCP, 80, -1, -1, False)
    reply = reply_selector(TCP, 40000, -1, -1, False)
    assert acl_verdict(inbound, TCP, ip("10.0.2.5"), forward) == (True, 100)
    assert acl_verdict(outbound, TCP, ip("10.0.2.5"), reply) == (False, 50)


def test_the_subnet_boundary() -> None:
    acl = NetworkAclConfig("acl-1", "10.0.1.0/24")
    assert not acl.crosses(ip("10.0.1.200"))
    assert acl.crosses(ip("10.0.2.1")) and acl.crosses(ip("10.0.0.255"))
    assert acl.ingress[-1].number == acl.egress[-1].number == ACL_DEFAULT_RULE


# -- ICMP and protocols ----------------------------------------------------------------
def test_icmp_types_and_codes() -> None:
    echo = SgRule(ICMP, 8, -1, "0.0.0.0/0", "sg-1/sgr-echo")
    frag_needed = SgRule(ICMP, 3, 4, "0.0.0.0/0", "sg-1/sgr-pmtu")
    rules = (echo, frag_needed)

    def verdict(t: int, c: int) -> str | None:
        return sg_verdict(rules, ICMP, ip("10.0.0.1"), selector(ICMP, 4242, t, c, False))

    assert verdict(8, 0) == "sg-1/sgr-echo"
    assert verdict(8, 1) == "sg-1/sgr-echo"  # code -1: every code of the type
    assert verdict(0, 0) is None  # an echo reply is the flow table's, not a rule's
    assert verdict(3, 4) == "sg-1/sgr-pmtu"
    assert verdict(3, 3) is None
    assert sg_verdict(rules, TCP, ip("10.0.0.1"), 8 << 8) is None  # not ICMP


def test_icmp_reply_directions() -> None:
    assert reply_selector(ICMP, 77, 8, 0, False) == selector(ICMP, 77, 0, 0, False)
    assert reply_selector(ICMP, 77, 0, 0, False) == selector(ICMP, 77, 8, 0, False)
    assert reply_selector(ICMP, 3, 3, 1, False) == selector(ICMP, 3, 3, 1, False)
    assert reply_selector(UDP, 5353, -1, -1, False) == 5353


def test_all_protocols_and_fragments() -> None:
    everything = SgRule(-1, -1, -1, "10.0.0.0/8", "sg-1/sgr-all")
    web = SgRule(TCP, 80, 80, "0.0.0.0/0", "sg-1/sgr-web")
    all_tcp = SgRule(TCP, 0, 65535, "0.0.0.0/0", "sg-1/sgr-tcp")
    gre = SgRule(GRE, -1, -1, "0.0.0.0/0", "sg-1/sgr-gre")
    frag = selector(TCP, 0, -1, -1, True)
    assert frag == UNKNOWN
    assert sg_verdict((everything,), GRE, ip("10.1.2.3"), 0) == "sg-1/sgr-all"
    assert sg_verdict((everything,), TCP, ip("10.1.2.3"), frag) == "sg-1/sgr-all"
    assert sg_verdict((everything,), TCP, ip("11.1.2.3"), 80) is None
    assert sg_verdict((web,), TCP, ip("11.1.2.3"), frag) is None
    assert sg_verdict((web, all_tcp), TCP, ip("11.1.2.3"), frag) == "sg-1/sgr-tcp"
    assert sg_verdict((gre,), GRE, ip("11.1.2.3"), selector(GRE, 0, -1, -1, True)) == "sg-1/sgr-gre"
    assert sg_verdict((gre,), UDP, ip("11.1.2.3"), 0) is None
    assert sg_verdict((), TCP, ip("10.0.0.1"), 22) is None  # no rule: deny


@pytest.mark.parametrize(
    "make",
    [
        lambda: SgRule(TCP, 80, 79, "0.0.0.0/0", "x"),
        lambda: SgRule(TCP, 0, 65536, "0.0.0.0/0", "x"),
        lambda: SgRule(ICMP, -1, 3, "0.0.0.0/0", "x"),
        lambda: SgRule(ICMP, 256, 0, "0.0.0.0/0", "x"),
        lambda: SgRule(300, -1, -1, "0.0.0.0/0", "x"),
        lambda: SgRule(TCP, 80, 80, "10.0.0.300/32", "x"),
        lambda: AclEntry(0, TCP, 80, 80, "0.0.0.0/0", True),
        lambda: AclEntry(32768, TCP, 80, 80, "0.0.0.0/0", True),
        lambda: NetworkAclConfig(
            "acl-1", "10.0.1.0/24", _acl((200, "all", True), (100, "all", True))
        ),
        lambda: NetworkAclConfig(
            "acl-1", "10.0.1.0/24", _acl((100, "all", True), (100, "all", True))
        ),
    ],
)
def test_bad_input_is_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_prefixes_are_numbers() -> None:
    rule = SgRule(TCP, 22, 22, "10.0.1.7/24", "x")  # host bits are ignored
    assert (rule.net, rule.mask) == (0x0A000100, 0xFFFFFF00)
    assert (rule.lo, rule.hi) == (22, 22)


# -- the two sides of a new flow ---------------------------------------------------------
WEB_ONLY = PortSecurity(
    ingress=(SgRule(TCP, 80, 80, "0.0.0.0/0", "sg-w/sgr-80"),),
    egress=(SgRule(-1, -1, -1, "0.0.0.0/0", "sg-w/sgr-out"),),
)
SUBNET_ACL = NetworkAclConfig(
    "acl-9",
    "10.0.1.0/24",
    ingress=(
        AclEntry(100, TCP, 22, 22, "0.0.0.0/0", False),
        AclEntry(200, TCP, 0, 65535, "0.0.0.0/0", True),
        AclEntry(32767, -1, -1, -1, "0.0.0.0/0", False),
    ),
    egress=(
        AclEntry(50, TCP, 32768, 65535, "0.0.0.0/0", False),
        AclEntry(100, -1, -1, -1, "0.0.0.0/0", True),
        AclEntry(32767, -1, -1, -1, "0.0.0.0/0", False),
    ),
)


def _sels(dport: int, sport: int) -> tuple[int, int]:
    return selector(TCP, dport, -1, -1, False), reply_selector(TCP, sport, -1, -1, False)


def test_nothing_compiled_allows_everything() -> None:
    assert leaving(None, None, TCP, ip("192.0.2.1"), *_sels(22, 40000)) == Decision(True, "")
    assert entering(None, None, GRE, ip("192.0.2.1"), 0, 0) == Decision(True, "")


def test_entering_checks_the_acl_both_ways_then_the_groups() -> None:
    outside, inside = ip("10.0.2.7"), ip("10.0.1.9")
    assert entering(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(80, 1500)) == Decision(
        True, "sg-w/sgr-80"
    )
    assert entering(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(22, 1500)) == Decision(
        False, "acl-9/inbound/100"
    )
    # the reply from port 80 to the client's ephemeral 40000 would leave through rule 50
    assert entering(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(80, 40000)) == Decision(
        False, "acl-9/outbound/50/replies"
    )
    assert entering(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(81, 1500)) == Decision(
        False, "ingress: no security group rule"
    )
    # inside the subnet the ACL is not consulted
    assert entering(WEB_ONLY, SUBNET_ACL, TCP, inside, *_sels(80, 40000)) == Decision(
        True, "sg-w/sgr-80"
    )
    assert entering(None, SUBNET_ACL, TCP, outside, *_sels(80, 1500)) == Decision(
        True, "acl-9/inbound/200"
    )


def test_leaving_checks_the_groups_then_the_acl_both_ways() -> None:
    outside, inside = ip("198.51.100.4"), ip("10.0.1.200")
    no_egress = PortSecurity(ingress=WEB_ONLY.ingress)
    assert leaving(no_egress, SUBNET_ACL, TCP, inside, *_sels(443, 40000)) == Decision(
        False, "egress: no security group rule"
    )
    assert leaving(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(443, 1500)) == Decision(
        True, "sg-w/sgr-out"
    )
    assert leaving(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(40000, 1500)) == Decision(
        False, "acl-9/outbound/50"
    )
    # the reply comes back to port 22 from outside: inbound rule 100 denies it
    assert leaving(WEB_ONLY, SUBNET_ACL, TCP, outside, *_sels(443, 22)) == Decision(
        False, "acl-9/inbound/100/replies"
    )
    assert leaving(WEB_ONLY, SUBNET_ACL, TCP, inside, *_sels(40000, 22)) == Decision(
        True, "sg-w/sgr-out"
    )
    assert leaving(None, SUBNET_ACL, TCP, outside, *_sels(443, 1500)) == Decision(
        True, "acl-9/outbound/100"
    )
