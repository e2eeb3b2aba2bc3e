"""The one STS action clients need from a VPC endpoint: GetCallerIdentity (terraform's AWS
provider calls it at start), answered in STS's own XML."""

from xml.sax.saxutils import escape

from openvpc.api.context import Caller
from openvpc.api.errors import ApiError, shown

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
VERSION = "2011-06-15"


def answer(pairs: list[tuple[str, str]], caller: Caller, request_id: str) -> bytes:
    params = dict(pairs)
    action = params.get("Action", "")
    if action != "GetCallerIdentity":
        raise ApiError(
            "InvalidAction", f"Could not find operation {shown(action)} for version {VERSION}"
        )
    fields = (
        ("Arn", f"arn:aws:iam::{caller.account}:user/{caller.tenant}"),
        ("UserId", caller.access_key),
        ("Account", caller.account),
    )
    result = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<GetCallerIdentityResponse xmlns="{NAMESPACE}">'
        f"<GetCallerIdentityResult>{result}</GetCallerIdentityResult>"
        f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    ).encode()
