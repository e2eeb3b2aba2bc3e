"""A real botocore EC2 client against the wire layer, in process: its requests go through
decode_form and parse_query, and it reads our XML (and our errors, as ClientError) itself.

No network: botocore's before-send hook hands the signed request to the handler below.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ClientError

from openvpc.api.errors import ApiError
from openvpc.api.query import QueryRequest, decode_form, parse_query
from openvpc.api.xml import render_api_error, render_response


class _Raw:
    """The body of a response, as botocore reads it."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class Wire:
    """Answers every request with `answer(request)`, recording what parse_query made of it."""

    def __init__(self) -> None:
        self.seen: list[QueryRequest] = []
        self.answers: list[dict[str, Any] | ApiError | None] = []

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        request_id = f"req-{len(self.seen)}"
        try:
            body = request.body if isinstance(request.body, bytes | str) else b""
            parsed = parse_query(decode_form(body))
            self.seen.append(parsed)
            answer = self.answers.pop(0)
            if isinstance(answer, ApiError):
                raise answer
            status, xml = 200, render_response(parsed.action, answer, request_id)
        except ApiError as error:
            status, xml = render_api_error(error, request_id)
        headers = HTTPHeaders()
        headers["x-amzn-requestid"] = request_id
        return AWSResponse(request.url, status, headers, _Raw(xml))


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def ec2(wire: Wire, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Nothing from the machine's AWS configuration may leak into the client.
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, "/dev/null")
    session = botocore.session.Session()
    client = session.create_client(
        "ec2",
        region_name="us-east-1",
        endpoint_url="http://ec2.test",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    # A before-send handler returns the response (the stubs type handlers as returning None).
    client.meta.events.register("before-send.ec2.*", wire)  # type: ignore[arg-type]
    return client


def test_create_vpc_round_trip(ec2: Any, wire: Wire) -> None:
    vpc = {"VpcId": "vpc-1", "CidrBlock": "10.1.0.0/16", "State": "pending", "IsDefault": False}
    wire.answers.append({"Vpc": vpc})
    result = ec2.create_vpc(
        CidrBlock="10.1.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "a&b"}]}],
    )
    assert wire.seen == [
        QueryRequest(
            "CreateVpc",
            "2016-11-15",
            {
                "CidrBlock": "10.1.0.0/16",
                "TagSpecifications": [
                    {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "a&b"}]}
                ],
            },
        )
    ]
    assert result["Vpc"] == vpc
    assert result["ResponseMetadata"]["RequestId"] == "req-0"


def test_idempotency_token_is_filled_by_the_client(ec2: Any, wire: Wire) -> None:
    wire.answers.append({"RouteTable": {"RouteTableId": "rtb-1", "VpcId": "vpc-1"}})
    result = ec2.create_route_table(VpcId="vpc-1")
    token = wire.seen[0].params["ClientToken"]
    assert isinstance(token, str) and len(token) == 36
    assert result["RouteTable"] == {"RouteTableId": "rtb-1", "VpcId": "vpc-1"}


def test_paginated_describe(ec2: Any, wire: Wire) -> None:
    wire.answers += [
        {"Vpcs": [{"VpcId": f"vpc-{i}"} for i in range(5)], "NextToken": "t1"},
        {"Vpcs": [{"VpcId": "vpc-5"}]},
    ]
    pages = ec2.get_paginator("describe_vpcs").paginate(
        Filters=[{"Name": "tag:Name", "Values": ["a", "b"]}], PaginationConfig={"PageSize": 5}
    )
    ids = [vpc["VpcId"] for page in pages for vpc in page["Vpcs"]]
    assert ids == [f"vpc-{i}" for i in range(6)]
    assert [seen.params.get("NextToken") for seen in wire.seen] == [None, "t1"]
    assert wire.seen[1].params["Filters"] == [{"Name": "tag:Name", "Values": ["a", "b"]}]
    assert wire.seen[1].params["MaxResults"] == 5


def test_action_without_output(ec2: Any, wire: Wire) -> None:
    wire.answers.append(None)
    result = ec2.delete_vpc(VpcId="vpc-1")
    assert wire.seen[0].params == {"VpcId": "vpc-1"}
    assert set(result) == {"ResponseMetadata"}


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        ("InvalidVpcID.NotFound", "The vpc ID 'vpc-9' does not exist", 400),
        ("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412),
        ("AuthFailure", "AWS was not able to validate the provided access credentials", 401),
        ("UnauthorizedOperation", "You are not authorized to perform this operation.", 403),
        ("RequestLimitExceeded", "Request limit exceeded.", 503),
    ],
)
def test_errors_reach_the_client_as_client_errors(
    ec2: Any, wire: Wire, code: str, message: str, status: int
) -> None:
    wire.answers.append(ApiError(code, message))
    with pytest.raises(ClientError) as caught:
        ec2.describe_vpcs(VpcIds=["vpc-9"], DryRun=True)
    response = caught.value.response
    assert response["Error"]["Code"] == code
    assert response["Error"]["Message"] == message
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["RequestId"] == "req-0"
    assert wire.seen[0].params == {"VpcIds": ["vpc-9"], "DryRun": True}
