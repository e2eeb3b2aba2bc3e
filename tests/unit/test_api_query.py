"""The EC2 Query parser against botocore as the oracle: what botocore's EC2 serializer sends,
parse_query gives back exactly; every malformed request is refused with its EC2 code."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from api_shapes import values_for, wire_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvpc.api import model
from openvpc.api.errors import ApiError
from openvpc.api.query import (
    MAX_KEY_CHARS,
    MAX_LIST_INDEX,
    MAX_PARAMS,
    MAX_VALUE_CHARS,
    QueryRequest,
    decode_form,
    parse_query,
)

VERSION = "2016-11-15"


def roundtrip(action: str, params: dict[str, Any], validate: bool = True) -> QueryRequest:
    return parse_query(decode_form(wire_body(action, params, validate)))


def refused(pairs: list[tuple[str, str]]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_query(pairs)
    return caught.value


def request(action: str, *pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Action", action), ("Version", VERSION), *pairs]


# Hand-picked requests of the VPC actions, with the shapes that make EC2's query names odd.
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "CreateVpc",
        {
            "CidrBlock": "10.1.0.0/16",
            "InstanceTenancy": "default",
            "TagSpecifications": [
                {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "t"}]},
            ],
        },
    ),
    (
        "DescribeVpcs",
        {
            "Filters": [
                {"Name": "cidr", "Values": ["10.1.0.0/16"]},
                {"Name": "tag:Name", "Values": ["t", "u"]},
            ],
            "VpcIds": ["vpc-1", "vpc-2"],
            "MaxResults": 5,
            "NextToken": "tok",
            "DryRun": False,
        },
    ),
    (
        "CreateTags",
        {
            "Resources": [f"vpc-{i}" for i in range(12)],
            "Tags": [{"Key": f"k{i}", "Value": f"v {i} & = ?"} for i in range(12)],
        },
    ),
    (
        "RunInstances",
        {
            "ImageId": "ami-1",
            "MinCount": 1,
            "MaxCount": 2,
            "InstanceType": "t3.micro",
            "UserData": "IyEvYmluL3NoCg==",
            "Monitoring": {"Enabled": True},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]},
                {"ResourceType": "volume", "Tags": [{"Key": "c", "Value": ""}]},
            ],
            "NetworkInterfaces": [
                {
                    "DeviceIndex": 0,
                    "SubnetId": "subnet-1",
                    "Groups": ["sg-1", "sg-2"],
                    "PrivateIpAddresses": [{"PrivateIpAddress": "10.0.0.4", "Primary": True}],
                    "AssociatePublicIpAddress": False,
                },
            ],
            "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
        },
    ),
    (
        "AuthorizeSecurityGroupIngress",
        {
            "GroupId": "sg-1",
            "IpPermissions": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 80,
                    "ToPort": 80,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}],
                    "UserIdGroupPairs": [{"GroupId": "sg-2"}],
                },
                {"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
            ],
        },
    ),
    (
        "CreateRoute",
        {"RouteTableId": "rtb-1", "DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-1"},
    ),
    ("ModifyVpcAttribute", {"VpcId": "vpc-1", "EnableDnsSupport": {"Value": True}}),
    (
        "CreateNetworkAclEntry",
        {
            "NetworkAclId": "acl-1",
            "RuleNumber": 100,
            "Protocol": "6",
            "RuleAction": "allow",
            "Egress": False,
            "CidrBlock": "0.0.0.0/0",
            "PortRange": {"From": 22, "To": 22},
        },
    ),
    ("CreateSecurityGroup", {"GroupName": "web", "Description": "web", "VpcId": "vpc-1"}),
    (
        "DescribeSpotPriceHistory",
        {
            "StartTime": datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC),
            "EndTime": datetime(2026, 11, 30, 11, 0, 0, 250000, tzinfo=UTC),
        },
    ),
    ("ImportKeyPair", {"KeyName": "k", "PublicKeyMaterial": b"ssh-ed25519 AAAA\x00\xff"}),
    ("DeleteVpc", {"VpcId": "vpc-1"}),
]


@pytest.mark.parametrize(("action", "params"), CASES, ids=[c[0] for c in CASES])
def test_botocore_requests_parse_back_exactly(action: str, params: dict[str, Any]) -> None:
    parsed = roundtrip(action, params)
    assert parsed == QueryRequest(action, VERSION, params)


def test_wire_names_follow_the_ec2_serializer() -> None:
    # The keys themselves, as botocore puts them on the wire: queryName, capitalised locationName.
    body = wire_body("CreateVpc", dict(CASES[0][1]))
    assert "TagSpecification.1.Tag.1.Key=Name" in body
    body = wire_body("DescribeVpcs", dict(CASES[1][1]))
    assert "Filter.2.Value.2=u" in body and "VpcId.2=vpc-2" in body
    body = wire_body("AuthorizeSecurityGroupIngress", dict(CASES[4][1]))
    assert "IpPermissions.1.Groups.1.GroupId=sg-2" in body
    body = wire_body("CreateSecurityGroup", dict(CASES[8][1]))
    assert "GroupDescription=web" in body
    body = wire_body("ModifyVpcAttribute", dict(CASES[6][1]))
    assert "EnableDnsSupport.Value=true" in body


VPC_ACTIONS = [
    "CreateVpc",
    "DescribeVpcs",
    "CreateTags",
    "RunInstances",
    "AuthorizeSecurityGroupIngress",
    "CreateRoute",
    "ModifyVpcAttribute",
    "CreateNetworkAclEntry",
    "DescribeRouteTables",
    "CreateSubnet",
    "DescribeSpotPriceHistory",
    "ImportKeyPair",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_vpc_requests_round_trip(data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(VPC_ACTIONS))
    strategy = values_for(model.input_shape(action))  # type: ignore[arg-type]
    assert strategy is not None
    params = data.draw(strategy)
    assert roundtrip(action, params, validate=False).params == params


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_requests_of_any_action_round_trip(data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(sorted(model.operation_names())))
    shape = model.input_shape(action)
    strategy = values_for(shape) if shape is not None else st.just({})
    if strategy is None:  # an action whose required members need more than MAX_DEPTH
        return
    params = data.draw(strategy)
    assert roundtrip(action, params, validate=False) == QueryRequest(action, VERSION, params)


def test_get_query_string_and_missing_version() -> None:
    parsed = parse_query(decode_form("Action=DescribeVpcs&VpcId.1=vpc-1&Filter.1.Name=cidr"))
    assert parsed == QueryRequest(
        "DescribeVpcs", None, {"VpcIds": ["vpc-1"], "Filters": [{"Name": "cidr"}]}
    )


def test_list_order_is_by_index_and_gaps_are_tolerated() -> None:
    parsed = parse_query(request("DescribeVpcs", ("VpcId.10", "b"), ("VpcId.2", "a")))
    assert parsed.params == {"VpcIds": ["a", "b"]}


def test_presigned_auth_parameters_are_left_to_sigv4() -> None:
    parsed = parse_query(request("DescribeVpcs", ("X-Amz-Signature", "ab"), ("X-Amz-Date", "x")))
    assert parsed.params == {}


def test_scalar_forms() -> None:
    parsed = parse_query(
        request(
            "DescribeSpotPriceHistory",
            ("StartTime", "2026-11-30T12:00:00+02:00"),
            ("EndTime", "2026-11-30T10:00:00.123456789"),
            ("DryRun", "TRUE"),
            ("MaxResults", "-7"),
        )
    )
    assert parsed.params == {
        "StartTime": datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        "EndTime": datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC),
        "DryRun": True,
        "MaxResults": -7,
    }


def test_missing_action() -> None:
    for pairs in ([("Version", VERSION)], [("Action", ""), ("Version", VERSION)]):
        error = refused(pairs)
        assert (error.code, error.message) == (
            "MissingAction",
            "The request must contain the parameter Action",
        )


def test_invalid_action() -> None:
    error = refused(request("CreateUnicorn"))
    assert (error.code, error.message) == (
        "InvalidAction",
        "The action CreateUnicorn is not valid for this web service.",
    )
    assert refused(request("describeVpcs")).code == "InvalidAction"  # names are case-sensitive


def test_no_such_version() -> None:
    error = refused([("Action", "DescribeVpcs"), ("Version", "2099-01-01")])
    assert (error.code, error.message) == (
        "NoSuchVersion",
        "The requested version (2099-01-01) of service AmazonEC2 does not exist",
    )


@pytest.mark.parametrize(
    "key",
    [
        "Bogus",
        "CidrBlocks",
        "cidrBlock",  # wire names are case-sensitive
        "VpcIds.1",  # the member name, not the wire name
        "Filter.1.Bogus",
        "Filter.1.Name.1",  # a scalar has no sub-keys
        "Filter.1",  # a structure takes no value
        "Filter.x.Name",
        "Filter",
        "VpcId",  # a list takes no value (but an empty one)
        "VpcId.1.x",
        "X" * (MAX_KEY_CHARS + 1),
    ],
)
def test_unknown_parameter(key: str) -> None:
    error = refused(request("DescribeVpcs", (key, "v")))
    assert error.code == "UnknownParameter"
    assert error.message.startswith("The parameter ") and error.message.endswith(
        " is not recognized"
    )
    assert len(error.message) < 150


def test_unknown_parameter_message() -> None:
    error = refused(request("DescribeVpcs", ("Bogus", "v")))
    assert error.message == "The parameter Bogus is not recognized"


def test_empty_list_form_is_an_empty_list() -> None:
    assert parse_query(request("DescribeVpcs", ("VpcId", ""))).params == {"VpcIds": []}


def test_missing_parameter_top_level_and_nested() -> None:
    error = refused(request("CreateSubnet", ("CidrBlock", "10.0.0.0/24")))
    assert (error.code, error.message) == (
        "MissingParameter",
        "The request must contain the parameter VpcId",
    )
    error = refused(request("CreateTags", ("ResourceId.1", "vpc-1")))
    assert error.message == "The request must contain the parameter Tag"
    # Optional structures, once given, need their own required members, at any depth.
    error = refused(
        request("RunInstances", ("MinCount", "1"), ("MaxCount", "1"), ("Monitoring.", ""))
    )
    assert error.code == "UnknownParameter"
    error = refused(request("CreateVpc", ("VpcEncryptionControl.NatGatewayExclusion", "enable")))
    assert (error.code, error.message) == (
        "MissingParameter",
        "The request must contain the parameter VpcEncryptionControl.Mode",
    )
    error = refused(
        request(
            "RunInstances",
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("SecondaryInterface.2.DeviceIndex", "1"),
            ("SecondaryInterface.2.PrivateIpAddress.3", ""),
        )
    )
    assert error.code == "UnknownParameter"  # an element of a list of structures takes no value
    error = refused(request("RunInstances", ("MinCount", "1")))
    assert error.message == "The request must contain the parameter MaxCount"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MaxResults", "abc"),
        ("MaxResults", "+5"),
        ("MaxResults", " 5"),
        ("MaxResults", "5_000"),
        ("MaxResults", "\u0665"),  # an Arabic-Indic five: int() would take it
        ("MaxResults", "2147483648"),
        ("MaxResults", "1" * 25),
        ("MaxResults", ""),
        ("DryRun", "yes"),
        ("DryRun", "1"),
        ("VpcId.1", "vpc-\x00"),
        ("Filter.1.Name", "a\ud800"),
        ("Filter.1.Value.1", "\ufffe"),
    ],
)
def test_invalid_parameter_value(key: str, value: str) -> None:
    error = refused(request("DescribeVpcs", (key, value)))
    assert error.code == "InvalidParameterValue"
    assert error.message.startswith("Value (")


@pytest.mark.parametrize(
    ("action", "key", "value"),
    [
        ("DescribeSpotPriceHistory", "StartTime", "yesterday"),
        ("DescribeSpotPriceHistory", "StartTime", "2026-13-01T00:00:00Z"),
        ("DescribeSpotPriceHistory", "StartTime", "2026-11-30 10:00:00Z"),
        ("DescribeSpotPriceHistory", "StartTime", "0001-01-01T00:00:00+01:00"),
        ("ImportKeyPair", "PublicKeyMaterial", "not base64!"),
        ("CreateVpc", "Ipv4NetmaskLength", "1.5"),
    ],
)
def test_invalid_typed_values(action: str, key: str, value: str) -> None:
    error = refused(
        request(action, ("KeyName", "k"), (key, value))
        if action == "ImportKeyPair"
        else request(action, (key, value))
    )
    assert error.code == "InvalidParameterValue"


def test_long_values_are_cut_in_messages() -> None:
    error = refused(request("DescribeVpcs", ("MaxResults", "9" * 5000)))
    assert error.code == "InvalidParameterValue" and len(error.message) < 200


@pytest.mark.parametrize(
    "key",
    [
        "VpcId.0",
        "VpcId.01",
        f"VpcId.{MAX_LIST_INDEX + 1}",
        "VpcId.1000000000",
        "Filter.999999999999999.Name",
    ],
)
def test_list_indexes_are_bounded(key: str) -> None:
    start = time.monotonic()
    error = refused(request("DescribeVpcs", (key, "v")))
    assert error.code == "InvalidParameter"
    assert time.monotonic() - start < 1.0


def test_largest_index_is_accepted() -> None:
    parsed = parse_query(request("DescribeVpcs", (f"VpcId.{MAX_LIST_INDEX}", "v")))
    assert parsed.params == {"VpcIds": ["v"]}


def test_repeated_keys_are_refused() -> None:
    for pairs in (
        request("DescribeVpcs", ("VpcId.1", "a"), ("VpcId.1", "b")),
        request("DescribeVpcs", ("VpcId", ""), ("VpcId.1", "b")),
        [("Action", "DescribeVpcs"), ("Action", "DeleteVpc")],
        [("Action", "DescribeVpcs"), ("Version", VERSION), ("Version", VERSION)],
    ):
        assert refused(pairs).code == "InvalidParameter"


def test_size_bounds() -> None:
    too_many = request("DescribeVpcs", *[(f"VpcId.{i}", "v") for i in range(1, MAX_PARAMS)])
    assert refused(too_many).code == "InvalidParameter"
    error = refused(request("DescribeVpcs", ("NextToken", "x" * (MAX_VALUE_CHARS + 1))))
    assert error.code == "InvalidParameterValue"
    # A generator of endless pairs is read only up to the bound.
    endless = ((f"K{i}", "v") for i in range(10**12))
    assert refused(endless).code == "InvalidParameter"  # type: ignore[arg-type]


def test_decode_form_bounds_and_encoding() -> None:
    with pytest.raises(ApiError) as caught:
        decode_form("&".join(f"VpcId.{i}=v" for i in range(MAX_PARAMS + 1)))
    assert caught.value.code == "InvalidParameter"
    with pytest.raises(ApiError) as caught:
        decode_form(b"Action=%ff%fe")
    assert caught.value.code == "InvalidParameterValue"
    with pytest.raises(ApiError) as caught:
        decode_form(b"Action=\xff")
    assert caught.value.code == "InvalidParameterValue"
    with pytest.raises(ApiError):
        decode_form(b"x" * (2 * 1024 * 1024))
    assert decode_form("A=1+2&B=%20&C") == [("A", "1 2"), ("B", " "), ("C", "")]


_PIECES = st.sampled_from(
    [
        "Filter",
        "Value",
        "Name",
        "VpcId",
        "TagSpecification",
        "Tag",
        "Key",
        "IpPermissions",
        "IpRanges",
        "CidrIp",
        "FromPort",
        "MaxResults",
        "DryRun",
        "Monitoring",
        "Enabled",
        "0",
        "1",
        "2",
        "1000",
        "1001",
        "01",
        "",
        "x",
        "X-Amz-Date",
    ]
)
_KEYS = st.lists(_PIECES, min_size=1, max_size=6).map(".".join) | st.text(max_size=20)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["DescribeVpcs", "CreateVpc", "RunInstances", "AuthorizeSecurityGroupIngress"]),
    st.lists(
        st.tuples(_KEYS, st.text(max_size=8) | st.sampled_from(["1", "true", "-1"])), max_size=12
    ),
)
def test_hostile_pairs_give_params_or_an_ec2_error(
    action: str, pairs: list[tuple[str, str]]
) -> None:
    # Whatever arrives, the answer is a parse or an ApiError with a code from the reference.
    try:
        parsed = parse_query(request(action, *pairs))
    except ApiError as error:
        assert error.code in {
            "UnknownParameter",
            "MissingParameter",
            "InvalidParameter",
            "InvalidParameterValue",
        }
        assert len(error.message) < 300
    else:
        assert parsed.action == action
