"""AWS Signature Version 4 verification, as EC2 does it: a pure function of one request, the
time and an access-key lookup, for the Authorization-header and the presigned query forms.
Returns who signed (the tenant) or raises SigV4Error carrying the EC2 code and HTTP status."""

import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from openvpc.api.errors import ApiError

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW = timedelta(minutes=15)  # AWS: RequestExpired beyond 15 minutes either way
MAX_EXPIRES_S = 7 * 24 * 3600  # the longest X-Amz-Expires AWS accepts
# The server must refuse a larger body (413) before reading it: hashing and parsing are then
# bounded. The verifier checks it again so that no caller can skip it.
MAX_BODY_BYTES = 1 << 20
MAX_PATH_CHARS = 2048
MAX_QUERY_CHARS = 64 * 1024
MAX_QUERY_PARAMS = 1000
MAX_HEADERS = 100
MAX_HEADER_CHARS = 16 * 1024  # one header's value (Authorization included)
MAX_SIGNED_HEADERS = 64

# AWS's own text for a signature (or a key) it cannot validate: one message for both, so that
# a caller cannot learn which key ids exist
NOT_VALIDATED = "AWS was not able to validate the provided access credentials"

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
# access key id -> (secret, tenant), None for a key nobody was issued
KeyLookup = Callable[[str], tuple[str, str] | None]

_KEY_ID = re.compile(r"[A-Za-z0-9_]{1,128}")
_SCOPE_DATE = re.compile(r"\d{8}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SERVICE = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,128}")  # an HTTP field name, lower case
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_DIGITS = re.compile(r"\d{1,10}")
_METHOD = re.compile(r"[A-Z]{1,16}")
# control characters (tab aside) and lone surrogates: no client signs them, and a lone
# surrogate cannot even be encoded to hash
_BAD_TEXT = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")
_AUTH_PART = re.compile(r"\s*([A-Za-z]+)=([^,\s]*)\s*")
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_QUERY_REQUIRED = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
_DUMMY_SECRET = "openvpc-sigv4-unknown-key-0000000000000"


class SigV4Error(ApiError):
    """A request whose signature is refused: the EC2 error code and message (its HTTP status
    from the one table in `errors`)."""


@dataclass(frozen=True, slots=True)
class Verified:
    """Who signed a request that verified, and the scope they signed it for."""

    tenant: str
    access_key_id: str
    region: str
    service: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class _Claim:
    """What the request says about its signature, before anything is believed."""

    algorithm: str
    credential: str
    signed_headers: str
    signature: str
    amz_date: str  # ISO 8601 basic, as it goes into the string to sign
    expires: str | None  # presigned only
    presigned: bool


def incomplete(message: str) -> SigV4Error:
    return SigV4Error("IncompleteSignature", message)


def auth_failure(message: str = NOT_VALIDATED) -> SigV4Error:
    return SigV4Error("AuthFailure", message)


def expired(message: str = "Request has expired.") -> SigV4Error:
    return SigV4Error("RequestExpired", message)


def missing_token() -> SigV4Error:
    return SigV4Error(
        "MissingAuthenticationToken",
        "The request must contain either a valid (registered) AWS access key ID or X.509 "
        "certificate.",
    )


def verify(
    method: str,
    path: str,
    query: str,
    headers: Headers,
    body: bytes,
    now: datetime | float,
    lookup: KeyLookup,
    *,
    services: Collection[str] = ("ec2",),
    regions: Collection[str] | None = None,
    unknown_keys_as: str | None = None,
) -> Verified:
    """Verify one request. `path` and `query` are as received (still percent-encoded, the
    query without "?"); header names are case-insensitive and a name may repeat; `now` is an
    aware datetime or epoch seconds. `regions` None accepts any well-formed region.

    `unknown_keys_as` (local development only) names the tenant a well-formed request signed
    with a key nobody was issued is taken for, without checking its signature; issued keys
    are still verified."""
    if len(body) > MAX_BODY_BYTES:
        raise SigV4Error("RequestEntityTooLarge", "The request body is too large.")
    moment = _utc(now)
    # a method with a newline could pass for another request's canonical form
    if not _METHOD.fullmatch(method):
        raise incomplete("The request method is malformed.")
    if _BAD_TEXT.search(path) or _BAD_TEXT.search(query):
        raise incomplete("The request target has characters no client signs.")
    fields = _header_fields(headers)
    pairs = _query_pairs(query)
    claim = _claim(fields, pairs)
    if claim.algorithm != ALGORITHM:
        raise incomplete(f"Unsupported AWS 'algorithm': '{claim.algorithm}'.")
    key_id, scope_date, region, service = _scope(claim, services, regions)
    signed = _signed_headers(claim.signed_headers, fields)
    if not _SIGNATURE.fullmatch(claim.signature):
        raise auth_failure()
    signed_at = _check_time(claim, moment)
    if "x-amz-security-token" in fields or _first(pairs, "X-Amz-Security-Token") is not None:
        # temporary credentials are never issued here, so no token can be valid
        raise auth_failure("The security token included in the request is invalid.")
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = fields.get("x-amz-content-sha256")
    if declared is not None and not hmac.compare_digest(
        ",".join(declared).encode(), payload_hash.encode()
    ):
        raise auth_failure(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    canonical = "\n".join(
        (
            method,
            _canonical_path(path),
            _canonical_query(pairs, claim.presigned),
            _canonical_headers(signed, fields),
            ";".join(signed),
            payload_hash,
        )
    )
    scope = f"{scope_date}/{region}/{service}/{TERMINATOR}"
    to_sign = "\n".join(
        (ALGORITHM, claim.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    found = lookup(key_id)
    if found is None and unknown_keys_as is not None:
        return Verified(unknown_keys_as, key_id, region, service, signed_at)
    # an unknown key costs the same work as a known one: its time tells nothing either
    secret, tenant = found if found is not None else (_DUMMY_SECRET, "")
    expected = signature(secret, scope_date, region, service, to_sign)
    if not hmac.compare_digest(expected.encode(), claim.signature.encode()) or found is None:
        raise auth_failure()
    return Verified(tenant, key_id, region, service, signed_at)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service (AWS's kSigning)."""
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    key = signing_key(secret, date, region, service)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _utc(now: datetime | float) -> datetime:
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("`now` must be an aware datetime (or epoch seconds)")
        return now.astimezone(UTC)
    return datetime.fromtimestamp(now, UTC)


def _header_fields(headers: Headers) -> dict[str, list[str]]:
    """Lower-case name -> its values in order (a repeated field keeps every value)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, list[str]] = {}
    for count, (name, value) in enumerate(items, 1):
        if count > MAX_HEADERS:
            raise incomplete("The request has too many headers.")
        lname = name.lower()
        if not _TOKEN.fullmatch(lname) or len(value) > MAX_HEADER_CHARS or _BAD_TEXT.search(value):
            raise incomplete(f"The request header {name[:64]!r} is malformed.")
        fields.setdefault(lname, []).append(value)
    return fields


def _single(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    if values is None:
        return None
    if len(values) != 1:
        # two values proxies may join differently: ambiguous, so refused
        raise incomplete(f"The request has more than one '{name}' header.")
    return values[0]


def _query_pairs(query: str) -> list[tuple[bytes, bytes]]:
    """The query's (name, value) pairs, decoded to bytes ("+" is a space, as forms send it)."""
    if len(query) > MAX_QUERY_CHARS:
        raise incomplete("The query string is too long.")
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (unquote_to_bytes(name.replace("+", " ")), unquote_to_bytes(value.replace("+", " ")))
        )
        if len(pairs) > MAX_QUERY_PARAMS:
            raise incomplete("The query string has too many parameters.")
    return pairs


def _first(pairs: list[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of query parameter `name`; refused if it repeats or is not UTF-8."""
    wanted = name.encode()
    values = [v for k, v in pairs if k == wanted]
    if not values:
        return None
    if len(values) > 1:
        raise incomplete(f"The query parameter {name} appears more than once.")
    try:
        return values[0].decode()
    except UnicodeDecodeError:
        raise incomplete(f"The query parameter {name} is not UTF-8.") from None


def _claim(fields: dict[str, list[str]], pairs: list[tuple[bytes, bytes]]) -> _Claim:
    header = _single(fields, "authorization")
    in_query = any(_first(pairs, name) is not None for name in _QUERY_AUTH)
    if header is not None and in_query:
        raise incomplete("Only one authentication method is allowed: header or query string.")
    if header is not None:
        return _header_claim(header, fields)
    if in_query:
        return _query_claim(pairs)
    raise missing_token()


def _header_claim(header: str, fields: dict[str, list[str]]) -> _Claim:
    algorithm, _, rest = header.strip().partition(" ")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        match = _AUTH_PART.fullmatch(item)
        if match is None or match[1] in parts:
            raise incomplete(f"Authorization header is malformed: '{header[:256]}'.")
        parts[match[1]] = match[2]
    absent = [n for n in ("Credential", "Signature", "SignedHeaders") if not parts.get(n)]
    if absent:
        raise incomplete(
            " ".join(f"Authorization header requires '{n}' parameter." for n in absent)
            + f" Authorization={header[:256]}"
        )
    if set(parts) != {"Credential", "Signature", "SignedHeaders"}:
        raise incomplete(f"Authorization header is malformed: '{header[:256]}'.")
    amz_date = _single(fields, "x-amz-date")
    if amz_date is None:
        date = _single(fields, "date")
        if date is None:
            raise incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
        amz_date = _http_date(date)
    return _Claim(
        algorithm,
        parts["Credential"],
        parts["SignedHeaders"],
        parts["Signature"],
        amz_date,
        None,
        presigned=False,
    )


def _query_claim(pairs: list[tuple[bytes, bytes]]) -> _Claim:
    values = {name: _first(pairs, name) for name in (*_QUERY_REQUIRED, "X-Amz-Expires")}
    absent = [n for n in _QUERY_REQUIRED if not values[n]]
    if absent:
        raise incomplete(
            " ".join(f"AWS query-string parameters must include '{n}'." for n in absent)
        )
    return _Claim(
        values["X-Amz-Algorithm"] or "",
        values["X-Amz-Credential"] or "",
        values["X-Amz-SignedHeaders"] or "",
        values["X-Amz-Signature"] or "",
        values["X-Amz-Date"] or "",
        values["X-Amz-Expires"],
        presigned=True,
    )


def _http_date(value: str) -> str:
    """A Date header (ISO 8601 basic, or an HTTP date) as ISO 8601 basic."""
    if _AMZ_DATE.fullmatch(value):
        return value
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise _bad_date(value) from None
    if when.tzinfo is None:
        raise _bad_date(value)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _bad_date(value: str) -> SigV4Error:
    return incomplete(f"Date must be in ISO-8601 'basic format'. Got '{value[:64]}'.")


def _scope(
    claim: _Claim, services: Collection[str], regions: Collection[str] | None
) -> tuple[str, str, str, str]:
    """(access key id, date, region, service) from the credential, each checked."""
    parts = claim.credential.split("/")
    if len(parts) != 5:
        raise incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{claim.credential[:256]}'"
        )
    key_id, date, region, service, terminator = parts
    if not _KEY_ID.fullmatch(key_id):
        raise auth_failure()
    if terminator != TERMINATOR:
        raise auth_failure(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator[:64]}'."
        )
    if not _AMZ_DATE.fullmatch(claim.amz_date) or not _parse_amz_date(claim.amz_date):
        raise _bad_date(claim.amz_date)
    if not _SCOPE_DATE.fullmatch(date) or date != claim.amz_date[:8]:
        raise auth_failure(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{date[:16]}' != '{claim.amz_date[:8]}', from '{claim.amz_date}'."
        )
    if service not in services or not _SERVICE.fullmatch(service):
        wanted = "', '".join(sorted(services))
        raise auth_failure(f"Credential should be scoped to correct service: '{wanted}'.")
    if not _REGION.fullmatch(region) or (regions is not None and region not in regions):
        raise auth_failure(f"Credential should be scoped to a valid region, not '{region[:64]}'.")
    return key_id, date, region, service


def _parse_amz_date(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _signed_headers(listed: str, fields: dict[str, list[str]]) -> list[str]:
    names = listed.split(";")
    if len(names) > MAX_SIGNED_HEADERS:
        raise incomplete("SignedHeaders lists too many headers.")
    if any(not _TOKEN.fullmatch(n) for n in names) or names != sorted(set(names)):
        raise incomplete(
            "SignedHeaders must be lower-case header names, sorted, each once, separated by "
            f"';': got '{listed[:256]}'."
        )
    if "host" not in names:
        raise incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    for name in names:
        if name not in fields:
            # it cannot have been signed as sent: AWS fails such a signature
            raise auth_failure()
    return names


def _check_time(claim: _Claim, now: datetime) -> datetime:
    signed_at = _parse_amz_date(claim.amz_date)
    if signed_at is None:  # _scope checked it; kept for the type checker
        raise _bad_date(claim.amz_date)
    if signed_at - now > MAX_SKEW:
        raise expired(
            f"Request is not yet valid: it is dated {claim.amz_date}, more than 15 minutes "
            "ahead of the server's clock."
        )
    if claim.presigned and claim.expires is not None:
        if not _DIGITS.fullmatch(claim.expires) or not 1 <= int(claim.expires) <= MAX_EXPIRES_S:
            raise incomplete(
                f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES_S}."
            )
        if now > signed_at + timedelta(seconds=int(claim.expires)):
            raise expired()
    elif now - signed_at > MAX_SKEW:
        raise expired()
    return signed_at


def _canonical_path(path: str) -> str:
    """The path with dot segments and empty segments removed, then URI-encoded (again: an
    already encoded "%2F" becomes "%252F", as every service but S3 signs it)."""
    if len(path) > MAX_PATH_CHARS or not path.startswith("/"):
        raise incomplete("The request path is malformed.")
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in ("", "."):
            kept.append(segment)
    normal = "/" + "/".join(kept)
    if kept and path.endswith("/"):
        normal += "/"
    return quote(normal, safe="/~")


def _canonical_query(pairs: list[tuple[bytes, bytes]], presigned: bool) -> str:
    """Each name and value RFC 3986-encoded, sorted by name then value; a presigned URL's
    own signature is not part of what it signs."""
    encoded = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, v in pairs
        if not (presigned and k == b"X-Amz-Signature")
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def _canonical_headers(signed: list[str], fields: dict[str, list[str]]) -> str:
    """One "name:value" line per signed header; inner runs of spaces become one, repeated
    fields are joined with commas; the block ends with a newline."""
    return "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in fields[name])}\n" for name in signed
    )
