"""The EC2 Query API as a WSGI application: size limits, SigV4, parsing by botocore's model,
DryRun and ClientToken, one store transaction per change, and EC2's XML and error codes.

Everything a request carries is hostile: bodies over 1 MiB are refused before they are read,
and any failure that is not the client's becomes InternalError without details.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from openvpc.api import actions, sigv4, sts
from openvpc.api.context import Call, Caller, Runtime
from openvpc.api.errors import ApiError, shown
from openvpc.api.query import MAX_BODY_BYTES, decode_form, parse_query
from openvpc.api.registry import ACTIONS, Action
from openvpc.api.xml import render_error, render_response
from openvpc.service import Service, ServiceError
from openvpc.service.tags import params_digest

log = logging.getLogger("openvpc.api")
_REQUEST_ID = re.compile(r"<requestId>[^<]*</requestId>")

DEFAULT_REGION = "us-east-1"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class ApiApp:
    """`region` is the one region this endpoint is; `unknown_keys_as` (local development
    only) takes requests signed with any unknown key as that tenant's."""

    def __init__(
        self,
        service: Service,
        runtime: Runtime,
        region: str = DEFAULT_REGION,
        unknown_keys_as: str | None = None,
        default_encap: str = "vxlan",
        clock: Callable[[], float] = time.time,
    ) -> None:
        actions.load()
        self.service = service
        self.runtime = runtime
        self.region = region
        self.unknown_keys_as = unknown_keys_as
        self.default_encap = default_encap
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        content_type = "text/xml;charset=UTF-8"
        try:
            status, body, content_type = self._handle(environ, request_id)
        except ApiError as e:
            status, body = render_error(e.code, e.message, request_id)
        except ServiceError as e:
            status, body = render_error(e.code, e.message, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            status, body = render_error(
                "InternalError", "An internal error has occurred.", request_id
            )
        start_response(
            f"{status} {HTTPStatus(status).phrase}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", request_id),
            ],
        )
        return [body]

    def _handle(self, environ: dict[str, Any], request_id: str) -> tuple[int, bytes, str]:
        method = str(environ.get("REQUEST_METHOD", ""))
        if method not in ("GET", "POST"):
            raise ApiError("InvalidAction", f"The HTTP method {shown(method)} is not supported.")
        body = _read_body(environ)
        query = str(environ.get("QUERY_STRING", ""))
        now = self.clock()
        verified = sigv4.verify(
            method,
            quote(str(environ.get("PATH_INFO", "/")) or "/", safe="/~"),
            query,
            _headers(environ),
            body,
            now,
            self.service.access_key,
            services=("ec2", "sts"),
            regions=(self.region,),
            unknown_keys_as=self.unknown_keys_as,
        )
        pairs = decode_form(query) + (decode_form(body) if method == "POST" else [])
        tenant = self.service.tenant(verified.tenant)
        caller = Caller(tenant.name, tenant.account, verified.access_key_id, verified.region)
        if verified.service == "sts":
            return 200, sts.answer(pairs, caller, request_id), "text/xml"
        request = parse_query(pairs)
        found = ACTIONS.get(request.action)
        if found is None:
            raise ApiError(
                "UnsupportedOperation",
                f"The action {request.action} is not supported by this endpoint.",
            )
        if request.params.get("DryRun") is True:
            raise ApiError(
                "DryRunOperation", "Request would have succeeded, but DryRun flag is set."
            )
        call = Call(
            request.action,
            request.params,
            self.service,
            caller,
            self.runtime,
            now,
            request_id,
            self.default_encap,
        )
        return 200, self._run(found, call), "text/xml;charset=UTF-8"

    def _run(self, found: Action, call: Call) -> bytes:
        if not found.mutating:
            return render_response(call.action, found.handler(call), call.request_id)
        token = call.params.get("ClientToken")
        with self.service.batch():
            if not isinstance(token, str) or not token:
                return render_response(call.action, found.handler(call), call.request_id)
            if len(token) > 64:
                raise ApiError("InvalidParameterValue", "ClientToken is longer than 64 characters.")
            digest = params_digest(
                sorted((k, v) for k, v in call.params.items() if k != "ClientToken")
            )
            earlier = self.service.recall_token(call.tenant, call.action, token)
            if earlier is not None:
                if earlier[0] != digest:
                    raise ApiError(
                        "IdempotentParameterMismatch",
                        f"The client token {shown(token)} was already used with other parameters.",
                    )
                return _REQUEST_ID.sub(
                    f"<requestId>{call.request_id}</requestId>", earlier[1], 1
                ).encode()
            body = render_response(call.action, found.handler(call), call.request_id)
            self.service.remember_token(
                call.tenant, call.action, token, digest, body.decode(), call.now
            )
            return body


def _read_body(environ: dict[str, Any]) -> bytes:
    """The body, refused (413) before reading when over the limit or of no stated length."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApiError("InvalidParameter", "The Content-Length header is not a number.") from None
    if length < 0 or length > MAX_BODY_BYTES:
        raise ApiError(
            "RequestEntityTooLarge", f"The request is larger than {MAX_BODY_BYTES} bytes."
        )
    data = environ["wsgi.input"].read(length) if length else b""
    return bytes(data)


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's header fields back from WSGI's CGI-style names."""
    out: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").lower(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out.append((key.replace("_", "-").lower(), str(value)))
    return out
