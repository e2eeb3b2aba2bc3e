"""Security groups in the service: the default group of a VPC, names, rules in canonical form,
duplicates, revokes, quotas, deletions, tenant isolation and the groups of an interface."""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from service_setup import fails, open_service, vpc_with_subnet

from openvpc.model.policy import SecurityGroup, SecurityGroupRule
from openvpc.model.resources import Vpc
from openvpc.service import Service
from openvpc.service.repo import Repo
from openvpc.service.security import RULES_PER_DIRECTION, RuleSpec, check_groups


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    service = open_service(tmp_path / "store.db")
    try:
        yield service
    finally:
        service.store.close()


def groups(svc: Service, vpc: Vpc, tenant: str = "red") -> dict[str, SecurityGroup]:
    return {g.name: g for g in svc.describe_security_groups(tenant) if g.vpc == vpc.id}


def group(svc: Service, group_id: str, tenant: str = "red") -> SecurityGroup:
    (found,) = [g for g in svc.describe_security_groups(tenant) if g.id == group_id]
    return found


def shape(rule: SecurityGroupRule) -> tuple[str, int, int, str, str]:
    return (rule.protocol, rule.from_port, rule.to_port, rule.cidr, rule.group)


SSH = RuleSpec("tcp", 22, 22, cidr="10.0.0.0/16")


# -- the default group ----------------------------------------------------------------------
def test_a_vpc_comes_with_a_default_group_that_admits_its_own_members(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    (default,) = groups(svc, vpc).values()
    assert default.name == "default" and default.id.startswith("sg-")
    assert [shape(r) for r in default.ingress] == [("-1", -1, -1, "", default.id)]
    assert [shape(r) for r in default.egress] == [("-1", -1, -1, "0.0.0.0/0", "")]
    rule_ids = [r.id for r in (*default.ingress, *default.egress)]
    assert all(i.startswith("sgr-") for i in rule_ids) and len(set(rule_ids)) == 2
    with fails("CannotDelete"):
        svc.delete_security_group("red", default.id)


def test_the_default_group_goes_with_its_vpc(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    svc.delete_vpc("red", vpc.id)
    assert svc.describe_security_groups("red") == ()


def test_a_vpc_with_a_group_of_its_own_cannot_be_deleted(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "web servers")
    with fails("DependencyViolation"):
        svc.delete_vpc("red", vpc.id)
    assert set(groups(svc, vpc)) == {"default", "web"}  # nothing of the VPC went,
    assert [a.default for a in svc.describe_network_acls("red")] == [True]  # not even its ACL
    svc.delete_security_group("red", web.id)
    svc.delete_vpc("red", vpc.id)
    assert svc.describe_vpcs("red") == ()


# -- creating groups ------------------------------------------------------------------------
def test_a_new_group_allows_all_egress_and_no_ingress(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "web servers (80, 443)")
    assert (web.name, web.description, web.vpc, web.tenant) == (
        "web",
        "web servers (80, 443)",
        vpc.id,
        "red",
    )
    assert web.ingress == ()
    assert [shape(r) for r in web.egress] == [("-1", -1, -1, "0.0.0.0/0", "")]
    assert group(svc, web.id) == web


def test_group_names_are_unique_per_vpc_ignoring_case(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    other = svc.create_vpc("red", "test", "10.0.0.0/16")
    svc.create_security_group("red", vpc.id, "Web", "")
    with fails("InvalidGroup.Duplicate"):
        svc.create_security_group("red", vpc.id, "wEB", "")
    svc.create_security_group("red", other.id, "web", "")  # another VPC may
    blue_vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    svc.create_security_group("blue", blue_vpc.id, "Web", "")  # and so may another tenant


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("default", "InvalidGroup.Reserved"),
        ("DEFAULT", "InvalidGroup.Reserved"),
        ("sg-123", "InvalidParameterValue"),
        ("", "InvalidParameterValue"),
        ("x" * 256, "InvalidParameterValue"),
        ("tab\there", "InvalidParameterValue"),
        ("caf\u00e9", "InvalidParameterValue"),
    ],
)
def test_bad_group_names_are_refused(svc: Service, name: str, code: str) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    with fails(code):
        svc.create_security_group("red", vpc.id, name, "")


def test_a_name_of_255_allowed_characters_is_accepted(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    name = ("a-Z_0.9 :/()#,@[]+=&;{}!$*" * 10)[:255]
    assert svc.create_security_group("red", vpc.id, name, name).name == name
    with fails("InvalidParameterValue"):
        svc.create_security_group("red", vpc.id, "ok", "y" * 256)


def test_a_group_needs_a_vpc_of_the_tenant(svc: Service) -> None:
    blue_vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    with fails("InvalidVpcID.NotFound"):
        svc.create_security_group("red", blue_vpc.id, "web", "")
    with fails("InvalidVpcID.NotFound"):
        svc.create_security_group("red", "vpc-00000000000000000", "web", "")


def test_groups_per_vpc_are_limited(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("openvpc.service.security.GROUPS_PER_VPC", 3)
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")  # its default group counts
    svc.create_security_group("red", vpc.id, "a", "")
    svc.create_security_group("red", vpc.id, "b", "")
    with fails("SecurityGroupLimitExceeded"):
        svc.create_security_group("red", vpc.id, "c", "")


# -- rules ----------------------------------------------------------------------------------
def test_authorize_returns_rules_in_canonical_form_with_ids(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    added = svc.authorize_security_group(
        "red",
        web.id,
        False,
        [
            RuleSpec("TCP", 80, 80, cidr="0.0.0.0/0", description="http"),
            RuleSpec("6", 443, 443, cidr="10.1.2.3/16"),
            RuleSpec("icmp", 8, -1, cidr="10.0.0.0/8"),
            RuleSpec("-1", 0, 0, group=web.id),
            RuleSpec("47", 5, 9, cidr="192.0.2.1/32"),
        ],
    )
    assert [shape(r) for r in added] == [
        ("tcp", 80, 80, "0.0.0.0/0", ""),
        ("tcp", 443, 443, "10.1.0.0/16", ""),
        ("icmp", 8, -1, "10.0.0.0/8", ""),
        ("-1", -1, -1, "", web.id),
        ("47", -1, -1, "192.0.2.1/32", ""),
    ]
    assert added[0].description == "http"
    assert all(r.id.startswith("sgr-") and not r.egress for r in added)
    assert group(svc, web.id).ingress == added


@pytest.mark.parametrize(
    "spec",
    [
        RuleSpec("tcp", None, 22, cidr="0.0.0.0/0"),
        RuleSpec("udp", 22, None, cidr="0.0.0.0/0"),
        RuleSpec("tcp", 23, 22, cidr="0.0.0.0/0"),
        RuleSpec("tcp", -1, 22, cidr="0.0.0.0/0"),
        RuleSpec("udp", 1, 65536, cidr="0.0.0.0/0"),
        RuleSpec("icmp", -1, 0, cidr="0.0.0.0/0"),
        RuleSpec("icmp", 256, 0, cidr="0.0.0.0/0"),
        RuleSpec("icmp", 8, -2, cidr="0.0.0.0/0"),
        RuleSpec("gre", 0, 0, cidr="0.0.0.0/0"),
        RuleSpec("256", 0, 0, cidr="0.0.0.0/0"),
        RuleSpec("-2", 0, 0, cidr="0.0.0.0/0"),
        RuleSpec("tcp", 22, 22, cidr="10.0.0.0"),
        RuleSpec("tcp", 22, 22, cidr="fd00::/8"),
        RuleSpec("tcp", 22, 22),
        RuleSpec("tcp", 22, 22, cidr="0.0.0.0/0", group="sg-00000000000000000"),
        RuleSpec("tcp", 22, 22, cidr="0.0.0.0/0", description="tab\t"),
    ],
)
def test_malformed_rules_are_refused(svc: Service, spec: RuleSpec) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    with fails("InvalidParameterValue"):
        svc.authorize_security_group("red", web.id, False, [spec])
    assert group(svc, web.id).ingress == ()


def test_a_duplicate_rule_is_refused_and_nothing_of_the_call_is_kept(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    svc.authorize_security_group("red", web.id, False, [SSH])
    http = RuleSpec("tcp", 80, 80, cidr="0.0.0.0/0")
    same_ssh = replace(SSH, cidr="10.0.9.9/16", description="other words")
    with fails("InvalidPermission.Duplicate"):
        svc.authorize_security_group("red", web.id, False, [http, same_ssh])
    with fails("InvalidPermission.Duplicate"):
        svc.authorize_security_group("red", web.id, False, [http, http])
    assert [shape(r) for r in group(svc, web.id).ingress] == [("tcp", 22, 22, "10.0.0.0/16", "")]
    # the egress rule allowing all is there already
    with fails("InvalidPermission.Duplicate"):
        svc.authorize_security_group("red", web.id, True, [RuleSpec("-1", cidr="0.0.0.0/0")])


def test_ingress_and_egress_are_separate(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    (rule,) = svc.authorize_security_group("red", web.id, True, [SSH])
    assert rule.egress
    assert svc.authorize_security_group("red", web.id, False, [SSH])  # not a duplicate
    with fails("InvalidSecurityGroupRuleId.NotFound"):
        svc.revoke_security_group_rules("red", web.id, False, [rule.id])
    assert svc.revoke_security_group_rules("red", web.id, True, [rule.id]) == (rule,)


def test_a_referenced_group_must_be_the_tenants_and_in_the_same_vpc(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    other = svc.create_vpc("red", "test", "10.1.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    db = svc.create_security_group("red", vpc.id, "db", "")
    elsewhere = svc.create_security_group("red", other.id, "web", "")
    blue_vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    blues = svc.create_security_group("blue", blue_vpc.id, "web", "")
    for bad in (elsewhere.id, blues.id, "sg-00000000000000000"):
        with fails("InvalidGroup.NotFound"):
            svc.authorize_security_group(
                "red", db.id, False, [RuleSpec("tcp", 5432, 5432, group=bad)]
            )
    (rule,) = svc.authorize_security_group(
        "red", db.id, False, [RuleSpec("tcp", 5432, 5432, group=web.id)]
    )
    assert rule.group == web.id


def test_rules_per_direction_are_limited(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    specs = [RuleSpec("tcp", p, p, cidr="0.0.0.0/0") for p in range(1, RULES_PER_DIRECTION + 2)]
    with fails("RulesPerSecurityGroupLimitExceeded"):
        svc.authorize_security_group("red", web.id, False, specs)
    svc.authorize_security_group("red", web.id, False, specs[:RULES_PER_DIRECTION])
    with fails("RulesPerSecurityGroupLimitExceeded"):
        svc.authorize_security_group("red", web.id, False, specs[-1:])
    # egress already holds the allow-all rule: 59 more fit
    with fails("RulesPerSecurityGroupLimitExceeded"):
        svc.authorize_security_group("red", web.id, True, specs[:RULES_PER_DIRECTION])
    svc.authorize_security_group("red", web.id, True, specs[: RULES_PER_DIRECTION - 1])


def test_revoke_matches_rules_ignoring_descriptions_and_ignored_ports(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    (ssh,) = svc.authorize_security_group("red", web.id, False, [replace(SSH, description="x")])
    # terraform revokes the default egress rule as protocol -1 from port 0 to port 0
    (egress,) = group(svc, web.id).egress
    assert svc.revoke_security_group("red", web.id, True, [RuleSpec("-1", 0, 0, "0.0.0.0/0")]) == (
        egress,
    )
    assert group(svc, web.id).egress == ()
    assert svc.revoke_security_group(
        "red", web.id, False, [RuleSpec("6", 22, 22, "10.0.0.0/16")]
    ) == (ssh,)
    assert group(svc, web.id).ingress == ()


def test_revoking_a_missing_rule_fails_and_keeps_the_others(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    svc.authorize_security_group("red", web.id, False, [SSH])
    for missing in (replace(SSH, to_port=23), replace(SSH, cidr="10.1.0.0/16")):
        with fails("InvalidPermission.NotFound"):
            svc.revoke_security_group("red", web.id, False, [SSH, missing])
    with fails("InvalidPermission.NotFound"):
        svc.revoke_security_group("red", web.id, True, [SSH])  # it is an ingress rule
    assert len(group(svc, web.id).ingress) == 1
    with fails("InvalidSecurityGroupRuleId.NotFound"):
        svc.revoke_security_group_rules("red", web.id, False, ["sgr-00000000000000000"])


def test_revoke_by_rule_ids(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    ssh, http = svc.authorize_security_group(
        "red", web.id, False, [SSH, RuleSpec("tcp", 80, 80, cidr="0.0.0.0/0")]
    )
    with fails("InvalidSecurityGroupRuleId.NotFound"):
        svc.revoke_security_group_rules("red", web.id, False, [ssh.id, "sgr-00000000000000000"])
    assert svc.revoke_security_group_rules("red", web.id, False, [http.id]) == (http,)
    assert group(svc, web.id).ingress == (ssh,)


# -- deleting groups ------------------------------------------------------------------------
def test_a_group_another_group_names_cannot_be_deleted(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    db = svc.create_security_group("red", vpc.id, "db", "")
    svc.authorize_security_group("red", web.id, False, [RuleSpec("-1", group=web.id)])
    (rule,) = svc.authorize_security_group(
        "red", db.id, True, [RuleSpec("tcp", 1, 2, group=web.id)]
    )
    with fails("DependencyViolation"):
        svc.delete_security_group("red", web.id)
    svc.revoke_security_group_rules("red", db.id, True, [rule.id])
    svc.delete_security_group("red", web.id)  # naming itself does not hold it
    assert set(groups(svc, vpc)) == {"default", "db"}


def test_a_group_an_interface_uses_cannot_be_deleted(tmp_path: Path) -> None:
    svc = open_service(tmp_path / "store.db")
    try:
        vpc, subnet = vpc_with_subnet(svc)
        web = svc.create_security_group("red", vpc.id, "web", "")
        _, iface = svc.run_instance("red", subnet.id, "vm1", "node1", "ns1")
        with svc.store.transaction() as tx:  # RunInstances places interfaces in groups (i8-inst)
            Repo(tx).put(replace(iface, groups=(web.id,)))
        with fails("DependencyViolation"):
            svc.delete_security_group("red", web.id)
    finally:
        svc.store.close()


def test_deleting_by_id_is_tenant_scoped(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    with fails("InvalidGroup.NotFound"):
        svc.delete_security_group("blue", web.id)
    with fails("InvalidGroup.NotFound"):
        svc.authorize_security_group("blue", web.id, False, [SSH])
    with fails("InvalidGroup.NotFound"):
        svc.revoke_security_group_rules("blue", web.id, True, [web.egress[0].id])
    assert svc.describe_security_groups("blue") == ()
    svc.delete_security_group("red", web.id)
    with fails("InvalidGroup.NotFound"):
        svc.delete_security_group("red", web.id)


def test_a_group_is_found_by_name_only_when_the_name_is_unambiguous(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    other = svc.create_vpc("red", "test", "10.1.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    assert svc.security_group_named("red", "web") == web
    with fails("InvalidGroup.NotFound"):
        svc.security_group_named("blue", "web")
    svc.create_security_group("red", other.id, "web", "")
    with fails("InvalidGroup.NotFound"):
        svc.security_group_named("red", "web")
    assert svc.security_group_named("red", "web", vpc.id) == web
    with fails("InvalidGroup.NotFound"):
        svc.security_group_named("red", "db", vpc.id)


# -- the groups of an interface -------------------------------------------------------------
def test_check_groups(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    other = svc.create_vpc("red", "test", "10.1.0.0/16")
    default = groups(svc, vpc)["default"]
    made = [svc.create_security_group("red", vpc.id, f"g{i}", "").id for i in range(6)]
    elsewhere = svc.create_security_group("red", other.id, "web", "")
    blue_vpc = svc.create_vpc("blue", "prod", "10.0.0.0/16")
    with svc.store.transaction() as tx:
        repo = Repo(tx)
        assert check_groups(repo, "red", vpc.id, []) == (default.id,)
        assert check_groups(repo, "red", vpc.id, [made[1], made[0], made[1]]) == (made[1], made[0])
        assert check_groups(repo, "red", vpc.id, made[:5]) == tuple(made[:5])
        with fails("SecurityGroupsPerInterfaceLimitExceeded"):
            check_groups(repo, "red", vpc.id, made)
        with fails("InvalidParameter"):
            check_groups(repo, "red", vpc.id, [elsewhere.id])
        with fails("InvalidGroup.NotFound"):
            check_groups(repo, "red", vpc.id, ["sg-00000000000000000"])
        with fails("InvalidGroup.NotFound"):
            check_groups(repo, "blue", blue_vpc.id, [made[0]])
        with fails("InvalidVpcID.NotFound"):
            check_groups(repo, "blue", vpc.id, [])


def test_a_vpc_stored_before_groups_existed_gets_its_default_group_when_asked(
    tmp_path: Path,
) -> None:
    svc = open_service(tmp_path / "store.db")
    try:
        vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
        with svc.store.transaction() as tx:
            repo = Repo(tx)
            for g in repo.find(SecurityGroup, "vpc", vpc.id):
                repo.delete(SecurityGroup, g.id)
            (gid,) = check_groups(repo, "red", vpc.id, [])
        assert groups(svc, vpc)["default"].id == gid
    finally:
        svc.store.close()


def test_groups_reach_the_snapshot(svc: Service) -> None:
    vpc = svc.create_vpc("red", "prod", "10.0.0.0/16")
    web = svc.create_security_group("red", vpc.id, "web", "")
    assert web in svc.snapshot().security_groups
