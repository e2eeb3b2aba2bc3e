"""Rule sets as ov_rules and ov_rule_chunks contents: the longest-prefix entry for an address
and the chunks it chains, read as the program reads them, find the rule model/rules.py's flat
evaluation finds (pushdown, order, fragments, ACL first match and `*` deny), for sets as large
as a port's five groups of 60 rules; identical sets share an id and their entries; more
applicable rules than the chunks hold mark the entry overflow; `by` ids read back as their
strings."""

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.model.rules import (
    ANY,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    UNKNOWN,
    AclEntry,
    NetworkAclConfig,
    PortSecurity,
    SgRule,
    acl_verdict,
    sg_verdict,
)
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.encode import encode_flow, encode_tables, rules_changed
from openvpc.vrouter.ebpf.rulesets import Names, RuleImage, compile_set, live_rules
from openvpc.vrouter.flow import Flow, FlowAction
from openvpc.vrouter.tables import Fabric, Tables, Vif, VifKind

FABRIC = Fabric(1, bytes([192, 168, 0, 1]), bytes(6), mtu=1500)


def lookup(image: RuleImage, set_id: int, addr: int) -> tuple[L.Rule, ...] | None:
    """What rules_first walks for (set, addr): the longest ov_rules entry containing it, then
    the chunks it chains; () on a miss; None for RULES_OVERFLOW."""
    best: tuple[int, bytes] | None = None
    for key, value in image[L.MAP_RULES].items():
        plen32, sid, net = L.RULE_KEY.struct.unpack(key)
        plen = plen32 - 32
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        if (
            sid == set_id
            and addr & mask == int.from_bytes(net)
            and (best is None or plen > best[0])
        ):
            best = (plen, value)
    if best is None:
        return ()
    rules, following = L.unpack_rule_list(best[1])
    if rules is None:
        return None
    for _ in range(L.MAX_RULE_CHUNKS - 1):  # the program walks no further
        if not following:
            break
        chunk, following = L.unpack_rule_list(
            image[L.MAP_RULE_CHUNKS][L.rule_chunk_key(set_id, following)]
        )
        assert chunk  # never an overflow mark, never empty
        rules += chunk
    assert not following, "a chain longer than the program walks"
    return rules


def first(rules: Sequence[L.Rule], proto: int, sel: int) -> L.Rule | None:
    """rules.h's rules_first over one entry (an independent reading of the flags)."""
    for r in rules:
        if not r.flags & L.RULE_ANY_PROTO and r.proto != proto:
            continue
        if (not r.flags & L.RULE_FRAGMENTS) if sel < 0 else not r.lo <= sel <= r.hi:
            continue
        return r
    return None


def _ports(proto: int, p: tuple[int, int]) -> tuple[int, int]:
    return (8, -1) if proto == PROTO_ICMP else p  # ICMP: a type, every code


PREFIXES = ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.4/32"]
ADDRS = [int(ipaddress.IPv4Address(a)) for a in ("10.1.2.3", "10.1.2.4", "10.1.9.9", "11.0.0.1")]
ports = st.sampled_from(
    [(-1, -1), (80, 80), (1024, 65535), (0, 65535), (53, 53), (1, 100), (0, 1023)]
)
sg_rule = st.builds(
    lambda proto, p, cidr, n: SgRule(proto, *_ports(proto, p), cidr, f"sg-{n}/sgr-{n}"),
    st.sampled_from([ANY, PROTO_TCP, PROTO_UDP, PROTO_ICMP]),
    ports,
    st.sampled_from(PREFIXES),
    st.integers(0, 5),
)
# small sets, and sets of a port's five groups of 60 rules at most, as AWS allows (over six
# prefixes, so that an address's entry often chains several chunks)
sg_rules = st.one_of(
    st.lists(sg_rule, max_size=12), st.lists(sg_rule, min_size=2 * 48, max_size=300)
)
sels = st.sampled_from([UNKNOWN, 0, 53, 80, 1000, 1024, 65535])
protos = st.sampled_from([PROTO_TCP, PROTO_UDP])


@settings(max_examples=100, deadline=None)
@given(sg_rules, protos, sels)
def test_the_longest_prefix_entry_holds_the_first_matching_rule(
    rules: list[SgRule], proto: int, sel: int
) -> None:
    names = Names()
    set_id = names.sg_set(tuple(rules))
    entries = names.take_entries()
    for addr in ADDRS:
        found = lookup(entries, set_id, addr)
        assert found is not None  # 300 rules always fit
        rule = first(found, proto, sel)
        want = sg_verdict(tuple(rules), proto, addr.to_bytes(4), sel)
        assert (names.name(rule.by) if rule else None) == want


acl_entries = st.lists(
    st.builds(
        lambda proto, p, cidr, allow: (proto, _ports(proto, p), cidr, allow),
        st.sampled_from([ANY, PROTO_TCP, PROTO_UDP, PROTO_ICMP]),
        ports,
        st.sampled_from(PREFIXES),
        st.booleans(),
    ),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(acl_entries, protos, sels)
def test_acl_entries_first_match_then_the_star_deny(
    rows: list[tuple[int, tuple[int, int], str, bool]], proto: int, sel: int
) -> None:
    entries = tuple(
        AclEntry(10 * (i + 1), pr, p[0], p[1], cidr, allow)
        for i, (pr, p, cidr, allow) in enumerate(rows)
    )
    acl = NetworkAclConfig("acl-9", "10.1.2.0/24", ingress=entries)
    names = Names()
    set_id = names.acl_set(acl, True)
    image = names.take_entries()
    for addr in ADDRS:
        found = lookup(image, set_id, addr)
        assert found  # the `*` deny on 0.0.0.0/0 is in every entry
        rule = first(found, proto, sel)
        assert rule is not None
        allowed, number = acl_verdict(entries, proto, addr.to_bytes(4), sel)
        assert (bool(rule.flags & L.RULE_ALLOW), names.name(rule.by)) == (
            allowed,
            f"acl-9/inbound/{number}",
        )


def test_rules_push_down_in_order() -> None:
    rules = (
        SgRule(PROTO_TCP, 22, 22, "10.1.2.3/32", "a"),
        SgRule(PROTO_UDP, 1, 100, "10.0.0.0/8", "b"),
        SgRule(ANY, -1, -1, "10.1.2.3/32", "c"),
        SgRule(PROTO_ICMP, -1, -1, "10.1.2.3/32", "icmp"),  # never a TCP/UDP match: left out
    )
    names = Names()
    set_id = names.sg_set(rules)
    entries = names.take_entries()
    assert len(entries[L.MAP_RULES]) == 2  # one per distinct prefix
    assert entries[L.MAP_RULE_CHUNKS] == {}  # each fits its first chunk
    host = lookup(entries, set_id, ADDRS[0])
    assert host is not None
    assert [names.name(r.by) for r in host] == ["a", "b", "c"]
    assert host[2].flags == L.RULE_ALLOW | L.RULE_ANY_PROTO | L.RULE_FRAGMENTS
    assert (host[0].proto, host[0].lo, host[0].hi) == (PROTO_TCP, 22, 22)
    assert (host[1].proto, host[1].lo, host[1].hi, host[1].flags) == (PROTO_UDP, 1, 100, 4)
    other = lookup(entries, set_id, ADDRS[2])
    assert other is not None and [names.name(r.by) for r in other] == ["b"]
    assert lookup(entries, set_id, ADDRS[3]) == ()  # no rule: the program denies


def test_a_rule_hidden_by_an_earlier_one_of_the_same_match_is_left_out() -> None:
    rules = (
        SgRule(PROTO_TCP, 80, 80, "0.0.0.0/0", "x"),
        SgRule(PROTO_TCP, 80, 80, "0.0.0.0/0", "y"),
    )
    names = Names()
    set_id = names.sg_set(rules)
    found = lookup(names.take_entries(), set_id, ADDRS[0])
    assert found is not None and [names.name(r.by) for r in found] == ["x"]


def _compiled(rules: tuple[SgRule, ...]) -> tuple[list[L.Rule], Names]:
    names = Names()
    compiled = compile_set(
        tuple((r.proto, r.lo, r.hi, True, names.by(r.ref), r.net, r.mask) for r in rules)
    )
    return [rule for rule, _, _ in compiled], names


def test_rules_the_earlier_ones_of_an_entry_cover_are_left_out() -> None:
    rules = (
        SgRule(PROTO_TCP, 1, 100, "0.0.0.0/0", "low"),
        SgRule(PROTO_TCP, 101, 200, "0.0.0.0/0", "mid"),
        SgRule(PROTO_TCP, 50, 150, "0.0.0.0/0", "covered"),  # low and mid together cover it
        SgRule(PROTO_TCP, 1, 65535, "0.0.0.0/0", "ports"),
        SgRule(PROTO_TCP, 0, 0, "0.0.0.0/0", "zero"),  # every port now, but no fragments
        SgRule(PROTO_TCP, -1, -1, "0.0.0.0/0", "tcp"),  # fragments too: kept
        SgRule(PROTO_TCP, 8, 8, "0.0.0.0/0", "eight"),
        SgRule(ANY, -1, -1, "0.0.0.0/0", "any"),  # UDP not covered yet: kept
        SgRule(PROTO_UDP, 53, 53, "0.0.0.0/0", "dns"),  # any covers it
        SgRule(ANY, -1, -1, "10.0.0.0/8", "after"),  # after everything: none can decide
    )
    compiled, names = _compiled(rules)
    kept = [names.name(compiled[i].by) for i in live_rules(compiled)]
    assert kept == ["low", "mid", "ports", "zero", "tcp", "any"]


SELECTORS = (UNKNOWN, 0, 1, 53, 54, 79, 80, 81, 100, 101, 1000, 1023, 1024, 65535)


# rules whose ranges meet and overlap often (two halves make every port, but no fragment)
entry_rule = st.builds(
    lambda proto, p: SgRule(proto, p[0], p[1], "0.0.0.0/0", f"r{proto}{p}"),
    st.sampled_from([ANY, PROTO_TCP, PROTO_UDP]),
    st.sampled_from([(-1, -1), (0, 1023), (1024, 65535), (80, 80), (1, 100), (53, 1023)]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(entry_rule, max_size=12))
def test_leaving_out_what_earlier_rules_cover_changes_no_first_match(rules: list[SgRule]) -> None:
    compiled, _ = _compiled(tuple(rules))  # all of them, as if each contained the entry
    kept = [compiled[i] for i in live_rules(compiled)]
    for proto in (PROTO_TCP, PROTO_UDP):
        for sel in SELECTORS:  # both sides of every bound the ports strategy has
            assert first(kept, proto, sel) == first(compiled, proto, sel)


def test_a_set_beyond_the_bound_only_by_rules_that_never_decide_fits() -> None:
    band = (SgRule(PROTO_TCP, 1, 1000, "0.0.0.0/0", "band"),)
    hidden = tuple(SgRule(PROTO_TCP, p, p, "10.1.2.3/32", f"h{p}") for p in range(1, 400))
    last = (SgRule(PROTO_UDP, 7, 7, "10.1.2.3/32", "udp"),)
    names = Names()
    set_id = names.sg_set(band + hidden + last)
    image = names.take_entries()
    found = lookup(image, set_id, ADDRS[0])
    assert found is not None and [names.name(r.by) for r in found] == ["band", "udp"]
    # under the bound, an entry keeps every rule (leaving some out costs, and gains nothing)
    names = Names()
    set_id = names.sg_set(band + hidden[:100] + last)
    found = lookup(names.take_entries(), set_id, ADDRS[0])
    assert found is not None and len(found) == 102


BOUND = L.MAX_RULES * L.MAX_RULE_CHUNKS


def test_applicable_rules_chain_over_chunks_up_to_the_bound_then_overflow() -> None:
    assert BOUND >= 300  # a port's five groups of 60 rules per direction
    wide = tuple(SgRule(PROTO_TCP, p, p, "0.0.0.0/0", f"w{p}") for p in range(1, BOUND))
    host = (SgRule(PROTO_TCP, 9999, 9999, "10.1.2.3/32", "h"),)
    names = Names()
    fits = names.sg_set(wide + host)
    over = names.sg_set(wide + host + (SgRule(PROTO_UDP, 1, 1, "10.1.2.3/32", "h2"),))
    image = names.take_entries()
    found = lookup(image, fits, ADDRS[0])
    assert found is not None and len(found) == BOUND
    assert names.name(found[-1].by) == "h"  # the last rule of the last chunk
    assert lookup(image, over, ADDRS[0]) is None  # one more applies: the slow path decides
    fine = lookup(image, over, ADDRS[1])
    assert fine is not None and len(fine) == BOUND - 1  # other addresses still fit
    heads = {k: v for k, v in image[L.MAP_RULES].items() if L.RULE_KEY.struct.unpack(k)[1] == over}
    assert L.unpack_rule_list(heads[L.rule_key(over, bytes([10, 1, 2, 3]), 32)]) == (None, 0)


def test_identical_tails_of_a_set_share_their_chunks() -> None:
    # two hosts whose own rule comes first: the pushed-down rest is the same for both
    hosts = tuple(SgRule(PROTO_UDP, 7, 7, f"10.1.2.{i}/32", f"h{i}") for i in (3, 4))
    wide = tuple(SgRule(PROTO_TCP, p, p, "0.0.0.0/0", f"w{p}") for p in range(1, 2 * L.MAX_RULES))
    names = Names()
    set_id = names.sg_set(hosts + wide)
    image = names.take_entries()
    assert len(image[L.MAP_RULES]) == 3  # 0.0.0.0/0 and the two hosts
    # 0.0.0.0/0: 95 rules, a second chunk of 47; each host: 96, a second chunk of the same
    # 48, which both share
    assert len(image[L.MAP_RULE_CHUNKS]) == 2
    for i, addr in ((3, ADDRS[0]), (4, ADDRS[1])):
        found = lookup(image, set_id, addr)
        assert found is not None and names.name(found[0].by) == f"h{i}"
        assert [names.name(r.by) for r in found[1:]] == [r.ref for r in wide]


def test_a_chunk_holds_at_most_max_rules() -> None:
    rule = L.Rule(PROTO_TCP, L.RULE_ALLOW, 1, 1, 3)
    assert L.unpack_rule_list(L.rule_list((rule,) * L.MAX_RULES, 5)) == (
        (rule,) * L.MAX_RULES,
        5,
    )
    with pytest.raises(ValueError):
        L.rule_list((rule,) * (L.MAX_RULES + 1))


def _tables(*securities: PortSecurity | None, acl: NetworkAclConfig | None = None) -> Tables:
    t = Tables(FABRIC)
    for i, security in enumerate(securities):
        t.add_vif(
            Vif(10 + i, VifKind.VIRTUAL, f"vm{i}", vrf=1, mac=bytes(6), ip=bytes([10, 1, 2, i]),
                prefix_len=24, security=security, acl=acl)
        )  # fmt: skip
    return t


def test_identical_sets_share_an_id_and_keep_it_across_encodes() -> None:
    web = PortSecurity(ingress=(SgRule(PROTO_TCP, 80, 80, "0.0.0.0/0", "sg-1/sgr-1"),))
    same = PortSecurity(ingress=(SgRule(PROTO_TCP, 80, 80, "0.0.0.0/0", "sg-1/sgr-1"),))
    ssh = PortSecurity(ingress=(SgRule(PROTO_TCP, 22, 22, "0.0.0.0/0", "sg-2/sgr-1"),))
    acl = NetworkAclConfig("acl-1", "10.1.2.0/24")
    names = Names()
    image = encode_tables(_tables(web, same, None, acl=acl), {}, 0, 0, names)
    vifs = [L.Vif.unpack(image[L.MAP_VIFS][L.u32(10 + i)]) for i in range(3)]
    assert vifs[0].sg_ingress == vifs[1].sg_ingress != 0
    assert vifs[0].sg_egress == vifs[1].sg_egress != vifs[0].sg_ingress  # empty: deny all
    assert (vifs[2].sg_ingress, vifs[2].sg_egress) == (0, 0)  # nothing compiled: allow
    assert vifs[2].acl_inbound and vifs[2].acl_outbound
    assert (vifs[2].acl_net, vifs[2].acl_mask) == (bytes([10, 1, 2, 0]), bytes([255, 255, 255, 0]))
    # web's ingress, the ACL's two directions (the empty egress set has no entry)
    assert len(image[L.MAP_RULES]) == 3 and image[L.MAP_RULE_CHUNKS] == {}
    again = encode_tables(_tables(ssh, web, acl=acl), {}, 0, 0, names)
    moved = [L.Vif.unpack(again[L.MAP_VIFS][L.u32(10 + i)]) for i in range(2)]
    assert moved[1].sg_ingress == vifs[0].sg_ingress  # web kept its id (and its entries)
    assert moved[0].sg_ingress not in (0, vifs[0].sg_ingress)
    kept = {
        k: v
        for k, v in image[L.MAP_RULES].items()
        if L.RULE_KEY.struct.unpack(k)[1] == vifs[0].sg_ingress
    }
    assert kept.items() <= again[L.MAP_RULES].items()


def test_by_ids_round_trip() -> None:
    names = Names()
    assert names.name(L.BY_NONE) == ""
    assert names.name(L.BY_EGRESS_NO_RULE) == "egress: no security group rule"
    assert names.name(L.BY_INGRESS_NO_RULE) == "ingress: no security group rule"
    acl = NetworkAclConfig("acl-2", "10.1.2.0/24")
    names.acl_set(acl, True)
    by = names.by("acl-2/inbound/32767")
    assert names.name(by | L.BY_REPLIES) == "acl-2/inbound/32767/replies"
    assert names.name(12345) == ""  # never given out
    key = (1, PROTO_TCP, bytes(4), bytes(4), 1, 2)
    entry = encode_flow(Flow(key, FlowAction.DROP, 0, 0, by="sg-9/sgr-9"), names)
    assert entry is not None
    assert names.name(L.Flow.unpack(entry[1]).by) == "sg-9/sgr-9"


def test_the_vrfs_of_ports_whose_rules_changed() -> None:
    web = PortSecurity(ingress=(SgRule(PROTO_TCP, 80, 80, "0.0.0.0/0", "sg-1/sgr-1"),))
    acl = NetworkAclConfig("acl-1", "10.1.2.0/24")
    names = Names()
    before = encode_tables(_tables(web, None, acl=acl), {}, 0, 0, names)[L.MAP_VIFS]
    same = encode_tables(_tables(web, None, acl=acl), {}, 0, 0, names)[L.MAP_VIFS]
    assert rules_changed(before, same) == set()
    changed = _tables(PortSecurity(), None, acl=acl)
    after = encode_tables(changed, {}, 0, 0, names)[L.MAP_VIFS]
    assert rules_changed(before, after) == {1}
    other_acl = NetworkAclConfig("acl-1", "10.1.0.0/16")  # the same entries, another subnet
    after = encode_tables(_tables(web, None, acl=other_acl), {}, 0, 0, names)[L.MAP_VIFS]
    assert rules_changed(before, after) == {1}
    # (a set unused for one encode gets a new id when it comes back: a change, as it was)
    before = encode_tables(_tables(web, None, acl=acl), {}, 0, 0, names)[L.MAP_VIFS]
    fewer = _tables(web, acl=acl)  # a port that goes is not a port whose rules changed
    assert rules_changed(before, encode_tables(fewer, {}, 0, 0, names)[L.MAP_VIFS]) == set()
    moved = _tables(web, None, acl=acl)
    moved.vifs[10].mtu = 1400  # another change of the port: its rules stay
    assert rules_changed(before, encode_tables(moved, {}, 0, 0, names)[L.MAP_VIFS]) == set()
