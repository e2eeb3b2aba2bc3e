/* The vRouter's tables as BPF maps: the contract between the programs and the Python map
 * writer (openvpc/vrouter/ebpf/layout.py mirrors every struct here, byte for byte).
 * Addresses and ports are in network order; every other integer is host order.
 * Structs are packed so that no padding can differ between the C and Python sides; the ones
 * the fast path writes atomically keep their 64-bit fields 8-byte aligned. */
#ifndef OPENVPC_LAYOUT_H
#define OPENVPC_LAYOUT_H

#include <linux/types.h>

#define OV_PACKED __attribute__((packed))

#define MAX_VIFS 4096 /* vif ids index an array */
#define MAX_ECMP 16 /* ECMP members the fast path picks from; larger composites punt */
#define NO_LABEL 0xffffffffu /* a route without label/VNI/VLAN id */

/* -- vifs: ov_vifs is an ARRAY indexed by vif id; ov_ifindex maps a device to its vif -- */
enum vif_kind { VIF_NONE = 0, VIF_VM = 1, VIF_FABRIC = 2 };

#define VIF_POLICY 0x01 /* IP packets from or to it go through the flow table */
#define VIF_SOURCE_CHECK 0x02 /* Amazon's source/destination check */
#define VIF_PEER 0x04 /* a veth: deliver with bpf_redirect_peer, else to the device's egress */
#define VIF_AGENT 0x08 /* with VIF_POLICY: first packets of new flows wait for the agent */

struct vif {
	__u32 ifindex; /* node-side device; 0 while not attached (deliveries to it punt) */
	__u32 vrf;
	__be32 ip;
	__be32 gateway_ip; /* 0: none */
	__u16 mtu;
	__u8 prefix_len;
	__u8 kind; /* enum vif_kind; VIF_NONE marks an unused slot */
	__u8 flags; /* VIF_* */
	__u8 mac[6];
	__u8 has_ip;
	/* the port's compiled rules (ov_rules set ids; 0: none compiled, which allows): its
	 * security groups' ingress and egress rules, its subnet's network ACL inbound and
	 * outbound (both 0 or both set) and the subnet the ACL guards */
	__u32 sg_ingress;
	__u32 sg_egress;
	__u32 acl_inbound;
	__u32 acl_outbound;
	__be32 acl_net;
	__be32 acl_mask;
} OV_PACKED;

struct allowed_ip_key { /* ov_allowed_ips: HASH -> __u8 1, the extra source addresses (VIPs) */
	__u32 vif;
	__be32 ip;
} OV_PACKED;

/* -- VRFs: ov_vrfs is a HASH by VRF id -------------------------------------------------- */
enum vrf_mode { MODE_L3 = 0, MODE_L2 = 1, MODE_L2_L3 = 2 };
enum arp_mode { ARP_PROXY = 0, ARP_SINGLE_MAC = 1 };

#define VRF_DECREMENT_TTL 0x01
#define VRF_UNICAST_ONLY 0x02

struct vrf {
	__u8 mode; /* enum vrf_mode */
	__u8 arp_mode; /* enum arp_mode */
	__u8 flags; /* VRF_* */
	__u8 gateway_mac[6];
	__be32 link_local_gateway; /* 0: none */
} OV_PACKED;

/* -- FIBs: ov_ip_fib is an LPM_TRIE (prefixlen = 32 + the route's prefix length, so the VRF
 * always matches whole), ov_mac_fib a HASH; both hold a struct route ---------------------- */
struct fib_key {
	__u32 prefixlen;
	__u32 vrf;
	__be32 addr;
} OV_PACKED;

struct mac_key {
	__u32 vrf;
	__u8 mac[6];
} OV_PACKED;

struct route {
	__u32 nh;
	__u32 label; /* MPLS label, VNI or VLAN id for tunnels; NO_LABEL when none */
	__u8 mac[6]; /* what the ARP proxy answers for this address */
	__u8 has_mac;
} OV_PACKED;

/* -- next hops: ov_nexthops is a HASH by next-hop id (0 is the discard next hop) ----------- */
enum nh_kind {
	NH_DISCARD = 0,
	NH_ENCAP = 1, /* to a local vif, Ethernet header rewritten */
	NH_TUNNEL = 2, /* to a remote vRouter */
	NH_RECEIVE = 3, /* to the vRouter itself (a gateway address) */
	NH_L2RECEIVE = 4, /* the gateway MAC of an L2 network: route in the VRF */
	NH_RESOLVE = 5, /* punt to the agent */
	NH_ECMP = 6, /* one member per flow, by the flow's entropy port */
	NH_SLOW = 7, /* what the fast path leaves to the slow path (replication lists, ...) */
};

enum encap { ENCAP_VXLAN = 0, ENCAP_MPLSOUDP = 1, ENCAP_MPLSOGRE = 2, ENCAP_VLAN = 3 };

struct nh_member {
	__u32 nh;
	__u32 label; /* NO_LABEL: the route's own label */
} OV_PACKED;

struct nexthop {
	__u8 kind; /* enum nh_kind */
	__u8 encap; /* NH_TUNNEL: enum encap */
	__u8 n_members; /* NH_ECMP: 1..MAX_ECMP */
	__u32 vif; /* NH_ENCAP */
	__be32 dst_ip; /* NH_TUNNEL: the remote node's fabric address */
	__u8 dst_mac[6]; /* NH_ENCAP */
	__u8 src_mac[6]; /* NH_ENCAP */
	struct nh_member members[MAX_ECMP];
} OV_PACKED;

/* -- decapsulation: ov_labels (MPLS label -> struct label), ov_vnis and ov_vlans (-> VRF id),
 * all HASH by __u32 ----------------------------------------------------------------------- */
struct label {
	__u32 vrf;
	__u8 l2; /* Ethernet inside (l2 modes), else IP */
} OV_PACKED;

/* -- the node: ov_node is an ARRAY of one ----------------------------------------------------- */
struct node {
	__u64 punt_rate_milli; /* slow-path packets per second per source, times 1000 */
	__u32 punt_burst;
	__u32 fabric_ifindex;
	__be32 fabric_ip;
	__u32 pkt0_ifindex; /* the slow path's TAP; 0: none (what would go up is dropped) */
	__u8 fabric_mac[6];
	__u16 fabric_mtu;
	__u8 agent; /* an agent vif exists: flow misses can be decided */
	__u8 pad[7];
} OV_PACKED;

/* -- flows: ov_flows is a HASH written by the slow path (the agent's verdicts) and touched by
 * the fast path; HOLD entries live only in the slow path (a miss there punts) -------------- */
struct flow_key {
	__u32 vrf;
	__be32 src;
	__be32 dst;
	__be16 sport; /* TCP/UDP ports; the echo id both ways for ICMP echo; type and code (host
			 order) for other ICMP; 0 for fragments */
	__be16 dport;
	__u8 proto;
} OV_PACKED;

enum flow_action { FLOW_FORWARD = 1, FLOW_DROP = 2, FLOW_NAT = 3 };

/* Room for flows the fast path makes itself (ports the vRouter decides for): ov_flow_room, a
 * HASH by VRF id (FLOW_ROOM_ALL: the whole table) written by the slow path, holds the limit
 * (the VRF's quota, the table's capacity) and how many flows the slow path knew of (`used`)
 * when ov_flow_made, a HASH by the same keys written only by the fast path (atomic adds),
 * said `seen`: in use now = used + made - seen. */
#define FLOW_ROOM_ALL 0xffffffffu

struct flow_room {
	__u64 limit;
	__u64 used;
	__u64 seen;
} OV_PACKED;

struct flow { /* 8-byte aligned: the fast path adds to the counters atomically */
	__u64 packets; /* fast-path hits */
	__u64 bytes;
	__u64 last_used; /* CLOCK_MONOTONIC ns (bpf_ktime_get_ns), as Python's time.monotonic */
	__be32 nat_src; /* FLOW_NAT: the tuple after translation */
	__be32 nat_dst;
	__be16 nat_sport;
	__be16 nat_dport;
	__u8 action; /* enum flow_action */
	__u8 tcp_flags; /* OR of the flags the fast path saw */
	__u8 pad[2];
	__u32 by; /* what decided it: a BY_* id, see ov_rules */
} OV_PACKED;

/* -- security groups and network ACLs: ov_rules is an LPM_TRIE keyed by (rule set, remote
 * prefix), prefixlen = 32 + the prefix's length so that the set always matches whole. A rule
 * set is one direction of a port's security groups, or of a network ACL, in its evaluation
 * order (an ACL's ends with the `*` deny on 0.0.0.0/0). The value at a prefix lists every
 * rule of the set whose prefix contains it, in the set's order, so the longest match for an
 * address holds exactly the rules that can match it and their first match is the set's.
 * Only rules that can match TCP or UDP are compiled (the fast path decides nothing else).
 * The list is cut into chunks of MAX_RULES: the first is the ov_rules value, each names the
 * next (`next`, 0: the last), which ov_rule_chunks, a HASH by (set, chunk number), holds;
 * chunk numbers are the set's own, and identical tails of one set share their chunks.
 * A miss: no rule matches. n == RULES_OVERFLOW (the first chunk only): more than
 * MAX_RULES * MAX_RULE_CHUNKS apply (the slow path decides). ----------------------------- */
#define MAX_RULES 48 /* rules per chunk; an ACL direction (40 entries and the `*` deny) fits one */
#define MAX_RULE_CHUNKS 7 /* chunks per address: 336 rules, a port's 5 groups of 60 rules */
#define RULES_OVERFLOW 0xffffffffu

#define RULE_ANY_PROTO 0x01 /* every protocol, else `proto` */
#define RULE_FRAGMENTS 0x02 /* unrestricted selectors: matches fragments too (lo..hi is all) */
#define RULE_ALLOW 0x04 /* an ACL's allow entry, and every security group rule */

/* `by` ids: what decided a flow, as the Python side interns the strings (rules.Decision.by) */
#define BY_NONE 0 /* "": nothing compiled for the ports */
#define BY_EGRESS_NO_RULE 1 /* "egress: no security group rule" */
#define BY_INGRESS_NO_RULE 2 /* "ingress: no security group rule" */
#define BY_REPLIES 0x80000000u /* an ACL entry's id, deciding the reply direction ("/replies") */

struct rule_key {
	__u32 prefixlen;
	__u32 set;
	__be32 addr;
} OV_PACKED;

struct rule_chunk_key {
	__u32 set;
	__u32 chunk; /* 1.. within the set */
} OV_PACKED;

struct rule {
	__u8 proto; /* an IP protocol unless RULE_ANY_PROTO */
	__u8 flags; /* RULE_* */
	__u16 lo; /* the destination ports (a flow's reply direction: its source ports) */
	__u16 hi;
	__u32 by;
} OV_PACKED;

struct rule_list { /* one chunk */
	__u32 n; /* 0..MAX_RULES, or RULES_OVERFLOW */
	__u32 next; /* the next chunk's number in ov_rule_chunks; 0: none */
	struct rule rules[MAX_RULES];
} OV_PACKED;

/* -- the slow path: frames go up to, and come down from, the vRouter process through pkt0,
 * a TAP it owns, behind this header ------------------------------------------------------ */
#define SLOW_ETH_P 0x88b5 /* IEEE local experimental */

enum slow_reason {
	SLOW_INJECT = 0, /* down: send the frame out of `vif` */
	SLOW_FLOW = 1, /* no fast-path flow entry (a miss, a HOLD, a NAT) */
	SLOW_ARP = 2, /* an ARP the fast path does not answer */
	SLOW_DHCP = 3,
	SLOW_DNS = 4,
	SLOW_MTU = 5, /* too big: fragment, or ICMP fragmentation needed */
	SLOW_RESOLVE = 6,
	SLOW_NEXTHOP = 7, /* NH_SLOW, or a vif not attached */
	SLOW_OTHER = 8, /* anything else the fast path does not handle */
	SLOW_REASONS = 9,
};

struct slow_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto; /* SLOW_ETH_P */
	__be32 vif; /* up: the input vif (the fabric's for fabric frames); down: the output vif */
	__be16 reason; /* enum slow_reason */
	__be16 pad;
} OV_PACKED;

/* -- per-source slow-path rate limit: ov_punt_tokens is an LRU_HASH ------------------------ */
struct punt_key {
	__u32 vif;
	__u32 vrf;
} OV_PACKED;

struct punt_bucket {
	__u64 tokens_milli;
	__u64 last_ns;
} OV_PACKED;

/* -- counters: ov_drops is a PERCPU_ARRAY by drop reason (ids: drops.h, the order of the
 * Python `Drop` names it lists), ov_vif_stats a PERCPU_ARRAY by vif id, ov_slow a
 * PERCPU_ARRAY by enum slow_reason ------------------------------------------------------- */
struct vif_stats {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 drops;
} OV_PACKED;

/* -- the last verdict of this CPU: ov_verdict is a PERCPU_ARRAY of one, written on every
 * packet, read by the BPF_PROG_TEST_RUN equivalence test and by traces ------------------- */
enum verdict_kind { V_DROP = 1, V_TX = 2, V_SLOW = 3, V_PASS = 4 /* to the kernel stack */ };

struct verdict {
	__u32 kind; /* enum verdict_kind */
	__u32 vif; /* V_TX: the output vif; V_SLOW: the input vif */
	__u32 reason; /* V_DROP: drop id; V_SLOW: enum slow_reason; V_TX: VERDICT_TAGGED | VLAN id
			 when the frame leaves with an 802.1Q tag in skb metadata (bpf_skb_vlan_push:
			 not in BPF_PROG_TEST_RUN's output data), else 0 */
} OV_PACKED;

#define VERDICT_TAGGED 0x10000

#endif
