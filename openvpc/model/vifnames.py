"""How a VM interface is plugged into its node: the datapaths, and the stable name of the
node-side end of a VM's veth (eBPF datapath), derived from where the VM side lives."""

import hashlib
from typing import Literal, get_args

Datapath = Literal["python", "ebpf"]
DATAPATHS: tuple[str, ...] = get_args(Datapath)
DEFAULT_DATAPATH: Datapath = "python"
NODE_SIDE_PREFIX = "ov" + "v"  # every node-side veth of ours starts with it (sweeps look)
_HASH_HEX = 12  # "ovv" + 12 hex = 15 characters: IFNAMSIZ less the NUL


def node_side_name(netns: str, ifname: str) -> str:
    """The node-namespace end of the veth whose VM end is `ifname` in `netns`: the same on
    every call, in every process, and unlikely to collide (48 bits of a hash)."""
    digest = hashlib.sha256(f"{netns}\0{ifname}".encode()).hexdigest()
    return NODE_SIDE_PREFIX + digest[:_HASH_HEX]


def check_datapath(value: str) -> Datapath:
    if value not in DATAPATHS:
        raise ValueError(f"unknown datapath {value!r}: use one of {', '.join(DATAPATHS)}")
    return value  # type: ignore[return-value]
