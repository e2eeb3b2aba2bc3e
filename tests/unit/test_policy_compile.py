"""The compiler puts each port's security groups and its subnet's network ACL into its
PortConfig, from a real Service: membership, rule removal, the default group, association
replacement; the codec carries them and still reads documents from before them."""

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_setup import open_service, vpc_with_subnet
from test_compiler import l3_snapshot

from openvpc.compiler.compile import compile_all
from openvpc.compiler.render import render
from openvpc.model.codec import from_dict, to_dict
from openvpc.model.nodeconfig import NodeConfig, PortConfig, decode_object
from openvpc.model.policy import ACL_DEFAULT_RULE
from openvpc.model.resources import Interface
from openvpc.model.rules import (
    AclEntry,
    NetworkAclConfig,
    PortSecurity,
    SgRule,
    acl_verdict,
    selector,
    sg_verdict,
)
from openvpc.service import Service
from openvpc.service.acls import EntrySpec
from openvpc.service.security import RuleSpec
from openvpc.southbound.delta import apply_delta, config_delta

TCP = 6


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def port_of(svc: Service, iface: Interface) -> PortConfig:
    (port,) = [
        p
        for config in compile_all(svc.snapshot()).values()
        for p in config.ports
        if p.interface_id == iface.id
    ]
    return port


def security(svc: Service, iface: Interface) -> PortSecurity:
    found = port_of(svc, iface).security_groups
    assert found is not None
    return found


def ingress_from(svc: Service, iface: Interface, group_id: str) -> set[str]:
    """The remote prefixes `iface` admits by rules of group `group_id`."""
    return {r.cidr for r in security(svc, iface).ingress if r.ref.startswith(group_id + "/")}


def b(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def test_default_group_admits_its_own_members(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    _, one = svc.run_instance("red", subnet.id, "one", "node1", "vm-sg-1")
    _, two = svc.run_instance("red", subnet.id, "two", "node2", "vm-sg-2")
    (default,) = [g for g in svc.describe_security_groups("red") if g.vpc == vpc.id]
    assert one.groups == two.groups == ()  # the lab's way: no group given, the default one
    rules = security(svc, one)
    assert ingress_from(svc, one, default.id) == {f"{one.ip}/32", f"{two.ip}/32"}
    ref = sg_verdict(rules.ingress, 47, b(two.ip), 0)  # every protocol
    assert ref == f"{default.id}/{default.ingress[0].id}"
    assert sg_verdict(rules.ingress, TCP, b("10.0.9.9"), 22) is None
    assert sg_verdict(rules.egress, TCP, b("198.51.100.7"), 443) is not None


def test_a_referenced_group_follows_membership(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    web = svc.create_security_group("red", vpc.id, "web", "web servers")
    app = svc.create_security_group("red", vpc.id, "app", "app servers")
    svc.authorize_security_group("red", web.id, False, [RuleSpec("tcp", 80, 80, group=app.id)])
    _, server = svc.run_instance("red", subnet.id, "server", "node1", "vm-sg-s")
    _, a1 = svc.run_instance("red", subnet.id, "a1", "node2", "vm-sg-a1")
    _, a2 = svc.run_instance("red", subnet.id, "a2", "node2", "vm-sg-a2")
    svc.modify_interface("red", server.id, groups=[web.id])
    svc.modify_interface("red", a1.id, groups=[app.id])
    before = svc.snapshot().revision
    assert ingress_from(svc, server, web.id) == {f"{a1.ip}/32"}
    rules = security(svc, server).ingress
    assert sg_verdict(rules, TCP, b(a1.ip), 80) is not None
    assert sg_verdict(rules, TCP, b(a2.ip), 80) is None
    assert sg_verdict(rules, TCP, b(a1.ip), 81) is None

    svc.modify_interface("red", a2.id, groups=[app.id])
    svc.assign_private_ips("red", a2.id, ["10.0.1.77"])
    assert svc.snapshot().revision > before  # a new generation for the server's node
    assert ingress_from(svc, server, web.id) == {f"{a1.ip}/32", f"{a2.ip}/32", "10.0.1.77/32"}

    (default,) = [g.id for g in svc.describe_security_groups("red") if g.name == "default"]
    svc.modify_interface("red", a1.id, groups=[default])
    assert ingress_from(svc, server, web.id) == {f"{a2.ip}/32", "10.0.1.77/32"}
    assert security(svc, a1).egress != ()  # a1's own rules are now the default group's


def test_the_union_of_an_interfaces_groups(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    ssh = svc.create_security_group("red", vpc.id, "ssh", "ssh")
    dns = svc.create_security_group("red", vpc.id, "dns", "dns")
    svc.authorize_security_group("red", ssh.id, False, [RuleSpec("tcp", 22, 22, cidr="0.0.0.0/0")])
    svc.authorize_security_group("red", dns.id, False, [RuleSpec("udp", 53, 53, cidr="10.0.0.0/8")])
    svc.authorize_security_group("red", dns.id, False, [RuleSpec("tcp", 22, 22, cidr="0.0.0.0/0")])
    _, vm = svc.run_instance("red", subnet.id, "vm", "node1", "vm-sg-u")
    svc.modify_interface("red", vm.id, groups=[ssh.id, dns.id])
    rules = security(svc, vm)
    assert [(r.proto, r.from_port, r.cidr) for r in rules.ingress] == [
        (TCP, 22, "0.0.0.0/0"),  # once: the same match in two groups is one rule
        (17, 53, "10.0.0.0/8"),
    ]
    assert rules.ingress[0].ref.startswith(ssh.id + "/")
    (egress,) = rules.egress  # each new group allows all egress: one rule, the first group's
    assert (egress.proto, egress.cidr) == (-1, "0.0.0.0/0") and egress.ref.startswith(ssh.id)


def test_removing_a_rule_changes_the_compiled_port(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    web = svc.create_security_group("red", vpc.id, "web", "web")
    spec = RuleSpec("tcp", 443, 443, cidr="0.0.0.0/0")
    svc.authorize_security_group("red", web.id, False, [spec])
    _, vm = svc.run_instance("red", subnet.id, "vm", "node1", "vm-sg-r")
    svc.modify_interface("red", vm.id, groups=[web.id])
    assert sg_verdict(security(svc, vm).ingress, TCP, b("192.0.2.1"), 443) is not None
    before = port_of(svc, vm)
    svc.revoke_security_group("red", web.id, False, [spec])
    after = port_of(svc, vm)
    assert after != before
    assert sg_verdict(security(svc, vm).ingress, TCP, b("192.0.2.1"), 443) is None


def test_network_acl_association_replacement(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    _, vm = svc.run_instance("red", subnet.id, "vm", "node1", "vm-sg-n")
    default = port_of(svc, vm).network_acl
    assert default is not None and default.subnet == subnet.cidr
    assert [e.number for e in default.ingress] == [100, ACL_DEFAULT_RULE]
    assert acl_verdict(default.ingress, TCP, b("192.0.2.1"), 22) == (True, 100)

    custom = svc.create_network_acl("red", vpc.id)
    svc.create_network_acl_entry(
        "red", custom.id, EntrySpec(200, False, "-1", "allow", "0.0.0.0/0")
    )
    svc.create_network_acl_entry(
        "red", custom.id, EntrySpec(100, False, "6", "deny", "0.0.0.0/0", ports=(22, 22))
    )
    svc.create_network_acl_entry(
        "red", custom.id, EntrySpec(90, True, "1", "allow", "0.0.0.0/0", icmp=(0, -1))
    )
    (assoc,) = [a for a in svc.describe_acl_associations("red") if a.subnet == subnet.id]
    svc.replace_network_acl_association("red", assoc.id, custom.id)
    acl = port_of(svc, vm).network_acl
    assert acl is not None and acl.id == custom.id and acl.subnet == subnet.cidr
    assert [e.number for e in acl.ingress] == [100, 200, ACL_DEFAULT_RULE]
    assert acl_verdict(acl.ingress, TCP, b("192.0.2.1"), 22) == (False, 100)
    assert acl_verdict(acl.ingress, TCP, b("192.0.2.1"), 80) == (True, 200)
    echo_reply = selector(1, 9, 0, 0, False)
    assert acl_verdict(acl.egress, 1, b("192.0.2.1"), echo_reply) == (True, 90)
    assert acl_verdict(acl.egress, TCP, b("192.0.2.1"), 80) == (False, ACL_DEFAULT_RULE)


def test_a_store_from_before_policy_compiles_to_none() -> None:
    """No groups or ACLs in the snapshot: nothing enforced, today's behaviour."""
    for config in compile_all(l3_snapshot()).values():
        for port in config.ports:
            assert port.security_groups is None and port.network_acl is None


# -- the codec ---------------------------------------------------------------------------
POLICY = PortSecurity(
    ingress=(
        SgRule(TCP, 22, 22, "10.0.0.0/16", "sg-1/sgr-1"),
        SgRule(1, 8, -1, "0.0.0.0/0", "sg-1/sgr-2"),
    ),
    egress=(SgRule(-1, -1, -1, "0.0.0.0/0", "sg-1/sgr-3"),),
)
ACL = NetworkAclConfig(
    "acl-1",
    "10.0.1.0/24",
    (
        AclEntry(100, TCP, 1024, 65535, "0.0.0.0/0", True),
        AclEntry(32767, -1, -1, -1, "0.0.0.0/0", False),
    ),
)


def _port() -> PortConfig:
    config = compile_all(l3_snapshot())["node1"]
    return config.ports[0]


def test_port_policy_round_trips() -> None:
    port = replace(_port(), security_groups=POLICY, network_acl=ACL)
    doc = to_dict(port)
    assert set(doc["security_groups"]["ingress"][0]) == {
        "proto",
        "from_port",
        "to_port",
        "cidr",
        "ref",
    }
    assert set(doc["network_acl"]) == {"id", "subnet", "ingress", "egress"}
    back = decode_object("vif", doc)
    assert back == port
    assert isinstance(back, PortConfig) and back.security_groups is not None
    assert back.security_groups.ingress[1].lo == 8 << 8  # derived again on decoding
    assert back.network_acl is not None and back.network_acl.crosses(b("10.0.2.1"))


def test_a_document_from_before_policy_decodes() -> None:
    config = compile_all(l3_snapshot())["node2"]
    doc = to_dict(config)
    for port in doc["ports"]:
        del port["security_groups"], port["network_acl"]
    old = from_dict(NodeConfig, doc)
    assert old == config
    assert all(p.security_groups is None and p.network_acl is None for p in old.ports)


def test_bad_policy_in_a_document_is_refused() -> None:
    doc = to_dict(replace(_port(), security_groups=POLICY))
    doc["security_groups"]["ingress"][0]["cidr"] = "10.0.0.0/33"
    with pytest.raises(ValueError, match="bad prefix"):
        decode_object("vif", doc)


def test_a_policy_change_travels_in_a_delta() -> None:
    old = compile_all(l3_snapshot())["node1"]
    port = replace(old.ports[0], security_groups=POLICY, network_acl=ACL)
    new = replace(old, generation=old.generation + 1, ports=(port,))
    delta = config_delta(old, new)
    assert [item["kind"] for item in delta["set"]] == ["vif"] and delta["delete"] == []
    assert apply_delta(old, delta) == new


def test_a_movable_address_counts_for_its_current_owner(svc: Service) -> None:
    vpc, subnet = vpc_with_subnet(svc)
    vip = "10.0.1.100"
    web = svc.create_security_group("red", vpc.id, "web", "web")
    ha = svc.create_security_group("red", vpc.id, "ha", "ha pair")
    svc.authorize_security_group("red", web.id, False, [RuleSpec("tcp", 80, 80, group=ha.id)])
    _, server = svc.run_instance("red", subnet.id, "server", "node1", "vm-sg-w")
    _, first = svc.run_instance("red", subnet.id, "first", "node2", "vm-sg-f", None, (vip,))
    _, second = svc.run_instance("red", subnet.id, "second", "node2", "vm-sg-g", None, (vip,))
    svc.modify_interface("red", server.id, groups=[web.id])
    svc.modify_interface("red", first.id, groups=[ha.id])
    assert ingress_from(svc, server, web.id) == {f"{first.ip}/32", f"{vip}/32"}
    svc.learn_address("node2", second.id, vip)  # the VIP moves to a non-member
    assert ingress_from(svc, server, web.id) == {f"{first.ip}/32"}


def test_status_text_counts_the_policy(svc: Service) -> None:
    _, subnet = vpc_with_subnet(svc)
    svc.run_instance("red", subnet.id, "one", "node1", "vm-sg-t1")
    svc.run_instance("red", subnet.id, "two", "node1", "vm-sg-t2")
    text = render(compile_all(svc.snapshot())["node1"])
    policy = [line for line in text.splitlines() if line.startswith("policy vif")]
    assert len(policy) == 2
    assert all(
        line.endswith(
            ": groups ingress 2 egress 1 rules, acl "
            + line.split(" acl ")[1].split()[0]
            + f" on {subnet.cidr} inbound 2 outbound 2 entries"
        )
        for line in policy
    )
