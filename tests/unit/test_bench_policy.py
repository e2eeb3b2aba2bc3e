"""The policy benchmark's pure parts: its security groups and network ACL stay within AWS's
quotas, the service accepts them, none but the last rules admit the benchmark's flows (checked
by a matcher written here, not the product's); the ratios, table and RESULTS.md section; the
lab topology it writes."""

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from service_setup import open_service

from bench import cli, policy, policy_report
from bench.overlay_measure import summary
from bench.policy_lab import POLICIES, lab_name, topology, traffic
from bench.policy_rules import (
    ACL_ENTRIES,
    GROUPS,
    MEMBERS,
    AclEntry,
    Rule,
    acl_entries,
    admitting,
    group_rules,
)
from openvpc.lab.topology import parse_topology
from openvpc.service.acls import ENTRIES_PER_DIRECTION, EntrySpec
from openvpc.service.security import GROUPS_PER_INTERFACE, RULES_PER_DIRECTION, RuleSpec

T = traffic("groups")
CLIENT = ipaddress.ip_network(T.client_subnet)
SERVER = ipaddress.ip_network(T.server_subnet)
EPHEMERAL = (32768, 60999)  # Linux's default local port range: the client's source ports
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def matches(protocol: str, lo: int, hi: int, cidr: str, proto: int, port: int, addr: str) -> bool:
    """Whether a rule or entry of (protocol, from, to, cidr) matches a packet of `proto` to
    `port` (ICMP: the type; codes of the benchmark's echoes are 0) with remote `addr`."""
    if protocol != "-1" and PROTO[protocol] != proto:
        return False
    if ipaddress.ip_address(addr) not in ipaddress.ip_network(cidr):
        return False
    return protocol == "-1" or lo == -1 or lo <= port <= (lo if protocol == "icmp" else hi)


def rule_matches(r: Rule, proto: int, port: int, addr: str, members: set[str]) -> bool:
    if r.group:
        return r.group == MEMBERS and any(
            matches(r.protocol, r.from_port, r.to_port, f"{m}/32", proto, port, addr)
            for m in members
        )
    return matches(r.protocol, r.from_port, r.to_port, r.cidr, proto, port, addr)


def test_the_groups_and_the_acl_stay_within_aws_quotas() -> None:
    assert GROUPS <= GROUPS_PER_INTERFACE
    for egress in (False, True):
        every = [r for g in range(GROUPS) for r in group_rules(T, g, egress)]
        for g in range(GROUPS):
            assert len(group_rules(T, g, egress)) <= RULES_PER_DIRECTION
        assert len(set(every)) == len(every)  # distinct: the union is as long as the sum
    entries = acl_entries(T)
    assert len(entries) == ACL_ENTRIES <= ENTRIES_PER_DIRECTION
    numbers = [e.number for e in entries]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= 32766 for n in numbers)


def test_the_service_accepts_every_group_rule_and_acl_entry(tmp_path: Path) -> None:
    svc = open_service(tmp_path / "store.db")
    try:
        vpc = svc.create_vpc("red", "groups", T.vpc_cidr)
        gids = [svc.create_security_group("red", vpc.id, f"tier{g}", "t").id for g in range(5)]
        for g, gid in enumerate(gids):
            for egress in (False, True):
                specs = [
                    RuleSpec(
                        r.protocol,
                        r.from_port,
                        r.to_port,
                        cidr=r.cidr,
                        group=gids[0] if r.group else "",
                    )
                    for r in group_rules(T, g, egress)
                ]
                assert len(svc.authorize_security_group("red", gid, egress, specs)) == len(specs)
        acl = svc.create_network_acl("red", vpc.id)
        for egress in (False, True):
            for e in acl_entries(T):
                params = e.parameters(acl.id, egress)
                ports, icmp = params.get("PortRange"), params.get("IcmpTypeCode")
                spec = EntrySpec(
                    e.number,
                    egress,
                    str(params["Protocol"]),
                    str(params["RuleAction"]),
                    e.cidr,
                    ports=(e.from_port, e.to_port) if ports else None,
                    icmp=(e.from_port, e.to_port) if icmp else None,
                )
                svc.create_network_acl_entry("red", acl.id, spec)
    finally:
        svc.store.close()


@given(
    client=st.integers(2, 254),
    server=st.integers(2, 254),
    port=st.sampled_from([T.ports[0], T.ports[1]]),
)
def test_only_the_last_rules_admit_the_benchmarks_flows(
    client: int, server: int, port: int
) -> None:
    src, dst = str(CLIENT.network_address + client), str(SERVER.network_address + server)
    members = {src, dst}
    for egress, remote in ((True, dst), (False, src)):
        for g in range(GROUPS):
            rules = group_rules(T, g, egress)
            hits = [
                i
                for i, r in enumerate(rules)
                for proto, sel in ((6, port), (1, 8))
                if rule_matches(r, proto, sel, remote, members)
            ]
            last = len(rules) - len(admitting(T, egress))
            assert hits == ([last, last + 1] if g == GROUPS - 1 else [])


def first_entry(entries: list[AclEntry], proto: int, port: int, addr: str) -> AclEntry:
    return next(
        e for e in entries if matches(e.protocol, e.from_port, e.to_port, e.cidr, proto, port, addr)
    )


@given(client=st.integers(2, 254), source_port=st.integers(*EPHEMERAL))
def test_the_acl_lets_the_flows_in_and_their_replies_out_only_by_its_last_entry(
    client: int, source_port: int
) -> None:
    src = str(CLIENT.network_address + client)
    entries = acl_entries(T)
    last = entries[-1]
    assert last.allow and last.number == max(e.number for e in entries)
    for proto, sel in ((6, T.ports[0]), (6, T.ports[1]), (1, 8)):  # inbound: the flows
        assert first_entry(entries, proto, sel, src) == last
    for proto, sel in ((6, source_port), (1, 0)):  # outbound: replies, echo replies
        assert first_entry(entries, proto, sel, src) == last
    # from elsewhere, the same flows meet no entry: the "*" rule denies them
    assert not any(
        matches(e.protocol, e.from_port, e.to_port, e.cidr, 6, T.ports[1], "192.0.2.7")
        for e in entries
    )


def test_a_group_reference_names_the_members_group() -> None:
    refs = [r for g in range(GROUPS) for r in group_rules(T, g, False) if r.group]
    assert refs and all(r.group == MEMBERS for r in refs)
    perm = refs[0].permission("sg-123")
    assert perm["UserIdGroupPairs"] == [{"GroupId": "sg-123"}] and "IpRanges" not in perm


# -- the report -------------------------------------------------------------------------------
def _raw() -> dict[str, dict[str, list[Any]]]:
    def path(tcp: list[float | None], conns: list[float | None]) -> dict[str, list[Any]]:
        return {"tcp1_gbps": tcp, "conns_per_s": conns, "conn_failures": [0.0, 1.0]}

    return {
        "kernel": path([10.0, 5.0], [1000.0, 1000.0]),
        "python-open": path([1.0, 0.5], [400.0, 200.0]),
        "python-groups": path([0.5, None], [100.0, 100.0]),
    }


def test_ratios_are_per_round_and_skip_failed_rounds() -> None:
    s = policy_report.summarize(_raw())
    groups = s["python-groups"]
    assert groups["tcp1_gbps"]["median"] == 0.5 and groups["tcp1_gbps"]["n"] == 1.0
    assert groups["tcp1_gbps"]["x_open"] == pytest.approx(0.5)  # round 2 is missing
    assert groups["conns_per_s"]["x_open"] == pytest.approx((0.25 + 0.5) / 2)
    assert groups["conns_per_s"]["x_kernel"] == pytest.approx(0.1)
    assert "x_open" not in s["python-open"]["tcp1_gbps"]  # never against itself
    assert s["python-open"]["tcp1_gbps"]["x_kernel"] == pytest.approx(0.1)
    assert s["kernel"]["tcp1_gbps"].keys() == summary([1.0]).keys()
    assert groups["conn_failures"] == 1.0


def test_a_round_takes_what_the_overlay_sample_measured() -> None:
    got = {"tcp1_gbps": [2.0], "rtt_ms": [[0.1, 0.3]], "errors": ["conns: refused"]}
    values = policy_report.round_values(got)
    assert values["tcp1_gbps"] == 2.0 and values["conns_per_s"] is None
    assert values["rtt_p50_ms"] == pytest.approx(0.2)
    raw: dict[str, list[Any]] = {}
    policy_report.add_round(raw, values)
    policy_report.add_round(raw, values)
    assert raw["conns_per_s"] == [None, None] and raw["errors"] == ["conns: refused"] * 2


def _report() -> dict[str, Any]:
    return {
        "date": "2026-11-30T22:00:00+00:00",
        "duration_s": 60,
        "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.0, 0.6, 0.4]},
        "command": "python -m bench.policy",
        "machine": {"uname": "Linux", "cpu": "cpu", "nproc": "2", "python": "CPython"},
        "seconds": 1.0,
        "samples": 2,
        "pings": 10,
        "policy": {"groups": 5, "ingress_rules": 290, "egress_rules": 100, "acl_entries": 40},
        "paths": policy_report.summarize(_raw()),
        "policy_check": {"port": 5301, "paths": {"python-open": "refused"}},
    }


def test_the_table_shows_ratios_to_open_and_kernel() -> None:
    rows = {
        r.split(" | ")[0][2:]: r.split(" | ") for r in policy_report.table(_report()).splitlines()
    }
    assert rows["python-groups"][1:4] == ["0.50", "0.50x", "0.05x"]  # 0.5 of 10
    assert rows["python-groups"][4:7] == ["100", "0.38x", "0.10x"]
    assert rows["kernel"][2:4] == ["", ""]


def test_record_replaces_an_earlier_section(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Results\n\n{policy.ANCHOR} (before issue 9)\nold\n")
    policy.record(_report(), Path("bench/results/a.json"), md)
    policy.record(_report(), Path("bench/results/b.json"), md)
    text = md.read_text()
    assert text.count(policy_report.BEGIN) == text.count(policy_report.END) == 1
    assert text.index(policy_report.END) < text.index(policy.ANCHOR)
    assert "b.json" in text and "a.json" not in text and text.endswith("old\n")
    assert "290 ingress and 100 egress rules" in text and '"open" is the comparison' in text
    assert "port 5301: python-open refused" in text


def test_paths_are_checked_and_put_in_order() -> None:
    assert cli.paths_option(policy.ALL_PATHS)("python-groups,kernel") == ["kernel", "python-groups"]
    with pytest.raises(Exception, match="unknown paths"):
        cli.paths_option(policy.ALL_PATHS)("kernel,python-nopolicy")


def test_the_lab_topology_is_valid_and_named_apart_from_the_overlay_bench() -> None:
    for datapath in ("python", "ebpf"):
        topo = parse_topology(topology(datapath))
        assert topo.name == lab_name(datapath) != f"bench{datapath}"
        (tenant,) = topo.tenants
        assert [v.name for v in tenant.vpcs] == list(POLICIES)
        for vpc in tenant.vpcs:
            subnets = {vm.node: vm.subnet for vm in vpc.vms}
            assert subnets == {"node1": "client", "node2": "server"}
