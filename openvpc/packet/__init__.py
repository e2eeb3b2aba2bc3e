"""Wire formats as pure functions over bytes: parse_* reads a header, build_* writes one.

Parsers raise `Malformed(reason)` on a truncated or inconsistent header; the vRouter
pipeline turns that into a counted drop, so it never escapes forwarding.
"""

from openvpc.packet.errors import Malformed

__all__ = ["Malformed"]
