"""The way out of a VPC: the gateway node's port into the internet and the public routing
instance's reserved numbers (docs/internet.md). Shared by the service (which never allocates
these numbers), the compiler and the lab."""

import ipaddress
from dataclasses import dataclass

# the public VRF's numbers on every node that hosts it; the allocator skips them
PUBLIC_VRF = 65535
PUBLIC_L3_LABEL = (1 << 20) - 2
PUBLIC_L2_LABEL = (1 << 20) - 1
PUBLIC_VNI = 5000  # below the VNIs the service allocates (5001 and up)
INTERNET_VIF = 4095  # the last vif the eBPF fast path indexes
PUBLIC_VRF_NAME = "public"
INTERNET_NETNS_SUFFIX = "_internet"  # after the VM prefix: no VM name starts with "_"
INTERNET_MAC = "02:00:c6:33:64:fe"


@dataclass(frozen=True, slots=True)
class InternetEdge:
    """Where the internet is: a port of `node`'s vRouter in namespace `netns` with address
    `ip`/`prefix_len` (DHCP), whose gateway `gateway` the vRouter answers for."""

    node: str
    netns: str
    ip: str
    gateway: str
    prefix_len: int
    ifname: str = "eth0"
    mac: str = INTERNET_MAC


def edge_addresses(pool: str) -> tuple[str, str]:
    """(the internet host's address, its gateway) in the public pool: its last two hosts,
    which Elastic IPs never take while a gateway node is set."""
    net = ipaddress.IPv4Network(pool)
    last = int(net.broadcast_address) - 1 if net.prefixlen < 31 else int(net.broadcast_address)
    return str(ipaddress.IPv4Address(last)), str(ipaddress.IPv4Address(last - 1))
