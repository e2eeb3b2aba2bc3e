"""Pure checks of request parameters: CIDRs, addresses, names, modes and encapsulations."""

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Network
from typing import cast, get_args

from openvpc.model.nodeconfig import EncapName, Mode
from openvpc.service.errors import ServiceError, invalid_value

VPC_PREFIX_RANGE = (16, 28)
SUBNET_PREFIX_RANGE = (16, 28)
FABRIC_MTU_RANGE = (1280, 9216)
# the instance metadata / DNS block a route may neither target nor contain
LINK_LOCAL_SERVICES = IPv4Network("169.254.168.0/22")
# address space a VPC cannot use: "this" network, loopback, link-local, multicast, reserved
_NOT_FOR_VPCS = tuple(
    IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
)

_RESOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{0,64}")
_HOST_NAME = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)?")
_TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ZONE_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,31})?")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def parse_cidr(text: str, param: str) -> IPv4Network:
    """An IPv4 CIDR block, host bits cleared (EC2 canonicalizes them)."""
    if not isinstance(text, str) or "/" not in text:
        raise invalid_value(param, text, "This is not a valid CIDR block.")
    try:
        return IPv4Network(text.strip(), strict=False)
    except ValueError:
        raise invalid_value(param, text, "This is not a valid CIDR block.") from None


def parse_address(text: str, param: str) -> IPv4Address:
    if not isinstance(text, str):
        raise invalid_value(param, text, "This is not a valid IPv4 address.")
    try:
        return IPv4Address(text.strip())
    except ValueError:
        raise invalid_value(param, text, "This is not a valid IPv4 address.") from None


def check_vpc_cidr(net: IPv4Network) -> None:
    lo, hi = VPC_PREFIX_RANGE
    if not lo <= net.prefixlen <= hi or any(net.overlaps(n) for n in _NOT_FOR_VPCS):
        raise ServiceError("InvalidVpc.Range", f"The CIDR '{net}' is invalid.")


def check_subnet_cidr(net: IPv4Network, vpc: IPv4Network) -> None:
    lo, hi = SUBNET_PREFIX_RANGE
    if not lo <= net.prefixlen <= hi or not net.subnet_of(vpc):
        raise ServiceError("InvalidSubnet.Range", f"The CIDR '{net}' is invalid.")


def check_route_destination(net: IPv4Network) -> None:
    if net.overlaps(LINK_LOCAL_SERVICES) and net.prefixlen >= LINK_LOCAL_SERVICES.prefixlen:
        raise invalid_value(
            "destinationCidrBlock", net, f"It may not lie inside {LINK_LOCAL_SERVICES}."
        )


def check_resource_name(name: str, what: str) -> None:
    """VPC, subnet and route table names: the Name tag, kept to characters safe in dumps."""
    if not isinstance(name, str) or not _RESOURCE_NAME.fullmatch(name):
        raise invalid_value(what, name, "Use up to 64 letters, digits, '_', '.' or '-'.")


def check_host_name(name: str) -> None:
    """Instance names: they become DNS labels."""
    if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
        raise invalid_value("name", name, "An instance name must be a DNS label.")


def check_tenant_name(name: str) -> None:
    if not isinstance(name, str) or not _TENANT_NAME.fullmatch(name):
        raise invalid_value(
            "tenant", name, "Use 1 to 32 letters, digits, '_' or '-', starting alphanumeric."
        )


def check_node_name(name: str) -> None:
    if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
        raise invalid_value(
            "node", name, "Use 1 to 32 letters, digits, '_' or '-', starting alphanumeric."
        )


def check_zone_name(zone: str) -> None:
    if not isinstance(zone, str) or not _ZONE_NAME.fullmatch(zone):
        raise invalid_value("zone", zone, "Use up to 32 lower-case letters, digits or '-'.")


def check_netns(netns: str, ifname: str) -> None:
    if not isinstance(netns, str) or not _NETNS_NAME.fullmatch(netns) or netns in (".", ".."):
        raise invalid_value("netns", netns, "Not a usable network namespace name.")
    if not isinstance(ifname, str) or not _IFNAME.fullmatch(ifname):
        raise invalid_value("ifname", ifname, "Not a usable interface name.")


def check_mode(mode: str) -> Mode:
    for m in get_args(Mode):
        if mode == m:
            return cast(Mode, m)
    raise invalid_value("mode", mode, f"Use one of {', '.join(get_args(Mode))}.")


def check_encap(encap: str) -> EncapName:
    for e in get_args(EncapName):
        if encap == e:
            return cast(EncapName, e)
    raise invalid_value("encap", encap, f"Use one of {', '.join(get_args(EncapName))}.")


def check_fabric_mtu(mtu: int) -> None:
    lo, hi = FABRIC_MTU_RANGE
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not lo <= mtu <= hi:
        raise invalid_value("mtu", mtu, f"The fabric MTU must be between {lo} and {hi}.")


def check_fabric_ip(text: str) -> IPv4Address:
    addr = parse_address(text, "fabricIp")
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address(0xFFFFFFFF):
        raise invalid_value("fabricIp", text, "A node needs a unicast fabric address.")
    return addr
