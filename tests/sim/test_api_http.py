"""The HTTP side of the API: SigV4 refusals on raw signed requests, size limits, GET, keep-alive
and many clients at once, against the real server."""

import http.client
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from apikit import REGION, Api, start_api, stop_api
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from openvpc.api.query import MAX_BODY_BYTES


def signed(api: Api, tenant: str, body: str, secret: str | None = None) -> AWSRequest:
    key, real = api.keys[tenant]
    request = AWSRequest(
        method="POST",
        url=api.endpoint + "/",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(key, secret or real), "ec2", REGION).add_auth(request)
    return request


def send(api: Api, request: AWSRequest, body: bytes | None = None) -> tuple[int, str]:
    host, port = api.server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        data = request.body if body is None else body
        headers = dict(request.headers.items())
        headers["Content-Length"] = str(len(data))
        conn.request("POST", "/", body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def code(text: str) -> str:
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


DESCRIBE = "Action=DescribeVpcs&Version=2016-11-15"


def test_a_signed_request_passes(api: Api) -> None:
    status, text = send(api, signed(api, "alice", DESCRIBE))
    assert status == 200, text
    assert "<DescribeVpcsResponse" in text


def test_wrong_secret(api: Api) -> None:
    status, text = send(api, signed(api, "alice", DESCRIBE, secret="s" * 40))
    assert (status, code(text)) == (401, "AuthFailure")


def test_tampered_body(api: Api) -> None:
    request = signed(api, "alice", "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16")
    status, text = send(api, request, b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.9.0.0/16")
    assert (status, code(text)) == (401, "AuthFailure")
    assert api.service.describe_vpcs("alice") == ()


def test_signature_replayed_for_another_action(api: Api) -> None:
    vpc = api.service.create_vpc("alice", "keep", "10.0.0.0/16")
    request = signed(api, "alice", DESCRIBE)
    status, text = send(
        api, request, f"Action=DeleteVpc&Version=2016-11-15&VpcId={vpc.id}".encode()
    )
    assert (status, code(text)) == (401, "AuthFailure")
    assert [v.id for v in api.service.describe_vpcs("alice")] == [vpc.id]


def test_a_twenty_minute_old_signature_is_refused(tmp_path: Path) -> None:
    late = start_api(tmp_path / "db", clock=lambda: time.time() + 20 * 60)
    try:
        status, text = send(late, signed(late, "alice", DESCRIBE))
        assert status in (400, 401, 403) and code(text) in ("RequestExpired", "AuthFailure")
    finally:
        stop_api(late)


def test_unsigned_request(api: Api) -> None:
    request = AWSRequest(method="POST", url=api.endpoint + "/", data=DESCRIBE.encode())
    status, text = send(api, request)
    assert (status, code(text)) == (403, "MissingAuthenticationToken")


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    host, port = api.server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest("POST", "/")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        conn.send(b"x" * 1024)  # the rest never comes: the answer must not wait for it
        response = conn.getresponse()
        assert response.status == 413
    finally:
        conn.close()


def test_get_with_a_presigned_query(api: Api) -> None:
    key, secret = api.keys["alice"]
    from botocore.auth import SigV4QueryAuth

    request = AWSRequest(method="GET", url=api.endpoint + "/?" + DESCRIBE)
    SigV4QueryAuth(Credentials(key, secret), "ec2", REGION, expires=60).add_auth(request)
    parts = urllib.parse.urlsplit(str(request.url))
    host, port = api.server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}")
        response = conn.getresponse()
        assert response.status == 200, response.read()
    finally:
        conn.close()


def test_keep_alive_and_many_clients_at_once(api: Api) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            ec2 = api.ec2("alice" if n % 2 else "bob")
            for _ in range(5):  # one connection, reused
                ec2.describe_vpcs()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert not any(t.is_alive() for t in threads)


@pytest.mark.parametrize(
    "body,expected",
    [
        ("Version=2016-11-15", "MissingAction"),
        ("Action=CreateVpc&Version=2016-11-15", "MissingParameter"),
        ("Action=DescribeVpcs&Version=2016-11-15&Bogus=1", "UnknownParameter"),
        ("Action=DescribeVpcs&Version=2000-01-01", "NoSuchVersion"),
        ("Action=NoSuchThing&Version=2016-11-15", "InvalidAction"),
    ],
)
def test_malformed_requests(api: Api, body: str, expected: str) -> None:
    status, text = send(api, signed(api, "alice", body))
    assert status == 400
    assert code(text) == expected


def test_any_key_mode_takes_unknown_keys_as_the_default_tenant(tmp_path: Path) -> None:
    dev = start_api(tmp_path / "db", unknown_keys_as="alice")
    try:
        import boto3

        anyone = boto3.client(
            "ec2",
            endpoint_url=dev.endpoint,
            region_name=REGION,
            aws_access_key_id="AKIAANYTHINGATALL000",
            aws_secret_access_key="whatever",
        )
        vpc = anyone.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        assert [v.id for v in dev.service.describe_vpcs("alice")] == [vpc]
        # an issued key is still verified: bob's key with a wrong secret fails
        status, text = send(dev, signed(dev, "bob", DESCRIBE, secret="s" * 40))
        assert (status, code(text)) == (401, "AuthFailure")
    finally:
        stop_api(dev)
