"""Drop reason ids shared with the BPF programs: the index in DROP_NAMES is the id in drops.h."""

from openvpc.vrouter.drops import Drop

# The parser reasons (openvpc.packet's Malformed) the programs can report, in drops.h's order
# after the `Drop` values; appending is safe, reordering breaks the contract with drops.h.
MALFORMED_NAMES: tuple[str, ...] = (
    "short_ethernet",
    "short_vlan",
    "short_arp",
    "arp_not_ipv4_ethernet",
    "arp_bad_op",
    "short_ipv4",
    "ipv4_bad_version",
    "ipv4_bad_length",
    "ipv4_bad_checksum",
    "short_l4",
    "short_icmp",
    "short_udp",
    "udp_bad_length",
    "short_tcp",
    "tcp_bad_length",
    "short_gre",
    "gre_bad_version",
    "short_mpls",
    "short_vxlan",
    "vxlan_no_vni_flag",
    "mpls_stack_too_deep",
)

DROP_NAMES: tuple[str, ...] = tuple(d.value for d in Drop) + MALFORMED_NAMES
DROP_COUNT = len(DROP_NAMES)

_IDS = {name: i for i, name in enumerate(DROP_NAMES)}


def drop_id(name: str) -> int:
    """The id of a drop reason; KeyError for a reason the programs cannot report."""
    return _IDS[name]


def drop_name(drop: int) -> str:
    """The reason of a drop id read from ov_drops or ov_verdict; IndexError when unknown."""
    if not 0 <= drop < DROP_COUNT:
        raise IndexError(f"drop id {drop} out of range 0..{DROP_COUNT - 1}")
    return DROP_NAMES[drop]
