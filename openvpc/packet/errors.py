"""The one exception a parser raises: a malformed header, named by a drop reason."""


class Malformed(Exception):
    """A header that is truncated or inconsistent; `reason` is a stable snake_case name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
