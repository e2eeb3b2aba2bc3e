"""Pure address management: the five addresses EC2 reserves per subnet, lowest-free
assignment, and MACs from a counter."""

from collections.abc import Container
from ipaddress import IPv4Address, IPv4Network

MAC_COUNTER_LIMIT = 1 << 40


def reserved(net: IPv4Network) -> frozenset[IPv4Address]:
    """Network, router (base+1), DNS (base+2), future use (base+3) and broadcast."""
    base = net.network_address
    return frozenset((base, base + 1, base + 2, base + 3, net.broadcast_address))


def assignable(net: IPv4Network, addr: IPv4Address) -> bool:
    return addr in net and addr not in reserved(net)


def capacity(net: IPv4Network) -> int:
    return max(0, net.num_addresses - 5)


def lowest_free(
    net: IPv4Network, used: Container[IPv4Address], start: IPv4Address | None = None
) -> IPv4Address | None:
    """The lowest assignable address of `net` (from `start`, when the caller knows that all
    below it are used) not in `used`, or None when the subnet is full."""
    first = int(net.network_address) + 4
    last = int(net.broadcast_address) - 1
    if start is not None:
        first = max(first, int(start))
    for n in range(first, last + 1):
        if IPv4Address(n) not in used:
            return IPv4Address(n)
    return None


def mac_for(n: int) -> str:
    """The n-th VM MAC: locally administered, unicast (02:...), unique while n is."""
    if not 0 < n < MAC_COUNTER_LIMIT:
        raise ValueError(f"MAC counter {n} out of range")
    return "02:" + ":".join(f"{b:02x}" for b in n.to_bytes(5, "big"))
