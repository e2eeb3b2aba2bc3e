"""Drop reasons: every packet the vRouter does not forward is counted under one of these."""

from enum import StrEnum


class Drop(StrEnum):
    INVALID_VIF = "invalid_vif"
    SRC_MAC_MISMATCH = "src_mac_mismatch"
    SRC_IP_MISMATCH = "src_ip_mismatch"
    VM_VLAN_TAGGED = "vm_vlan_tagged"
    L3_NON_IP = "l3_non_ip"
    L3_MULTICAST = "l3_multicast_or_broadcast"
    NO_ROUTE = "no_route"
    NO_L2_ROUTE = "no_l2_route"
    REPLICATION_EMPTY = "replication_empty"  # nothing to flood to but the source
    DISCARD = "discard_nexthop"
    INVALID_NH = "invalid_nexthop"
    NO_TRANSIT = "fabric_to_fabric"
    SAME_VIF = "same_vif"
    TTL_EXPIRED = "ttl_expired"
    RECEIVE_UNHANDLED = "receive_unhandled"
    GATEWAY_OTHER_SUBNET = "gateway_of_other_subnet"
    ARP_IGNORED = "arp_ignored"
    FABRIC_NOT_FOR_US = "fabric_not_for_us"
    NOT_OVERLAY = "not_overlay"
    INVALID_LABEL = "invalid_label"
    INVALID_VNI = "invalid_vni"
    INVALID_VLAN = "invalid_vlan"
    GRE_NOT_MPLS = "gre_not_mpls"
    NEIGHBOR_PENDING = "underlay_neighbor_pending"
    NEIGHBOR_UNRESOLVED = "underlay_neighbor_unresolved"  # no ARP answer after the retries
    NO_UNDERLAY_ROUTE = "no_underlay_route"
    FLOW_ACTION_DROP = "flow_action_drop"
    FLOW_TABLE_FULL = "flow_table_full"
    FLOW_QUOTA = "flow_vrf_quota_exceeded"
    HOLD_EXPIRED = "flow_hold_expired"  # held first packets of a flow the agent never decided
    FLOW_QUEUE_LIMIT = "flow_queue_limit"
    FLOW_HOLD_LIMIT = "flow_hold_limit"  # the source has its most first packets awaiting the agent
    PUNT_RATE_LIMITED = "punt_rate_limited"  # the source's punts to the agent are over its rate
    GSO_SIZE_INVALID = "gso_size_invalid"  # a super-frame's segment size below the minimum MSS
    # or beyond the vif's MTU
    GSO_TOO_MANY_SEGMENTS = "gso_too_many_segments"
    FRAG_NEEDED = "fragmentation_needed"
    FRAGMENT_FAILED = "fragmentation_failed"
    AGENT_ABSENT = "no_agent_vif"
    AGENT_DISCONNECTED = "agent_disconnected"  # punted while no agent is on the channel
    AGENT_BACKLOG = "agent_backlog"  # the agent reads too slowly: its send buffer is full
    TX_FAILED = "tx_failed"  # a port's send or write failed (buffer full, MTU, port gone)
    FROM_AGENT_INVALID = "agent_frame_invalid"
    INVALID_VRF = "invalid_vrf"
    OUTER_FRAGMENT = "outer_fragment"
    DST_IP_MISMATCH = "dst_ip_mismatch"  # routed to a VM whose destination check is on
    # a NAT gateway's ports toward one destination are all taken (ErrorPortAllocation)
    NAT_PORT_ALLOCATION = "nat_port_allocation"
    NAT_NO_TRANSLATION = "nat_no_translation"  # to a NAT gateway's address: no flow of its
