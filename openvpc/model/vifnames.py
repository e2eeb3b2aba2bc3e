"""How a VM interface is plugged into its node: the datapaths, the stable name of the
node-side end of a VM's veth (eBPF datapath), derived from where the VM side lives, and the
node's device of a port (that name, or the port's own device when it is in the node's
namespace: a TAP that QEMU holds)."""

import hashlib
from typing import Literal, get_args

Datapath = Literal["python", "ebpf"]
DATAPATHS: tuple[str, ...] = get_args(Datapath)
DEFAULT_DATAPATH: Datapath = "python"
NODE_SIDE_PREFIX = "ov" + "v"  # every node-side veth of ours starts with it (sweeps look)
NODE_NETNS = ""  # a port's netns when its ifname is a device in the node's own namespace
_HASH_HEX = 12  # "ovv" + 12 hex = 15 characters: IFNAMSIZ less the NUL


def node_side_name(netns: str, ifname: str) -> str:
    """The node-namespace end of the veth whose VM end is `ifname` in `netns`: the same on
    every call, in every process, and unlikely to collide (48 bits of a hash)."""
    digest = hashlib.sha256(f"{netns}\0{ifname}".encode()).hexdigest()
    return NODE_SIDE_PREFIX + digest[:_HASH_HEX]


def node_device_name(netns: str, ifname: str) -> str:
    """The device in the node's namespace that carries a port's traffic (eBPF datapath):
    with `netns` "" the port's `ifname` itself is a device in the node's own namespace (a TAP
    whose fd QEMU holds, or a veth end made by someone else); otherwise the node side of the
    veth whose VM end is `ifname` in `netns`."""
    return ifname if netns == NODE_NETNS else node_side_name(netns, ifname)


def check_datapath(value: str) -> Datapath:
    if value not in DATAPATHS:
        raise ValueError(f"unknown datapath {value!r}: use one of {', '.join(DATAPATHS)}")
    return value  # type: ignore[return-value]
