"""How much of a node's vRouter one tenant or one VM may use: flow-table size and per-VRF
share, HOLD entries and punts to the agent per source, and the bounds on TAP super-frames."""

from dataclasses import dataclass

# who a HOLD entry or a punt is charged to: (input vif, VRF). A VM's vif is in one VRF; on
# the fabric, each VRF (each tenant network) has its own share
Source = tuple[int, int]

DEFAULT_FLOW_CAPACITY = 65536  # about 32 MB of flow entries in the Python vRouter
# sized for the node: a flow and its dict slot take about 512 bytes in the Python vRouter, and
# the table may use a 64th of the node's memory, within these bounds
FLOW_BYTES = 512
FLOW_MEMORY_SHARE = 64
MIN_FLOW_CAPACITY = 16384
MAX_FLOW_CAPACITY = 1 << 20
VRF_SHARE = 4  # by default a VRF may hold at most a quarter of the table
DEFAULT_VIF_HOLD_LIMIT = 32  # first packets waiting for the agent, per source
DEFAULT_VIF_PUNT_RATE = 200.0  # punts per second to the agent, per source
DEFAULT_VIF_PUNT_BURST = 400
HOLD_TIMEOUT = 2.0  # seconds a first packet waits for the agent's verdict
DROP_TIMEOUT = 5.0  # seconds a denied flow is remembered while idle

# TAP super-frames (virtio gso): a VM's segment size is at least the IPv4 minimum MSS
# (RFC 879) and at most what its MTU carries, and one frame makes a bounded number of
# segments, so that no frame makes work out of proportion to its bytes
MIN_MSS = 536
MAX_SEGMENTS = 64
MAX_IP_LEN = 0xFFFF
TCP_IP_HEADERS = 40  # IPv4 and TCP headers without options
# what no segmentation anywhere exceeds: a 64 KB packet in minimum-MSS segments
SEGMENT_CAP = -(-MAX_IP_LEN // MIN_MSS)


def flow_capacity_for(memory_bytes: int | None) -> int:
    """The default flow capacity of a node with `memory_bytes` of memory (None: unknown)."""
    if memory_bytes is None:
        return DEFAULT_FLOW_CAPACITY
    fits = memory_bytes // FLOW_MEMORY_SHARE // FLOW_BYTES
    return min(MAX_FLOW_CAPACITY, max(MIN_FLOW_CAPACITY, fits))


def max_segments(mtu: int) -> int:
    """Segments one VM super-frame may make: MAX_SEGMENTS, or what a 64 KB packet makes at
    this MTU's smallest legal segments when that is more (a small-MTU guest's TSO)."""
    per_segment = max(MIN_MSS, mtu - TCP_IP_HEADERS)
    return max(MAX_SEGMENTS, -(-MAX_IP_LEN // per_segment))


@dataclass(frozen=True, slots=True)
class NodeLimits:
    """The per-node settings (`openvpc vrouter --flow-capacity ...`); `vrf_flow_quota` None
    means a VRF_SHARE-th of the table."""

    flow_capacity: int = DEFAULT_FLOW_CAPACITY
    vrf_flow_quota: int | None = None
    vif_hold_limit: int = DEFAULT_VIF_HOLD_LIMIT
    vif_punt_rate: float = DEFAULT_VIF_PUNT_RATE
    vif_punt_burst: int = DEFAULT_VIF_PUNT_BURST

    def __post_init__(self) -> None:
        if self.flow_capacity < 1:
            raise ValueError(f"flow capacity must be at least 1, not {self.flow_capacity}")
        quota = self.vrf_flow_quota
        if quota is not None and not 1 <= quota <= self.flow_capacity:
            raise ValueError(
                f"VRF flow quota must be between 1 and the flow capacity "
                f"({self.flow_capacity}), not {quota}"
            )
        if self.vif_hold_limit < 1:
            raise ValueError(f"vif hold limit must be at least 1, not {self.vif_hold_limit}")
        if not self.vif_punt_rate > 0:
            raise ValueError(f"vif punt rate must be positive, not {self.vif_punt_rate}")
        if self.vif_punt_burst < 1:
            raise ValueError(f"vif punt burst must be at least 1, not {self.vif_punt_burst}")

    @property
    def vrf_quota(self) -> int:
        if self.vrf_flow_quota is not None:
            return self.vrf_flow_quota
        return max(1, self.flow_capacity // VRF_SHARE)


DEFAULT_LIMITS = NodeLimits()
