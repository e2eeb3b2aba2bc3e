"""The SigV4 verifier against botocore's own signer: what botocore signs is accepted with the
signer's tenant, and each kind of tampering is refused with the exact EC2 error code."""

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import assume, given
from hypothesis import strategies as st

from openvpc.api import sigv4
from openvpc.api.sigv4 import NOT_VALIDATED, SigV4Error, verify

RED_KEY, RED_SECRET = "AKIAREDREDREDREDRED2", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
BLUE_KEY, BLUE_SECRET = "AKIABLUEBLUEBLUEBLU3", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
KEYS = {RED_KEY: (RED_SECRET, "red"), BLUE_KEY: (BLUE_SECRET, "blue")}
HOST = "127.0.0.1:8787"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
DESCRIBE = {"Action": "DescribeVpcs", "Version": "2016-11-15"}


@dataclass(frozen=True)
class Wire:
    """A request as the server receives it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name.lower())

    def with_header(self, name: str, value: str) -> "Wire":
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        return replace(self, headers=(*kept, (name, value)))

    def without_header(self, name: str) -> "Wire":
        return replace(self, headers=tuple((k, v) for k, v in self.headers if k.lower() != name))

    def signed_at(self) -> datetime:
        stamp = (
            next(
                (v for k, v in self.headers if k.lower() == "x-amz-date"),
                None,
            )
            or self.query.split("X-Amz-Date=")[1][:16]
        )
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def sign(
    params: dict[str, str],
    *,
    method: str = "POST",
    region: str = "us-east-1",
    service: str = "ec2",
    key: str = RED_KEY,
    secret: str = RED_SECRET,
    token: str | None = None,
    presign: bool = False,
    expires: int = 3600,
    headers: dict[str, str] | None = None,
) -> Wire:
    """Sign with botocore as boto3 does (form body for POST, the query string for GET), then
    add the Host header the HTTP client sends."""
    url = f"http://{HOST}/"
    all_headers = {"Content-Type": FORM} if method == "POST" else {}
    all_headers.update(headers or {})
    if method == "POST":
        request = AWSRequest(method, url, data=params, headers=all_headers)
    else:
        request = AWSRequest(method, url, params=params, headers=all_headers)
    creds = Credentials(key, secret, token)
    if presign:
        SigV4QueryAuth(creds, service, region, expires=expires).add_auth(request)
    else:
        SigV4Auth(creds, service, region).add_auth(request)
    prepared = request.prepare()
    split = urlsplit(prepared.url)
    sent = list(prepared.headers.items())
    if not any(k.lower() == "host" for k, _ in sent):
        sent.append(("Host", split.netloc))
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    assert isinstance(body, bytes)
    return Wire(method, split.path, split.query, tuple(sent), body)


def check(
    wire: Wire,
    after: timedelta = timedelta(0),
    *,
    at: datetime | None = None,
    services: tuple[str, ...] = ("ec2",),
    regions: set[str] | None = None,
) -> sigv4.Verified:
    """Verify `wire` `after` its signing time (or after `at`)."""
    now = (wire.signed_at() if at is None else at) + after
    return verify(
        wire.method,
        wire.path,
        wire.query,
        wire.headers,
        wire.body,
        now,
        KEYS.get,
        services=services,
        regions=regions,
    )


def refused(
    wire: Wire, code: str, after: timedelta = timedelta(0), *, regions: set[str] | None = None
) -> SigV4Error:
    """Expect `wire` refused with exactly this EC2 code."""
    with pytest.raises(SigV4Error) as caught:
        check(wire, after, regions=regions)
    assert caught.value.code == code, caught.value
    return caught.value


# -- accepted ---------------------------------------------------------------------------------
@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-northeast-1", "local"])
def test_a_signed_post_is_accepted_for_its_tenant_and_region(region: str) -> None:
    done = check(sign(DESCRIBE, region=region))
    assert (done.tenant, done.access_key_id, done.region, done.service) == (
        "red",
        RED_KEY,
        region,
        "ec2",
    )


def test_the_key_names_the_tenant() -> None:
    assert check(sign(DESCRIBE, key=BLUE_KEY, secret=BLUE_SECRET)).tenant == "blue"


RESERVED = {
    **DESCRIBE,
    "Filter.1.Name": "tag:Name",
    "Filter.1.Value.1": "é 漢字 +/=&?%~*'()!;,:@$#[]",
    "Filter.1.Value.2": "a  b\tc",
    "Filter.2.Name": "",
    "Tag.1.Key": "100% sure",
}


@pytest.mark.parametrize(
    ("method", "presign"), [("POST", False), ("GET", False), ("GET", True), ("POST", True)]
)
def test_unicode_and_reserved_characters_in_every_form(method: str, presign: bool) -> None:
    wire = sign(RESERVED, method=method, presign=presign, region="eu-central-1")
    assert (wire.body == b"") == (method == "GET" or presign)  # botocore moves it to the URL
    assert check(wire).tenant == "red"


def test_extra_unsigned_headers_do_not_matter() -> None:
    wire = sign(DESCRIBE)
    for name, value in [
        ("User-Agent", "Boto3/1.35 md/Botocore"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("Accept-Encoding", "identity"),
        ("X-Unsigned", "  spaces  "),
    ]:
        wire = wire.with_header(name, value)
    assert check(wire).tenant == "red"


def test_more_signed_headers_and_the_payload_hash_header() -> None:
    body_hash = hashlib.sha256(b"Action=DescribeVpcs&Version=2016-11-15").hexdigest()
    wire = sign(
        DESCRIBE,
        headers={"X-Amz-Content-SHA256": body_hash, "X-Custom": "a   b  c", "User-Agent": "x"},
    )
    assert "x-custom" in wire.header("Authorization")
    assert check(wire).tenant == "red"


def test_clock_skew_up_to_15_minutes_either_way() -> None:
    wire = sign(DESCRIBE)
    assert check(wire, timedelta(minutes=14, seconds=59)).tenant == "red"
    assert check(wire, -timedelta(minutes=14, seconds=59)).tenant == "red"
    assert check(wire, timedelta(minutes=15)).tenant == "red"
    refused(wire, "RequestExpired", timedelta(minutes=15, seconds=1))
    refused(wire, "RequestExpired", -timedelta(minutes=15, seconds=1))


def test_now_may_be_epoch_seconds_but_not_a_naive_datetime() -> None:
    wire = sign(DESCRIBE)
    stamp = wire.signed_at().timestamp()
    ok = verify("POST", "/", "", wire.headers, wire.body, stamp + 60, KEYS.get)
    assert ok.tenant == "red"
    with pytest.raises(ValueError):
        verify("POST", "/", "", wire.headers, wire.body, datetime(2026, 1, 1), KEYS.get)


def test_a_presigned_url_lives_until_it_expires() -> None:
    wire = sign(DESCRIBE, method="GET", presign=True, expires=60)
    assert check(wire, timedelta(seconds=60)).tenant == "red"
    error = refused(wire, "RequestExpired", timedelta(seconds=61))
    assert error.status == 400
    long = sign(DESCRIBE, method="GET", presign=True, expires=3600)
    assert check(long, timedelta(minutes=20)).tenant == "red"
    refused(long, "RequestExpired", -timedelta(minutes=16))  # dated in the future


def _with_date_header(value: str, stamp: str) -> Wire:
    """A request signed over a Date header instead of X-Amz-Date: botocore always sends
    X-Amz-Date, so its signer's parts are used directly on a request that has only Date."""
    auth = SigV4Auth(Credentials(RED_KEY, RED_SECRET), "ec2", "us-east-1")
    body = "Action=DescribeVpcs&Version=2016-11-15"
    request = AWSRequest(
        "POST", f"http://{HOST}/", data=body, headers={"Content-Type": FORM, "Date": value}
    )
    request.context["timestamp"] = stamp
    request.headers["Host"] = HOST
    canonical = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical)
    signed = ";".join(sorted(auth.headers_to_sign(request)))
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(request)}, SignedHeaders={signed}, "
        f"Signature={auth.signature(string_to_sign, request)}"
    )
    headers = (("Content-Type", FORM), ("Date", value), ("Host", HOST))
    return Wire("POST", "/", "", (*headers, ("Authorization", authorization)), body.encode())


@pytest.mark.parametrize("value", ["20261130T100000Z", "Mon, 30 Nov 2026 10:00:00 GMT"])
def test_the_date_header_stands_in_for_x_amz_date(value: str) -> None:
    wire = _with_date_header(value, "20261130T100000Z")
    now = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    assert verify("POST", "/", "", wire.headers, wire.body, now, KEYS.get).tenant == "red"
    late = now + timedelta(minutes=20)
    with pytest.raises(SigV4Error, match=r"^RequestExpired"):
        verify("POST", "/", "", wire.headers, wire.body, late, KEYS.get)


def test_sts_is_accepted_when_the_server_serves_it() -> None:
    wire = sign({"Action": "GetCallerIdentity", "Version": "2011-06-15"}, service="sts")
    assert check(wire, services=("ec2", "sts")).service == "sts"


# -- refused ----------------------------------------------------------------------------------
def test_wrong_secret_and_unknown_key_look_the_same() -> None:
    wrong = refused(sign(DESCRIBE, secret=BLUE_SECRET), "AuthFailure")
    unknown = refused(sign(DESCRIBE, key="AKIAUNKNOWNUNKNOWN22"), "AuthFailure")
    assert (
        (wrong.message, wrong.status) == (unknown.message, unknown.status) == (NOT_VALIDATED, 401)
    )
    refused(sign(DESCRIBE, key="AKIA-NOT-A-KEY"), "AuthFailure")


def test_a_20_minute_old_request_has_expired() -> None:
    error = refused(sign(DESCRIBE), "RequestExpired", timedelta(minutes=20))
    assert error.status == 400


def test_a_tampered_body_is_refused() -> None:
    wire = sign(DESCRIBE)
    tampered = replace(wire, body=wire.body.replace(b"DescribeVpcs", b"DescribeVpcz"))
    assert refused(tampered, "AuthFailure").message == NOT_VALIDATED


def test_a_signature_replayed_for_another_action_is_refused() -> None:
    wire = sign(DESCRIBE)
    body = b"Action=DeleteVpc&Version=2016-11-15&VpcId=vpc-0123456789abcdef0"
    replayed = replace(wire, body=body).with_header("Content-Length", str(len(body)))
    refused(replayed, "AuthFailure")
    get = sign(DESCRIBE, method="GET")
    refused(replace(get, query=get.query.replace("DescribeVpcs", "DeleteVpc")), "AuthFailure")
    presigned = sign(DESCRIBE, method="GET", presign=True)
    swapped = replace(presigned, query=presigned.query.replace("DescribeVpcs", "DeleteVpc"))
    refused(swapped, "AuthFailure")
    longer = replace(
        presigned, query=presigned.query.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200")
    )
    refused(longer, "AuthFailure", timedelta(minutes=90))
    # parameters added to a signed URL were not signed
    refused(replace(get, query=get.query + "&VpcId.1=vpc-1"), "AuthFailure")


def test_tampered_added_or_dropped_signed_headers_are_refused() -> None:
    wire = sign(DESCRIBE, headers={"X-Custom": "one"})
    refused(wire.with_header("Content-Type", "text/plain"), "AuthFailure")
    refused(wire.with_header("Host", "127.0.0.1:8788"), "AuthFailure")
    refused(wire.with_header("X-Custom", "two"), "AuthFailure")
    # a second value of a signed header changes what was signed
    refused(replace(wire, headers=(*wire.headers, ("X-Custom", "two"))), "AuthFailure")
    refused(wire.without_header("x-custom"), "AuthFailure")
    # a header claimed as signed that the signer did not sign
    auth = wire.header("Authorization").replace(
        "SignedHeaders=content-type;host;", "SignedHeaders=content-type;host;user-agent;"
    )
    refused(wire.with_header("Authorization", auth).with_header("User-Agent", "x"), "AuthFailure")


def test_the_credential_scope_must_be_ec2_in_an_accepted_region_on_the_signing_day() -> None:
    error = refused(sign(DESCRIBE, service="sts"), "AuthFailure")
    assert error.message == "Credential should be scoped to correct service: 'ec2'."
    error = refused(sign(DESCRIBE, region="mars-1"), "AuthFailure", regions={"us-east-1"})
    assert error.message == "Credential should be scoped to a valid region, not 'mars-1'."
    assert check(sign(DESCRIBE), regions={"us-east-1"}).region == "us-east-1"
    wire = sign(DESCRIBE)
    day_before = (wire.signed_at() - timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
    error = refused(wire.with_header("X-Amz-Date", day_before), "AuthFailure")
    assert error.message.startswith("Date in Credential scope does not match")
    wrong_end = wire.header("Authorization").replace("/aws4_request", "/aws4_reques")
    refused(wire.with_header("Authorization", wrong_end), "AuthFailure")


def test_no_signature_at_all() -> None:
    wire = sign(DESCRIBE).without_header("authorization")
    error = refused(wire, "MissingAuthenticationToken")
    assert error.status == 403


@pytest.mark.parametrize("part", ["Credential", "SignedHeaders", "Signature"])
def test_an_authorization_header_missing_a_part(part: str) -> None:
    wire = sign(DESCRIBE)
    kept = [p for p in wire.header("Authorization").split(", ") if part not in p]
    error = refused(wire.with_header("Authorization", ", ".join(kept)), "IncompleteSignature")
    assert f"requires '{part}' parameter" in error.message
    assert error.status == 400


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 "),  # another algorithm
        ("/us-east-1/ec2/", "/us-east-1/"),  # a four-part credential
        ("SignedHeaders=content-type;host;", "SignedHeaders=host;content-type;"),  # unsorted
        ("SignedHeaders=content-type;host;", "SignedHeaders=content-type;"),  # host unsigned
        (", SignedHeaders=", " SignedHeaders="),  # not comma-separated
    ],
)
def test_a_malformed_authorization_header(old: str, new: str) -> None:
    wire = sign(DESCRIBE)
    authorization = wire.header("Authorization")
    assert old in authorization
    refused(
        wire.with_header("Authorization", authorization.replace(old, new)), "IncompleteSignature"
    )


def test_a_missing_or_malformed_date() -> None:
    wire = sign(DESCRIBE)
    stamp = wire.signed_at()
    no_date = wire.without_header("x-amz-date")
    with pytest.raises(SigV4Error, match=r"^IncompleteSignature: .*'X-Amz-Date' or a 'Date'"):
        verify("POST", "/", "", no_date.headers, wire.body, stamp, KEYS.get)
    for bad in ("2026-11-30T10:00:00Z", "20261399T000000Z", "yesterday"):
        garbled = wire.with_header("X-Amz-Date", bad)
        with pytest.raises(SigV4Error, match=r"^IncompleteSignature: Date must be in ISO-8601"):
            verify("POST", "/", "", garbled.headers, wire.body, stamp, KEYS.get)


def test_ambiguous_requests_are_refused() -> None:
    wire = sign(DESCRIBE)
    twice = replace(wire, headers=(*wire.headers, ("authorization", wire.header("Authorization"))))
    refused(twice, "IncompleteSignature")
    presigned = sign(DESCRIBE, method="GET", presign=True)
    both = presigned.with_header("Authorization", wire.header("Authorization"))
    refused(both, "IncompleteSignature")
    doubled = replace(presigned, query=presigned.query + "&X-Amz-Date=20261130T000000Z")
    refused(doubled, "IncompleteSignature")


def test_presigned_urls_missing_or_bad_parts() -> None:
    wire = sign(DESCRIBE, method="GET", presign=True)
    no_signature = "&".join(p for p in wire.query.split("&") if "X-Amz-Signature" not in p)
    error = refused(replace(wire, query=no_signature), "IncompleteSignature")
    assert "X-Amz-Signature" in error.message
    for expires in ("0", "604801", "-5", "soon"):
        bad = wire.query.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}")
        refused(replace(wire, query=bad), "IncompleteSignature")


def test_session_tokens_are_never_valid_here() -> None:
    error = refused(sign(DESCRIBE, token="FQoGZXIvYXdzEXAMPLE"), "AuthFailure")
    assert "security token" in error.message
    refused(sign(DESCRIBE, method="GET", presign=True, token="FQoGZXIvYXdzEXAMPLE"), "AuthFailure")


def test_a_declared_payload_hash_must_be_the_bodys() -> None:
    error = refused(
        sign(DESCRIBE, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}), "AuthFailure"
    )
    assert "x-amz-content-sha256" in error.message
    wrong = hashlib.sha256(b"something else").hexdigest()
    refused(sign(DESCRIBE, headers={"X-Amz-Content-SHA256": wrong}), "AuthFailure")


def test_sizes_are_bounded() -> None:
    wire = sign(DESCRIBE)
    big = replace(wire, body=b"A" * (sigv4.MAX_BODY_BYTES + 1))
    assert refused(big, "RequestEntityTooLarge").status == 413
    many = replace(wire, headers=wire.headers + tuple((f"X-H{i}", "v") for i in range(100)))
    refused(many, "IncompleteSignature")
    refused(replace(wire, query="a=b&" * (sigv4.MAX_QUERY_PARAMS + 1)), "IncompleteSignature")


# -- any single change is refused -------------------------------------------------------------
@cache
def _signed_once() -> Wire:
    return sign({**DESCRIBE, "Filter.1.Name": "vpc-id", "Filter.1.Value.1": "vpc-0a1b2c3d"})


@given(st.data())
def test_any_single_byte_change_of_the_body_is_refused(data: st.DataObject) -> None:
    wire = _signed_once()
    at = data.draw(st.integers(0, len(wire.body) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != wire.body[at]))
    body = wire.body[:at] + bytes([byte]) + wire.body[at + 1 :]
    with pytest.raises(SigV4Error):
        check(replace(wire, body=body), at=wire.signed_at())


@given(st.data())
def test_any_single_change_of_a_signed_header_is_refused(data: st.DataObject) -> None:
    wire = _signed_once()
    name = data.draw(st.sampled_from(["Content-Type", "Host", "X-Amz-Date"]))
    value = wire.header(name)
    at = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.characters(codec="latin-1").filter(lambda c: c != value[at]))
    # SigV4 folds runs of white space into one space: white space for white space is the same
    assume(not (char.isspace() and value[at].isspace()))
    with pytest.raises(SigV4Error):
        check(wire.with_header(name, value[:at] + char + value[at + 1 :]), at=wire.signed_at())


# -- hostile input ----------------------------------------------------------------------------
def test_characters_no_client_signs_are_refused_not_crashed_on() -> None:
    wire = sign(DESCRIBE)
    at = wire.signed_at()
    for method, path, query in [
        ("POST\n/", "/", ""),
        ("POST", "/\ud800", ""),
        ("POST", "/", "Action=\udcff"),
        ("POST", "relative", ""),
    ]:
        with pytest.raises(SigV4Error, match=r"^IncompleteSignature: "):
            verify(method, path, query, wire.headers, wire.body, at, KEYS.get)
    refused(wire.with_header("X-Custom", "a\r\nX-Injected: 1"), "IncompleteSignature")
    refused(wire.with_header("Bad Name", "v"), "IncompleteSignature")


_AUTH_WORDS = st.sampled_from(
    ["AWS4-HMAC-SHA256", "Credential=", "SignedHeaders=", "Signature=", ",", " ", "/", ";",
     "host", RED_KEY, "20261130", "us-east-1", "ec2", "aws4_request", "0" * 64]
)  # fmt: skip


@given(
    method=st.sampled_from(["POST", "GET", "post", ""]) | st.text(max_size=6),
    path=st.sampled_from(["/", "//a/../", "/%2F"]) | st.text(max_size=30),
    query=st.text(max_size=120),
    authorization=st.lists(_AUTH_WORDS | st.text(max_size=8), max_size=16).map("".join),
    date=st.sampled_from(["20261130T100000Z", "Mon, 30 Nov 2026 10:00:00 GMT"]) | st.text(),
    extra=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=6),
    body=st.binary(max_size=300),
)
def test_hostile_requests_only_ever_raise_sigv4error(
    method: str,
    path: str,
    query: str,
    authorization: str,
    date: str,
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    headers = [("Host", HOST), ("Authorization", authorization), ("X-Amz-Date", date), *extra]
    now = datetime(2026, 11, 30, 10, 5, tzinfo=UTC)
    with pytest.raises(SigV4Error):
        verify(method, path, query, headers, body, now, KEYS.get)
