/* The maps of layout.h, the per-packet context every stage shares, and the exits every
 * program ends through (transmit, drop, pass), each writing ov_verdict and the counters. */
#ifndef OPENVPC_COMMON_H
#define OPENVPC_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "layout.h"
#include "drops.h"

#define INLINE static __always_inline
/* a subprogram: called from many places, verified per call site, emitted once */
#define NOINLINE static __noinline

#define ETH_HLEN_ 14
#define IP_HLEN 20
#define UDP_HLEN 8
#define VXLAN_HLEN 8
#define MPLS_HLEN 4
#define GRE_HLEN 4
#define MAX_DEPTH 4 /* next-hop nesting the Python pipeline allows (pipeline.MAX_DEPTH) */
#define PORT_VXLAN 4789
#define PORT_MPLS 6635
#define PORT_MPLS_LEGACY 51234
#define PORT_DHCP_SERVER 67
#define PORT_DNS 53
#define OUTER_TTL 64
#define MPLS_TTL 64
#define ENTROPY_BASE 49152

/* the fast path's own maps; the Python map writer sizes ov_flows at load time */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_VIFS);
	__type(key, __u32);
	__type(value, struct vif);
} ov_vifs SEC(".maps");

struct { /* node-side device ifindex -> vif id */
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIFS);
	__type(key, __u32);
	__type(value, __u32);
} ov_ifindex SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct allowed_ip_key);
	__type(value, __u8);
} ov_allowed_ips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vrf);
} ov_vrfs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fib_key);
	__type(value, struct route);
} ov_ip_fib SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_key);
	__type(value, struct rule_list);
} ov_rules SEC(".maps");

struct { /* the chunks of ov_rules entries after their first (layout.h) */
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rule_chunk_key);
	__type(value, struct rule_list);
} ov_rule_chunks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mac_key);
	__type(value, struct route);
} ov_mac_fib SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct nexthop);
} ov_nexthops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct label);
} ov_labels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} ov_vnis SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} ov_vlans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node);
} ov_node SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow);
} ov_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4097); /* every VRF and FLOW_ROOM_ALL */
	__type(key, __u32);
	__type(value, struct flow_room);
} ov_flow_room SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4097);
	__type(key, __u32);
	__type(value, __u64);
} ov_flow_made SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct punt_key);
	__type(value, struct punt_bucket);
} ov_punt_tokens SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ov_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_VIFS);
	__type(key, __u32);
	__type(value, struct vif_stats);
} ov_vif_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOW_REASONS);
	__type(key, __u32);
	__type(value, __u64);
} ov_slow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct verdict);
} ov_verdict SEC(".maps");

/* One packet's way through the stages. Offsets are from skb->data in the packet as it
 * arrived; nothing is written to the packet until a stage commits to an output, so that
 * whatever goes up to the slow path goes up as it came in. */
struct pkt {
	struct __sk_buff *skb;
	struct node *node;
	struct vif *vif; /* the input vif (the fabric's for fabric_in) */
	struct vrf *vrf; /* set once the VRF is known */
	__u32 in_vif;
	__u32 vrf_id;
	__u32 fabric_vif;
	__u32 len; /* skb->len at entry */
	__u8 fabric_in; /* from the fabric: nothing goes back to it (pipeline's fabric_in) */
	__u8 ttl_dec; /* decrement the TTL when transmitting */
	__u8 vlan_in_data; /* a fabric frame whose 802.1Q tag is in the data (not in skb meta) */
	__u8 depth; /* next-hop nesting so far */
	__u16 vlan; /* fabric: the VLAN id */
	__u16 ethertype; /* of the (inner) frame */
	__u32 l2_off; /* the (inner) Ethernet header: where a bridged frame starts */
	__u32 frame_end; /* where the (inner) frame ends */
	__u32 l3_off; /* the IPv4 header */
	/* IPv4, filled by parse_ipv4 */
	__u32 tot_len;
	__u8 ihl; /* header length in bytes */
	__u8 proto;
	__u8 ttl;
	__u8 is_fragment; /* MF or offset: no L4 header to read */
	__u16 frag; /* flags_frag & 0x3fff: fragments share the (0, 0) ports */
	__be32 src;
	__be32 dst;
	__u16 sport; /* the flow key's ports, in the flow key's byte order */
	__u16 dport;
	__u16 sport_h; /* the same as host integers, for the entropy hash */
	__u16 dport_h;
	__u8 eth_dst[6]; /* of the (inner) frame */
	__u32 segs; /* a super-frame: the segments it stands for (0 or 1: a plain frame) */
	__u32 seg_payload; /* ... and their TCP payload together (0: unknown) */
	struct flow *flow; /* the flow entry hit, counted once the fast path decides */
	__u8 flow_tcp_flags;
	__u32 out_label; /* the tunnel's label, VNI or VLAN id */
	__u16 out_sport; /* the tunnel's entropy port */
};

/* Results of a stage: keep going, or the program is done with this return code, or the
 * program's top level is to bridge / route the frame next (one call site for each of those
 * subprograms keeps the verifier's work and the combined stack small). */
#define CONTINUE (-1)
#define BRIDGE_IT (-2)
#define ROUTE_IT (-3)

/* Per-CPU scratch for what is too big for the 512-byte stack of a call chain. */
struct scratch {
	struct bpf_fib_lookup fib;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} ov_scratch SEC(".maps");

INLINE struct bpf_fib_lookup *scratch_fib(void)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&ov_scratch, &zero);

	return s ? &s->fib : NULL;
}

INLINE void *pkt_ptr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off > 0x3fff || len > 0x3fff) /* the verifier tracks packet ranges below 64 KiB */
		return NULL;
	/* the bound again, on the very register the pointer arithmetic uses (clang tests a
	 * copy, whose bounds the verifier does not carry over) */
	__u64 o = off;

	asm volatile("%0 &= 0x3fff" : "+r"(o));
	data += o;
	/* opaque to clang, which would otherwise fold constants into `end` (the verifier
	 * forbids arithmetic on it) */
	asm volatile("" : "+r"(end));
	if (data + len > end)
		return NULL;
	return data;
}

INLINE void count_slow(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&ov_slow, &reason);

	if (n)
		*n += 1;
}

INLINE void set_verdict(__u32 kind, __u32 vif, __u32 reason)
{
	__u32 zero = 0;
	struct verdict *v = bpf_map_lookup_elem(&ov_verdict, &zero);

	if (v) {
		v->kind = kind;
		v->vif = vif;
		v->reason = reason;
	}
}

INLINE struct vif_stats *vif_stats(__u32 vif)
{
	return bpf_map_lookup_elem(&ov_vif_stats, &vif);
}

INLINE __u32 segments(struct pkt *p)
{
	return p->segs > 1 ? p->segs : 1;
}

/* The bytes of a frame of `len` as its segments count them (superframe._commit): every
 * segment carries the headers again. */
INLINE __u64 seg_bytes(struct pkt *p, __u32 len)
{
	__u32 segs = segments(p);

	if (segs == 1 || !p->seg_payload || p->seg_payload > len)
		return len;
	return len + (__u64)(segs - 1) * (len - p->seg_payload);
}

INLINE void count_rx(struct pkt *p)
{
	struct vif_stats *s = vif_stats(p->in_vif);

	if (s) {
		s->rx_packets += segments(p);
		s->rx_bytes += seg_bytes(p, p->len);
	}
}

/* A drop: counted by reason, and on the input vif as the pipeline's count_drop does. */
NOINLINE int drop_vif(__u32 reason, __u32 vif, int has_vif)
{
	__u64 *n = bpf_map_lookup_elem(&ov_drops, &reason);

	if (n)
		*n += 1;
	if (has_vif) {
		struct vif_stats *s = vif_stats(vif);

		if (s)
			s->drops += 1;
	}
	set_verdict(V_DROP, has_vif ? vif : 0, reason);
	return TC_ACT_SHOT;
}

/* Count a packet on the flow it hit (a super-frame counts each of its segments). Only for
 * frames the fast path decides: what goes up is counted by the pipeline, which runs again. */
NOINLINE void flow_touch(struct pkt *p)
{
	struct flow *f = p->flow;
	__u32 segs = segments(p);
	__u8 flags = p->flow_tcp_flags;

	if (!f)
		return;
	/* struct flow keeps its counters 8-byte aligned (layout.h) */
	__sync_fetch_and_add((__u64 *)((void *)f + __builtin_offsetof(struct flow, packets)), segs);
	__sync_fetch_and_add((__u64 *)((void *)f + __builtin_offsetof(struct flow, bytes)),
			     p->tot_len);
	f->last_used = bpf_ktime_get_ns();
	/* the build has no -mcpu=v3, so no atomic OR: a plain OR only when a flag is new (two
	 * CPUs racing on the first packet with a new flag may lose one of them) */
	if (flags && (f->tcp_flags & flags) != flags)
		f->tcp_flags |= flags;
	p->flow = NULL;
}

/* A drop the fast path decides: the frame counts as received too (what goes up is counted
 * by the slow path, which runs the pipeline on it). */
NOINLINE int drop(struct pkt *p, __u32 reason)
{
	count_rx(p);
	flow_touch(p);
	return drop_vif(reason, p->in_vif, 1);
}

/* The frame was redirected to `out_vif`; `tag` as struct verdict's reason for V_TX. */
INLINE int sent(__u32 out_vif, __u32 len, __u32 tag)
{
	struct vif_stats *s = vif_stats(out_vif);

	if (s) {
		s->tx_packets += 1;
		s->tx_bytes += len;
	}
	set_verdict(V_TX, out_vif, tag);
	return TC_ACT_REDIRECT;
}

INLINE int count_tx_tagged(struct pkt *p, __u32 out_vif, __u32 len, __u32 tag)
{
	struct vif_stats *s = vif_stats(out_vif);

	count_rx(p);
	flow_touch(p);
	if (s) {
		s->tx_packets += segments(p);
		s->tx_bytes += seg_bytes(p, len);
	}
	set_verdict(V_TX, out_vif, tag);
	return TC_ACT_REDIRECT;
}

INLINE int count_tx(struct pkt *p, __u32 out_vif, __u32 len)
{
	return count_tx_tagged(p, out_vif, len, 0);
}

INLINE int pass_to_kernel(struct pkt *p)
{
	set_verdict(V_PASS, p->in_vif, 0);
	return TC_ACT_OK;
}

INLINE int mac_eq(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) |
		(a[5] ^ b[5])) == 0;
}

INLINE void mac_copy(__u8 *dst, const __u8 *src)
{
	__builtin_memcpy(dst, src, 6);
}

/* An ECMP member index the verifier can bound (clang drops a plain `& 15` after a `% n` it
 * knows is below 16, and the verifier does not follow modulo). */
INLINE __u32 member_index(__u16 sport, __u8 n)
{
	__u32 idx = sport % n;

	asm volatile("%0 &= 15" : "+r"(idx));
	return idx;
}

/* Fold a 32-bit one's-complement sum to 16 bits. */
INLINE __u16 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

#endif
