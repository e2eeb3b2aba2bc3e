"""EC2 API errors: one exception carrying an EC2 error code, and the HTTP status of each code.

The codes and statuses follow the EC2 error reference; anything not listed is a 400.
"""

from __future__ import annotations

# Codes whose status is not the client-error default of 400.
_STATUS: dict[str, int] = {
    "AuthFailure": 401,
    "MissingAuthenticationToken": 403,
    "UnauthorizedOperation": 403,
    "OptInRequired": 403,
    "Blocked": 403,
    "DryRunOperation": 412,
    "RequestEntityTooLarge": 413,
    "InternalError": 500,
    "InternalFailure": 500,
    "RequestLimitExceeded": 503,
    "EC2ThrottledException": 503,
    "Unavailable": 503,
    "ServiceUnavailable": 503,
}


class ApiError(Exception):
    """A request refused with an EC2 error code and a human-readable message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status EC2 answers this error with."""
        return http_status(self.code)


def http_status(code: str) -> int:
    """The HTTP status for an EC2 error code (400 for every code without its own)."""
    return _STATUS.get(code, 400)


def shown(value: str, limit: int = 64) -> str:
    """`value` cut to `limit` characters for echoing in a message (hostile input can be huge)."""
    return value if len(value) <= limit else value[:limit] + "..."
