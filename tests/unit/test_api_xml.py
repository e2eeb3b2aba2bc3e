"""EC2 XML rendering against botocore as the oracle: its EC2 response parser reads back exactly
the output we rendered, and our error bodies as the ClientError botocore raises."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import botocore.parsers
import pytest
from api_shapes import values_for
from botocore.model import OperationModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvpc.api import model
from openvpc.api.errors import ApiError, http_status
from openvpc.api.xml import namespace, render_api_error, render_error, render_response

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


def parsed(action: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """What botocore's EC2 parser reads from a response (ResponseMetadata checked, then dropped)."""
    operation: OperationModel = model.operation(action)
    result: dict[str, Any] = botocore.parsers.create_parser("ec2").parse(
        # botocore takes None for actions without an output shape (the stubs say Shape).
        {"body": body, "headers": {}, "status_code": status},
        operation.output_shape,  # type: ignore[arg-type]
    )
    meta = result.pop("ResponseMetadata")
    assert meta["HTTPStatusCode"] == status
    result["RequestId"] = meta["RequestId"]
    return result


TAGS = [{"Key": "Name", "Value": "red <&> \"'\r\n\t]]>"}, {"Key": "empty", "Value": ""}]
WHEN = datetime(2026, 11, 30, 10, 0, 1, 250000, tzinfo=UTC)

OUTPUTS: list[tuple[str, dict[str, Any]]] = [
    (
        "DescribeVpcs",
        {
            "Vpcs": [
                {
                    "VpcId": "vpc-1",
                    "CidrBlock": "10.0.0.0/16",
                    "State": "available",
                    "DhcpOptionsId": "dopt-1",
                    "InstanceTenancy": "default",
                    "IsDefault": False,
                    "OwnerId": "123456789012",
                    "CidrBlockAssociationSet": [
                        {
                            "AssociationId": "vpc-cidr-assoc-1",
                            "CidrBlock": "10.0.0.0/16",
                            "CidrBlockState": {"State": "associated"},
                        }
                    ],
                    "Tags": TAGS,
                },
                {"VpcId": "vpc-2", "IsDefault": True, "Tags": []},
            ],
            "NextToken": "next",
        },
    ),
    ("DescribeVpcs", {"Vpcs": []}),
    ("CreateVpc", {"Vpc": {"VpcId": "vpc-1", "CidrBlock": "10.1.0.0/16", "State": "pending"}}),
    (
        "DescribeSubnets",
        {
            "Subnets": [
                {
                    "SubnetId": "subnet-1",
                    "VpcId": "vpc-1",
                    "CidrBlock": "10.0.1.0/24",
                    "AvailableIpAddressCount": 251,
                    "AvailabilityZone": "us-east-1a",
                    "DefaultForAz": False,
                    "MapPublicIpOnLaunch": False,
                    "State": "available",
                    "Tags": TAGS,
                }
            ]
        },
    ),
    (
        "DescribeRouteTables",
        {
            "RouteTables": [
                {
                    "RouteTableId": "rtb-1",
                    "VpcId": "vpc-1",
                    "Associations": [
                        {
                            "Main": True,
                            "RouteTableAssociationId": "rtbassoc-1",
                            "RouteTableId": "rtb-1",
                        },
                        {"Main": False, "SubnetId": "subnet-1", "RouteTableId": "rtb-1"},
                    ],
                    "Routes": [
                        {
                            "DestinationCidrBlock": "10.0.0.0/16",
                            "GatewayId": "local",
                            "Origin": "CreateRouteTable",
                            "State": "active",
                        },
                        {
                            "DestinationCidrBlock": "0.0.0.0/0",
                            "NatGatewayId": "nat-1",
                            "Origin": "CreateRoute",
                            "State": "blackhole",
                        },
                    ],
                    "PropagatingVgws": [],
                    "Tags": [],
                }
            ]
        },
    ),
    (
        "RunInstances",
        {
            "ReservationId": "r-1",
            "OwnerId": "123456789012",
            "Groups": [{"GroupId": "sg-1", "GroupName": "default"}],
            "Instances": [
                {
                    "InstanceId": "i-1",
                    "ImageId": "ami-1",
                    "LaunchTime": WHEN,
                    "State": {"Code": 0, "Name": "pending"},
                    "PrivateIpAddress": "10.0.1.4",
                    "SubnetId": "subnet-1",
                    "VpcId": "vpc-1",
                    "SourceDestCheck": True,
                    "NetworkInterfaces": [
                        {
                            "NetworkInterfaceId": "eni-1",
                            "MacAddress": "02:00:00:00:00:01",
                            "Groups": [{"GroupId": "sg-1", "GroupName": "default"}],
                            "PrivateIpAddresses": [
                                {"PrivateIpAddress": "10.0.1.4", "Primary": True}
                            ],
                            "Attachment": {
                                "AttachTime": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                                "DeviceIndex": 0,
                                "DeleteOnTermination": True,
                            },
                        }
                    ],
                    "Tags": TAGS,
                }
            ],
        },
    ),
    (
        "DescribeSecurityGroups",
        {
            "SecurityGroups": [
                {
                    "GroupId": "sg-1",
                    "GroupName": "default",
                    "Description": "default VPC security group",
                    "VpcId": "vpc-1",
                    "IpPermissions": [
                        {
                            "IpProtocol": "-1",
                            "UserIdGroupPairs": [{"GroupId": "sg-1", "UserId": "123456789012"}],
                        }
                    ],
                    "IpPermissionsEgress": [
                        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
                    ],
                }
            ]
        },
    ),
    ("DescribeSpotPriceHistory", {"SpotPriceHistory": [{"SpotPrice": "0.1", "Timestamp": WHEN}]}),
    ("AttachInternetGateway", {}),
]


@pytest.mark.parametrize(("action", "output"), OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_botocore_parses_back_exactly(action: str, output: dict[str, Any]) -> None:
    body = render_response(action, output, "req-1")
    assert parsed(action, body) == {**output, "RequestId": "req-1"}


def test_envelope() -> None:
    body = render_response("CreateVpc", {"Vpc": {"VpcId": "vpc-1"}}, "req-<1>")
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<CreateVpcResponse xmlns=')
    root = ET.fromstring(body)
    assert root.tag == f"{{{NS}}}CreateVpcResponse" and namespace() == NS
    assert [child.tag for child in root] == [f"{{{NS}}}requestId", f"{{{NS}}}vpc"]
    assert root.findtext(f"{{{NS}}}requestId") == "req-<1>"
    assert root.findtext(f"{{{NS}}}vpc/{{{NS}}}vpcId") == "vpc-1"


def test_lists_are_items_under_the_location_name() -> None:
    body = render_response("DescribeVpcs", OUTPUTS[0][1], "r")
    root = ET.fromstring(body)
    items = root.findall(f"{{{NS}}}vpcSet/{{{NS}}}item")
    assert len(items) == 2
    assert items[0].findtext(f"{{{NS}}}isDefault") == "false"
    assert [
        t.findtext(f"{{{NS}}}key") for t in items[0].findall(f"{{{NS}}}tagSet/{{{NS}}}item")
    ] == [
        "Name",
        "empty",
    ]
    assert items[0].findtext(f"{{{NS}}}tagSet/{{{NS}}}item/{{{NS}}}value") == TAGS[0]["Value"]


def test_actions_without_output_answer_return_true() -> None:
    for action in ("DeleteVpc", "AttachInternetGateway"):
        body = render_response(action, None, "r")
        assert ET.fromstring(body).findtext(f"{{{NS}}}return") == "true"
        assert parsed(action, body) == {"RequestId": "r"}
    with pytest.raises(ValueError):
        render_response("DeleteVpc", {"Return": True}, "r")


def test_timestamps_are_iso8601_utc_with_z() -> None:
    east = timezone(timedelta(hours=2))
    body = render_response(
        "DescribeSpotPriceHistory",
        {
            "SpotPriceHistory": [
                {"Timestamp": datetime(2026, 11, 30, 12, 0, 0, tzinfo=east)},
                {"Timestamp": datetime(2026, 11, 30, 12, 0, 0, 123, tzinfo=UTC)},
            ]
        },
        "r",
    )
    texts = [e.text for e in ET.fromstring(body).iter(f"{{{NS}}}timestamp")]
    assert texts == ["2026-11-30T10:00:00.000Z", "2026-11-30T12:00:00.000123Z"]


@pytest.mark.parametrize(
    "output",
    [
        {"Vpcs": [{"Bogus": "x"}]},  # no such member
        {"Bogus": []},
        {"Vpcs": [{"IsDefault": "false"}]},  # a string for a boolean
        {"Vpcs": [{"VpcId": 1}]},
        {"Vpcs": {"VpcId": "vpc-1"}},  # a mapping for a list
        {"Vpcs": ["vpc-1"]},  # a string for a structure
        {"Vpcs": [None]},
    ],
)
def test_output_not_following_the_shape_is_refused(output: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        render_response("DescribeVpcs", output, "r")


def test_scalar_types_are_checked() -> None:
    with pytest.raises(ValueError):  # bool is not an integer
        render_response("DescribeSubnets", {"Subnets": [{"AvailableIpAddressCount": True}]}, "r")
    with pytest.raises(ValueError):  # a naive datetime has no defined instant
        render_response(
            "DescribeSpotPriceHistory",
            {"SpotPriceHistory": [{"Timestamp": datetime(2026, 1, 1)}]},
            "r",
        )


def test_characters_xml_cannot_carry_are_replaced() -> None:
    hostile = "a\x00b\x1b\ud800c\ufffe"
    body = render_response("DescribeVpcs", {"Vpcs": [{"VpcId": hostile}]}, "r\x01")
    result = parsed("DescribeVpcs", body)  # well-formed: it parses
    assert result["Vpcs"] == [{"VpcId": "a\ufffdb\ufffd\ufffdc\ufffd"}]
    assert result["RequestId"] == "r\ufffd"


# Outputs botocore must read back, for the VPC actions and for any action of the model.
VPC_OUTPUTS = [
    "DescribeVpcs",
    "CreateVpc",
    "DescribeSubnets",
    "DescribeRouteTables",
    "RunInstances",
    "DescribeSecurityGroups",
    "DescribeNetworkAcls",
    "DescribeInternetGateways",
    "DescribeNatGateways",
    "DescribeTags",
]


def _output_strategy(action: str) -> st.SearchStrategy[Any] | None:
    shape = model.output_shape(action)
    return st.just({}) if shape is None else values_for(shape)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_vpc_outputs_round_trip(data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(VPC_OUTPUTS))
    strategy = _output_strategy(action)
    assert strategy is not None
    output = data.draw(strategy)
    assert parsed(action, render_response(action, output, "r")) == {**output, "RequestId": "r"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_generated_outputs_of_any_action_round_trip(data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(sorted(model.operation_names())))
    strategy = _output_strategy(action)
    if strategy is None:
        return
    output = data.draw(strategy)
    assert parsed(action, render_response(action, output, "r")) == {**output, "RequestId": "r"}


ERRORS = [
    ("InvalidVpcID.NotFound", "The vpc ID 'vpc-1' does not exist", 400),
    ("AuthFailure", "AWS was not able to validate the provided access credentials", 401),
    ("UnauthorizedOperation", "You are not authorized to perform this operation.", 403),
    ("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412),
    ("InternalError", "An internal error has occurred", 500),
    ("RequestLimitExceeded", "Request limit exceeded.", 503),
    ("Unavailable", "The server is overloaded", 503),
    ("MissingParameter", "The request must contain the parameter VpcId", 400),
    ("InvalidParameterValue", "Value (<&>\"') for parameter x is invalid.\r\n", 400),
]


@pytest.mark.parametrize(("code", "message", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_error_bodies_parse_as_client_errors(code: str, message: str, status: int) -> None:
    got_status, body = render_error(code, message, "req-9")
    assert got_status == status == http_status(code)
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>')
    result = botocore.parsers.create_parser("ec2").parse(
        {"body": body, "headers": {}, "status_code": status},
        model.operation("DescribeVpcs").output_shape,  # type: ignore[arg-type]
    )
    assert result["Error"] == {"Code": code, "Message": message}
    assert result["ResponseMetadata"]["RequestId"] == "req-9"
    root = ET.fromstring(body)
    assert root.findtext("RequestID") == "req-9"  # RequestID here, requestId in successes


def test_api_error_renders_with_its_status() -> None:
    error = ApiError("AuthFailure", "AWS was not able to validate the provided access credentials")
    assert error.status == 401
    status, body = render_api_error(error, "r")
    assert status == 401 and b"<Code>AuthFailure</Code>" in body
    assert http_status("SomethingNew") == 400


def test_list_members_without_a_location_name_are_items() -> None:
    # InferenceDeviceInfoList's member has no locationName: EC2's <item> (botocore reads any tag).
    output = {
        "InstanceTypes": [
            {"InferenceAcceleratorInfo": {"Accelerators": [{"Count": 1, "Name": "inf"}]}}
        ]
    }
    body = render_response("DescribeInstanceTypes", output, "r")
    path = "instanceTypeSet/item/inferenceAcceleratorInfo/accelerators/item/name"
    assert ET.fromstring(body).findtext("/".join(f"{{{NS}}}{p}" for p in path.split("/"))) == "inf"
    assert parsed("DescribeInstanceTypes", body) == {**output, "RequestId": "r"}
