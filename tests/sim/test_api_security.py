"""Security groups over the real HTTP API with boto3: creation with tags, the default group,
rules (IpPermissions and the flat form), revokes by permission and by rule id, describes
with filters and pages, deletions, exact error codes and tenant isolation."""

from typing import Any

import botocore.exceptions
import pytest

Client = Any  # a boto3 EC2 client


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(**kwargs)
    return str(e.value.response["Error"]["Code"])


def new_vpc(ec2: Client, cidr: str = "10.0.0.0/16") -> str:
    return str(ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"])


def groups_of(ec2: Client, vpc_id: str) -> dict[str, dict[str, Any]]:
    found = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
    return {g["GroupName"]: g for g in found["SecurityGroups"]}


def the_group(ec2: Client, group_id: str) -> dict[str, Any]:
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return dict(group)


def tcp(port: int, cidr: str = "0.0.0.0/0", **extra: Any) -> dict[str, Any]:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": cidr, **extra}],
    }


@pytest.fixture
def alice(api: Any) -> Client:
    return api.ec2("alice")


@pytest.fixture
def bob(api: Any) -> Client:
    return api.ec2("bob")


# -- groups ---------------------------------------------------------------------------------
def test_a_vpc_has_a_default_group_that_admits_its_own_members(alice: Client) -> None:
    vpc = new_vpc(alice)
    (default,) = groups_of(alice, vpc).values()
    assert default["GroupName"] == "default" and default["VpcId"] == vpc
    assert default["OwnerId"].isdigit() and len(default["OwnerId"]) == 12
    (ingress,) = default["IpPermissions"]
    assert ingress["IpProtocol"] == "-1" and "FromPort" not in ingress
    assert [p["GroupId"] for p in ingress["UserIdGroupPairs"]] == [default["GroupId"]]
    (egress,) = default["IpPermissionsEgress"]
    assert egress["IpProtocol"] == "-1"
    assert [r["CidrIp"] for r in egress["IpRanges"]] == ["0.0.0.0/0"]
    assert code_of(alice.delete_security_group, GroupId=default["GroupId"]) == "CannotDelete"
    alice.delete_vpc(VpcId=vpc)  # the default group goes with it
    assert code_of(alice.describe_security_groups, GroupIds=[default["GroupId"]]) == (
        "InvalidGroup.NotFound"
    )


def test_create_describe_and_delete_a_group_with_tags(alice: Client) -> None:
    vpc = new_vpc(alice)
    made = alice.create_security_group(
        GroupName="web",
        Description="web servers",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": "web-sg"}]}
        ],
    )
    gid = made["GroupId"]
    assert gid.startswith("sg-") and made["Tags"] == [{"Key": "Name", "Value": "web-sg"}]
    group = the_group(alice, gid)
    assert (group["GroupName"], group["Description"], group["VpcId"]) == ("web", "web servers", vpc)
    assert group["IpPermissions"] == []
    assert [r["CidrIp"] for p in group["IpPermissionsEgress"] for r in p["IpRanges"]] == [
        "0.0.0.0/0"
    ]
    found = alice.describe_security_groups(Filters=[{"Name": "tag:Name", "Values": ["web-*"]}])
    assert [g["GroupId"] for g in found["SecurityGroups"]] == [gid]
    assert code_of(alice.delete_vpc, VpcId=vpc) == "DependencyViolation"
    assert alice.delete_security_group(GroupId=gid)["GroupId"] == gid
    assert code_of(alice.delete_security_group, GroupId=gid) == "InvalidGroup.NotFound"
    alice.delete_vpc(VpcId=vpc)


def test_delete_by_group_name(alice: Client) -> None:
    vpc = new_vpc(alice)
    alice.create_security_group(GroupName="db", Description="d", VpcId=vpc)
    alice.delete_security_group(GroupName="db")
    assert list(groups_of(alice, vpc)) == ["default"]
    assert code_of(alice.delete_security_group, GroupName="db") == "InvalidGroup.NotFound"


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("default", "InvalidGroup.Reserved"),
        ("sg-web", "InvalidParameterValue"),
        ("x" * 256, "InvalidParameterValue"),
    ],
)
def test_bad_group_names(alice: Client, name: str, code: str) -> None:
    vpc = new_vpc(alice)
    assert code_of(alice.create_security_group, GroupName=name, Description="d", VpcId=vpc) == code


def test_group_names_are_unique_per_vpc_ignoring_case(alice: Client) -> None:
    vpc = new_vpc(alice)
    alice.create_security_group(GroupName="Web", Description="d", VpcId=vpc)
    assert (
        code_of(alice.create_security_group, GroupName="WEB", Description="d", VpcId=vpc)
        == "InvalidGroup.Duplicate"
    )
    other = new_vpc(alice, "10.1.0.0/16")
    alice.create_security_group(GroupName="WEB", Description="d", VpcId=other)


def test_a_group_needs_a_vpc(alice: Client) -> None:
    assert (
        code_of(alice.create_security_group, GroupName="web", Description="d")
        == "VPCIdNotSpecified"
    )
    assert (
        code_of(
            alice.create_security_group,
            GroupName="web",
            Description="d",
            VpcId="vpc-00000000000000000",
        )
        == "InvalidVpcID.NotFound"
    )


# -- rules ----------------------------------------------------------------------------------
def test_authorize_returns_the_rules_and_describe_groups_them(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    answer = alice.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 443,
                "ToPort": 443,
                "IpRanges": [
                    {"CidrIp": "10.0.0.0/16", "Description": "inside"},
                    {"CidrIp": "192.0.2.0/24"},
                ],
                "UserIdGroupPairs": [{"GroupId": gid}],
            },
            {
                "IpProtocol": "icmp",
                "FromPort": 8,
                "ToPort": -1,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
        ],
    )
    assert answer["Return"] is True
    rules = answer["SecurityGroupRules"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules] == [
        ("tcp", 443, 443),
        ("tcp", 443, 443),
        ("tcp", 443, 443),
        ("icmp", 8, -1),
    ]
    assert [r.get("CidrIpv4") for r in rules] == ["10.0.0.0/16", "192.0.2.0/24", None, "0.0.0.0/0"]
    assert rules[2]["ReferencedGroupInfo"]["GroupId"] == gid
    assert rules[0]["Description"] == "inside"
    assert all(r["SecurityGroupRuleId"].startswith("sgr-") and not r["IsEgress"] for r in rules)
    https, icmp = the_group(alice, gid)["IpPermissions"]
    assert (https["IpProtocol"], https["FromPort"], https["ToPort"]) == ("tcp", 443, 443)
    assert https["IpRanges"] == [
        {"CidrIp": "10.0.0.0/16", "Description": "inside"},
        {"CidrIp": "192.0.2.0/24"},
    ]
    assert [p["GroupId"] for p in https["UserIdGroupPairs"]] == [gid]
    assert (icmp["IpProtocol"], icmp["FromPort"], icmp["ToPort"]) == ("icmp", 8, -1)


def test_the_flat_form_of_authorize(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    alice.authorize_security_group_ingress(
        GroupId=gid, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="10.0.0.0/8"
    )
    (ssh,) = the_group(alice, gid)["IpPermissions"]
    assert (ssh["FromPort"], ssh["IpRanges"]) == (22, [{"CidrIp": "10.0.0.0/8"}])
    # a group named in the flat form or in a pair is looked for in this group's VPC
    db = alice.create_security_group(GroupName="db", Description="d", VpcId=vpc)["GroupId"]
    other = alice.create_security_group(
        GroupName="db", Description="d", VpcId=new_vpc(alice, "10.1.0.0/16")
    )["GroupId"]
    alice.authorize_security_group_ingress(GroupId=gid, SourceSecurityGroupName="db")
    pair = {
        "IpProtocol": "udp",
        "FromPort": 53,
        "ToPort": 53,
        "UserIdGroupPairs": [{"GroupName": "db"}],
    }
    alice.authorize_security_group_ingress(GroupId=gid, IpPermissions=[pair])
    named = [p for p in the_group(alice, gid)["IpPermissions"] if p["UserIdGroupPairs"]]
    assert [(p["IpProtocol"], [g["GroupId"] for g in p["UserIdGroupPairs"]]) for p in named] == [
        ("-1", [db]),
        ("udp", [db]),
    ]
    assert other != db
    assert (
        code_of(alice.authorize_security_group_ingress, GroupId=gid, SourceSecurityGroupName="x")
        == "InvalidGroup.NotFound"
    )


@pytest.mark.parametrize(
    ("permission", "code"),
    [
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 23,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            "InvalidParameterValue",
        ),
        ({"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "InvalidParameterValue"),
        (
            {
                "IpProtocol": "bogus",
                "FromPort": 1,
                "ToPort": 1,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            },
            "InvalidParameterValue",
        ),
        (
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "nonsense"}]},
            "InvalidParameterValue",
        ),
        (
            {
                "IpProtocol": "tcp",
                "FromPort": 1,
                "ToPort": 1,
                "UserIdGroupPairs": [{"GroupId": "sg-00000000000000000"}],
            },
            "InvalidGroup.NotFound",
        ),
        ({"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1}, "MissingParameter"),
    ],
)
def test_malformed_permissions(alice: Client, permission: dict[str, Any], code: str) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    got = code_of(alice.authorize_security_group_ingress, GroupId=gid, IpPermissions=[permission])
    assert got == code
    assert the_group(alice, gid)["IpPermissions"] == []


def test_duplicates_and_the_rule_quota(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    alice.authorize_security_group_ingress(GroupId=gid, IpPermissions=[tcp(22)])
    assert (
        code_of(alice.authorize_security_group_ingress, GroupId=gid, IpPermissions=[tcp(22)])
        == "InvalidPermission.Duplicate"
    )
    many = [tcp(p) for p in range(100, 160)]
    assert (
        code_of(alice.authorize_security_group_ingress, GroupId=gid, IpPermissions=many)
        == "RulesPerSecurityGroupLimitExceeded"
    )
    alice.authorize_security_group_ingress(GroupId=gid, IpPermissions=many[:59])
    assert len(the_group(alice, gid)["IpPermissions"]) == 60


def test_terraform_revokes_the_default_egress_rule(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    answer = alice.revoke_security_group_egress(
        GroupId=gid,
        IpPermissions=[
            {"IpProtocol": "-1", "FromPort": 0, "ToPort": 0, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    assert answer["Return"] is True
    assert the_group(alice, gid)["IpPermissionsEgress"] == []
    assert (
        code_of(
            alice.revoke_security_group_egress,
            GroupId=gid,
            IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
        )
        == "InvalidPermission.NotFound"
    )


def test_revoke_by_rule_id_and_describe_rules(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    ssh, http = alice.authorize_security_group_ingress(
        GroupId=gid, IpPermissions=[tcp(22), tcp(80)]
    )["SecurityGroupRules"]
    rules = alice.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])
    ids = {r["SecurityGroupRuleId"]: r for r in rules["SecurityGroupRules"]}
    assert set(ids) >= {ssh["SecurityGroupRuleId"], http["SecurityGroupRuleId"]}
    assert len(ids) == 3  # with the egress rule
    one = alice.describe_security_group_rules(SecurityGroupRuleIds=[http["SecurityGroupRuleId"]])
    assert [r["FromPort"] for r in one["SecurityGroupRules"]] == [80]
    assert (
        code_of(
            alice.revoke_security_group_egress,
            GroupId=gid,
            SecurityGroupRuleIds=[http["SecurityGroupRuleId"]],
        )
        == "InvalidSecurityGroupRuleId.NotFound"
    )
    gone = alice.revoke_security_group_ingress(
        GroupId=gid, SecurityGroupRuleIds=[http["SecurityGroupRuleId"]]
    )
    assert [r["SecurityGroupRuleId"] for r in gone["RevokedSecurityGroupRules"]] == [
        http["SecurityGroupRuleId"]
    ]
    (left,) = the_group(alice, gid)["IpPermissions"]
    assert left["FromPort"] == 22


def test_a_referenced_group_cannot_be_deleted(alice: Client) -> None:
    vpc = new_vpc(alice)
    web = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    db = alice.create_security_group(GroupName="db", Description="d", VpcId=vpc)["GroupId"]
    alice.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web}],
            }
        ],
    )
    assert code_of(alice.delete_security_group, GroupId=web) == "DependencyViolation"
    alice.delete_security_group(GroupId=db)
    alice.delete_security_group(GroupId=web)


# -- describing -----------------------------------------------------------------------------
def test_filters(alice: Client) -> None:
    vpc = new_vpc(alice)
    web = alice.create_security_group(GroupName="web", Description="front", VpcId=vpc)["GroupId"]
    db = alice.create_security_group(GroupName="db", Description="back", VpcId=vpc)["GroupId"]
    alice.authorize_security_group_ingress(GroupId=web, IpPermissions=[tcp(443)])
    alice.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": web}],
            }
        ],
    )

    def named(*filters: tuple[str, list[str]]) -> list[str]:
        found = alice.describe_security_groups(
            Filters=[{"Name": n, "Values": v} for n, v in filters]
        )
        return sorted(g["GroupName"] for g in found["SecurityGroups"])

    assert named(("group-name", ["web", "db"])) == ["db", "web"]
    assert named(("description", ["fr*"])) == ["web"]
    assert named(("group-id", [db])) == ["db"]
    assert named(("ip-permission.from-port", ["443"])) == ["web"]
    assert named(("ip-permission.protocol", ["6"]), ("ip-permission.to-port", ["5432"])) == ["db"]
    assert named(("ip-permission.group-id", [web])) == ["db"]
    assert named(("ip-permission.group-name", ["web"])) == ["db"]
    by_name = alice.describe_security_groups(
        GroupNames=["db"], Filters=[{"Name": "ip-permission.group-name", "Values": ["web"]}]
    )
    assert [g["GroupId"] for g in by_name["SecurityGroups"]] == [db]
    assert code_of(alice.describe_security_groups, GroupNames=["nope"]) == "InvalidGroup.NotFound"
    assert named(("ip-permission.cidr", ["0.0.0.0/0"])) == ["web"]
    assert named(("egress.ip-permission.cidr", ["0.0.0.0/0"]), ("vpc-id", [vpc])) == [
        "db",
        "default",
        "web",
    ]
    assert code_of(
        alice.describe_security_groups, Filters=[{"Name": "no-such", "Values": ["x"]}]
    ) == ("InvalidParameterValue")


def test_pages(alice: Client) -> None:
    vpc = new_vpc(alice)
    for i in range(6):
        alice.create_security_group(GroupName=f"g{i}", Description="d", VpcId=vpc)
    pages = alice.get_paginator("describe_security_groups").paginate(
        PaginationConfig={"PageSize": 5}
    )
    sizes = [len(p["SecurityGroups"]) for p in pages]
    assert sizes == [5, 2]


# -- tenants --------------------------------------------------------------------------------
def test_another_tenants_groups_are_invisible(alice: Client, bob: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(
        GroupName="web",
        Description="d",
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "security-group", "Tags": [{"Key": "k", "Value": "v"}]}
        ],
    )["GroupId"]
    (rule,) = alice.authorize_security_group_ingress(GroupId=gid, IpPermissions=[tcp(22)])[
        "SecurityGroupRules"
    ]
    assert bob.describe_security_groups()["SecurityGroups"] == []
    for filters in (
        [{"Name": "group-id", "Values": [gid]}],
        [{"Name": "tag:k", "Values": ["v"]}],
        [{"Name": "vpc-id", "Values": [vpc]}],
    ):
        assert bob.describe_security_groups(Filters=filters)["SecurityGroups"] == []
    assert bob.describe_security_group_rules()["SecurityGroupRules"] == []
    assert code_of(bob.describe_security_groups, GroupIds=[gid]) == "InvalidGroup.NotFound"
    assert code_of(bob.delete_security_group, GroupId=gid) == "InvalidGroup.NotFound"
    assert (
        code_of(bob.authorize_security_group_ingress, GroupId=gid, IpPermissions=[tcp(80)])
        == "InvalidGroup.NotFound"
    )
    assert (
        code_of(
            bob.revoke_security_group_ingress,
            GroupId=gid,
            SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]],
        )
        == "InvalidGroup.NotFound"
    )
    assert (
        code_of(bob.create_security_group, GroupName="web", Description="d", VpcId=vpc)
        == "InvalidVpcID.NotFound"
    )
    bobs_vpc = new_vpc(bob)
    bobs = bob.create_security_group(GroupName="web", Description="d", VpcId=bobs_vpc)["GroupId"]
    pair = {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "UserIdGroupPairs": [{"GroupId": gid}]}
    assert (
        code_of(bob.authorize_security_group_ingress, GroupId=bobs, IpPermissions=[pair])
        == "InvalidGroup.NotFound"
    )


def test_dry_run_creates_nothing(alice: Client) -> None:
    vpc = new_vpc(alice)
    assert (
        code_of(
            alice.create_security_group, GroupName="web", Description="d", VpcId=vpc, DryRun=True
        )
        == "DryRunOperation"
    )
    assert list(groups_of(alice, vpc)) == ["default"]


def test_rules_come_in_pages(alice: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    alice.authorize_security_group_ingress(GroupId=gid, IpPermissions=[tcp(p) for p in range(8)])
    pages = alice.get_paginator("describe_security_group_rules").paginate(
        Filters=[{"Name": "group-id", "Values": [gid]}], PaginationConfig={"PageSize": 5}
    )
    assert [len(p["SecurityGroupRules"]) for p in pages] == [5, 4]


def test_create_tags_on_groups_and_acls_is_tenant_scoped(alice: Client, bob: Client) -> None:
    vpc = new_vpc(alice)
    gid = alice.create_security_group(GroupName="web", Description="d", VpcId=vpc)["GroupId"]
    acl = alice.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    alice.create_tags(Resources=[gid, acl], Tags=[{"Key": "team", "Value": "red"}])
    found = alice.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"]) for t in found) == sorted(
        [(gid, "security-group"), (acl, "network-acl")]
    )
    assert the_group(alice, gid)["Tags"] == [{"Key": "team", "Value": "red"}]
    tag = [{"Key": "k", "Value": "v"}]
    assert code_of(bob.create_tags, Resources=[gid], Tags=tag) == "InvalidGroup.NotFound"
    assert code_of(bob.create_tags, Resources=[acl], Tags=tag) == "InvalidNetworkAclID.NotFound"
    assert bob.describe_tags()["Tags"] == []
    alice.delete_security_group(GroupId=gid)
    alice.delete_network_acl(NetworkAclId=acl)
    assert alice.describe_tags(Filters=[{"Name": "key", "Values": ["team"]}])["Tags"] == []
