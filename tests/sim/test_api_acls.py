"""Network ACLs over the real HTTP API with boto3: the default ACL of a VPC, custom ACLs with
tags, entries, subnet associations, describes with filters and pages, exact error codes and
tenant isolation."""

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


def new_subnet(ec2: Client, vpc: str, cidr: str = "10.0.1.0/24") -> str:
    return str(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"])


def acls(ec2: Client, *filters: tuple[str, list[str]]) -> list[dict[str, Any]]:
    found = ec2.describe_network_acls(Filters=[{"Name": n, "Values": v} for n, v in filters])
    return list(found["NetworkAcls"])


def the_acl(ec2: Client, acl_id: str) -> dict[str, Any]:
    (acl,) = ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
    return dict(acl)


def default_acl(ec2: Client, vpc: str) -> dict[str, Any]:
    (acl,) = acls(ec2, ("vpc-id", [vpc]), ("default", ["true"]))
    return acl


def rows(acl: dict[str, Any]) -> list[tuple[int, bool, str, str]]:
    return [(e["RuleNumber"], e["Egress"], e["Protocol"], e["RuleAction"]) for e in acl["Entries"]]


HTTPS: dict[str, Any] = {
    "RuleNumber": 110,
    "Protocol": "6",
    "RuleAction": "allow",
    "Egress": False,
    "CidrBlock": "0.0.0.0/0",
    "PortRange": {"From": 443, "To": 443},
}


@pytest.fixture
def alice(api: Any) -> Client:
    return api.ec2("alice")


@pytest.fixture
def bob(api: Any) -> Client:
    return api.ec2("bob")


def test_a_vpc_has_a_default_acl_and_its_subnets_use_it(alice: Client) -> None:
    vpc = new_vpc(alice)
    subnet = new_subnet(alice, vpc)
    acl = default_acl(alice, vpc)
    assert acl["IsDefault"] is True and acl["NetworkAclId"].startswith("acl-")
    assert acl["OwnerId"].isdigit() and len(acl["OwnerId"]) == 12
    assert sorted(rows(acl)) == [
        (100, False, "-1", "allow"),
        (100, True, "-1", "allow"),
        (32767, False, "-1", "deny"),
        (32767, True, "-1", "deny"),
    ]
    (association,) = acl["Associations"]
    assert association["SubnetId"] == subnet
    assert association["NetworkAclAssociationId"].startswith("aclassoc-")
    assert code_of(alice.delete_network_acl, NetworkAclId=acl["NetworkAclId"]) == (
        "InvalidParameterValue"
    )


def test_custom_acls_entries_and_associations(alice: Client) -> None:
    vpc = new_vpc(alice)
    subnet = new_subnet(alice, vpc)
    made = alice.create_network_acl(
        VpcId=vpc,
        TagSpecifications=[
            {"ResourceType": "network-acl", "Tags": [{"Key": "Name", "Value": "x"}]}
        ],
    )["NetworkAcl"]
    acl_id = made["NetworkAclId"]
    assert made["IsDefault"] is False and made["Tags"] == [{"Key": "Name", "Value": "x"}]
    assert sorted(rows(made)) == [(32767, False, "-1", "deny"), (32767, True, "-1", "deny")]
    alice.create_network_acl_entry(NetworkAclId=acl_id, **HTTPS)
    alice.create_network_acl_entry(
        NetworkAclId=acl_id,
        RuleNumber=120,
        Protocol="1",
        RuleAction="deny",
        Egress=True,
        CidrBlock="10.0.0.0/8",
        IcmpTypeCode={"Type": 8, "Code": -1},
    )
    entries = {(e["RuleNumber"], e["Egress"]): e for e in the_acl(alice, acl_id)["Entries"]}
    assert entries[(110, False)]["PortRange"] == {"From": 443, "To": 443}
    assert entries[(120, True)]["IcmpTypeCode"] == {"Type": 8, "Code": -1}
    assert code_of(alice.create_network_acl_entry, NetworkAclId=acl_id, **HTTPS) == (
        "NetworkAclEntryAlreadyExists"
    )
    alice.replace_network_acl_entry(NetworkAclId=acl_id, **{**HTTPS, "RuleAction": "deny"})
    assert [
        e["RuleAction"] for e in the_acl(alice, acl_id)["Entries"] if e["RuleNumber"] == 110
    ] == ["deny"]
    assert (
        code_of(
            alice.replace_network_acl_entry, NetworkAclId=acl_id, **{**HTTPS, "RuleNumber": 111}
        )
        == "InvalidNetworkAclEntry.NotFound"
    )
    alice.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=120, Egress=True)
    assert (
        code_of(alice.delete_network_acl_entry, NetworkAclId=acl_id, RuleNumber=120, Egress=True)
        == "InvalidNetworkAclEntry.NotFound"
    )

    (old,) = default_acl(alice, vpc)["Associations"]
    new_id = alice.replace_network_acl_association(
        AssociationId=old["NetworkAclAssociationId"], NetworkAclId=acl_id
    )["NewAssociationId"]
    assert new_id.startswith("aclassoc-") and new_id != old["NetworkAclAssociationId"]
    assert the_acl(alice, acl_id)["Associations"] == [
        {"NetworkAclAssociationId": new_id, "NetworkAclId": acl_id, "SubnetId": subnet}
    ]
    assert default_acl(alice, vpc)["Associations"] == []
    assert code_of(alice.delete_network_acl, NetworkAclId=acl_id) == "DependencyViolation"
    assert code_of(alice.delete_vpc, VpcId=vpc) == "DependencyViolation"
    alice.delete_subnet(SubnetId=subnet)
    alice.delete_network_acl(NetworkAclId=acl_id)
    assert code_of(alice.delete_network_acl, NetworkAclId=acl_id) == "InvalidNetworkAclID.NotFound"
    alice.delete_vpc(VpcId=vpc)
    assert acls(alice, ("vpc-id", [vpc])) == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"RuleNumber": 0}, "InvalidParameterValue"),
        ({"RuleNumber": 32767}, "InvalidParameterValue"),
        ({"RuleAction": "reject"}, "InvalidParameterValue"),
        ({"Protocol": "bogus"}, "InvalidParameterValue"),
        ({"PortRange": {"From": 444, "To": 443}}, "InvalidParameterValue"),
        ({"CidrBlock": "nonsense"}, "InvalidParameterValue"),
    ],
)
def test_malformed_entries(alice: Client, change: dict[str, Any], code: str) -> None:
    acl_id = alice.create_network_acl(VpcId=new_vpc(alice))["NetworkAcl"]["NetworkAclId"]
    got = code_of(alice.create_network_acl_entry, NetworkAclId=acl_id, **{**HTTPS, **change})
    assert got == code


def test_entries_need_their_port_range_or_icmp_type(alice: Client) -> None:
    acl_id = alice.create_network_acl(VpcId=new_vpc(alice))["NetworkAcl"]["NetworkAclId"]
    bare = {k: v for k, v in HTTPS.items() if k != "PortRange"}
    assert code_of(alice.create_network_acl_entry, NetworkAclId=acl_id, **bare) == (
        "MissingParameter"
    )
    icmp = {**bare, "Protocol": "1"}
    assert code_of(alice.create_network_acl_entry, NetworkAclId=acl_id, **icmp) == (
        "MissingParameter"
    )
    no_cidr = {k: v for k, v in HTTPS.items() if k != "CidrBlock"}
    assert code_of(alice.create_network_acl_entry, NetworkAclId=acl_id, **no_cidr) == (
        "MissingParameter"
    )


def test_filters_and_pages(alice: Client) -> None:
    vpc = new_vpc(alice)
    subnet = new_subnet(alice, vpc)
    custom = alice.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    alice.create_network_acl_entry(NetworkAclId=custom, **HTTPS)
    default = default_acl(alice, vpc)["NetworkAclId"]
    (association,) = default_acl(alice, vpc)["Associations"]

    def ids(*filters: tuple[str, list[str]]) -> list[str]:
        return sorted(a["NetworkAclId"] for a in acls(alice, *filters))

    assert ids(("vpc-id", [vpc])) == sorted([custom, default])
    assert ids(("default", ["false"])) == [custom]
    assert ids(("network-acl-id", [default])) == [default]
    assert ids(("association.subnet-id", [subnet])) == [default]
    assert ids(("association.association-id", [association["NetworkAclAssociationId"]])) == [
        default
    ]
    assert ids(("association.network-acl-id", [default])) == [default]
    assert ids(("entry.rule-number", ["110"])) == [custom]
    assert ids(("entry.port-range.from", ["443"]), ("entry.protocol", ["tcp"])) == [custom]
    # each filter may match another entry of the same ACL, as in EC2
    assert ids(("entry.rule-action", ["allow"]), ("entry.egress", ["true"])) == sorted(
        [custom, default]
    )
    assert ids(("entry.rule-number", ["100"]), ("entry.egress", ["true"])) == [default]
    assert ids(("entry.cidr", ["0.0.0.0/0"])) == sorted([custom, default])
    assert code_of(alice.describe_network_acls, Filters=[{"Name": "bogus", "Values": ["1"]}]) == (
        "InvalidParameterValue"
    )
    for _ in range(5):
        alice.create_network_acl(VpcId=vpc)
    pages = alice.get_paginator("describe_network_acls").paginate(PaginationConfig={"PageSize": 5})
    assert [len(p["NetworkAcls"]) for p in pages] == [5, 2]


def test_another_tenants_acls_are_invisible(alice: Client, bob: Client) -> None:
    vpc = new_vpc(alice)
    subnet = new_subnet(alice, vpc)
    acl_id = alice.create_network_acl(
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "k", "Value": "v"}]}],
    )["NetworkAcl"]["NetworkAclId"]
    (association,) = default_acl(alice, vpc)["Associations"]
    assert bob.describe_network_acls()["NetworkAcls"] == []
    for name, value in (
        ("network-acl-id", acl_id),
        ("tag:k", "v"),
        ("vpc-id", vpc),
        ("association.subnet-id", subnet),
    ):
        assert acls(bob, (name, [value])) == []
    assert code_of(bob.describe_network_acls, NetworkAclIds=[acl_id]) == (
        "InvalidNetworkAclID.NotFound"
    )
    assert code_of(bob.delete_network_acl, NetworkAclId=acl_id) == "InvalidNetworkAclID.NotFound"
    assert code_of(bob.create_network_acl_entry, NetworkAclId=acl_id, **HTTPS) == (
        "InvalidNetworkAclID.NotFound"
    )
    assert (
        code_of(bob.delete_network_acl_entry, NetworkAclId=acl_id, RuleNumber=1, Egress=False)
        == "InvalidNetworkAclID.NotFound"
    )
    assert code_of(bob.create_network_acl, VpcId=vpc) == "InvalidVpcID.NotFound"
    bobs_acl = bob.create_network_acl(VpcId=new_vpc(bob))["NetworkAcl"]["NetworkAclId"]
    assert (
        code_of(
            bob.replace_network_acl_association,
            AssociationId=association["NetworkAclAssociationId"],
            NetworkAclId=bobs_acl,
        )
        == "InvalidAssociationID.NotFound"
    )


def test_a_repeated_client_token_answers_with_the_same_acl(alice: Client) -> None:
    vpc = new_vpc(alice)
    first = alice.create_network_acl(VpcId=vpc, ClientToken="t-1")["NetworkAcl"]["NetworkAclId"]
    again = alice.create_network_acl(VpcId=vpc, ClientToken="t-1")["NetworkAcl"]["NetworkAclId"]
    assert first == again
    assert len(acls(alice, ("vpc-id", [vpc]))) == 2
