/* Going up: the frame, as it arrived, behind a struct slow_hdr, out of pkt0 to the vRouter
 * process, rate-limited per (input vif, VRF) with ov_punt_tokens. */
#ifndef OPENVPC_SLOW_H
#define OPENVPC_SLOW_H

#include "common.h"

#define NS_PER_US 1000ULL
#define MILLI 1000ULL
#define MAX_REFILL_US 100000000ULL /* 100 s: any bucket is full again long before */

/* One token from the source's bucket (full on first use, as ratelimit.PuntLimiter). */
INLINE int take_token(struct node *node, __u32 in_vif, __u32 vrf_id)
{
	struct punt_key key = { .vif = in_vif, .vrf = vrf_id };
	__u64 now = bpf_ktime_get_ns();
	__u64 burst = (__u64)node->punt_burst * MILLI;
	__u64 rate = node->punt_rate_milli;
	struct punt_bucket *b = bpf_map_lookup_elem(&ov_punt_tokens, &key);
	__u64 tokens, us;

	if (!b) {
		struct punt_bucket fresh = { .tokens_milli = 0, .last_ns = now };

		if (burst < MILLI)
			return 0;
		fresh.tokens_milli = burst - MILLI;
		bpf_map_update_elem(&ov_punt_tokens, &key, &fresh, BPF_ANY);
		return 1;
	}
	tokens = b->tokens_milli;
	if (now > b->last_ns) {
		us = (now - b->last_ns) / NS_PER_US;
		if (us > MAX_REFILL_US)
			us = MAX_REFILL_US;
		tokens += us * rate / 1000000ULL;
		if (tokens > burst)
			tokens = burst;
		b->last_ns = now;
	}
	if (tokens >= MILLI) {
		b->tokens_milli = tokens - MILLI;
		return 1;
	}
	b->tokens_milli = tokens;
	return 0;
}

/* A tag the kernel moved into skb metadata goes back into the data, where the slow path's
 * parser (and the pipeline) expect it; the TAP would otherwise write it over slow_hdr. */
INLINE int vlan_tag_into_data(struct __sk_buff *skb)
{
	__u16 tci = skb->vlan_tci;
	__be16 tpid = (__be16)skb->vlan_proto;
	__u8 *d;

	if (bpf_skb_vlan_pop(skb))
		return -1;
	if (bpf_skb_change_head(skb, 4, 0))
		return -1;
	d = pkt_ptr(skb, 0, 16);
	if (!d)
		return -1;
	__builtin_memmove(d, d + 4, 12);
	*(__be16 *)(d + 12) = tpid;
	*(__be16 *)(d + 14) = bpf_htons(tci);
	return 0;
}

/* Send the frame up: TC_ACT_REDIRECT, or -1 - the drop id when it cannot go up. A global
 * function: the verifier checks it once instead of at each of the forty places a frame goes
 * up from; so it gets ids, not struct pkt (whose pointers a global function cannot take). */
__noinline int slow_out(struct __sk_buff *skb, __u32 in_vif, __u32 vrf_id, __u32 reason)
{
	__u32 zero = 0;
	struct node *node = bpf_map_lookup_elem(&ov_node, &zero);
	struct slow_hdr *h;
	__u32 pkt0;

	if (!node || !node->pkt0_ifindex)
		return -1 - DROP_NO_AGENT_VIF;
	pkt0 = node->pkt0_ifindex;
	if (!take_token(node, in_vif, vrf_id))
		return -1 - DROP_PUNT_RATE_LIMITED;
	if (skb->vlan_present && vlan_tag_into_data(skb))
		return -1 - DROP_TX_FAILED;
	if (bpf_skb_change_head(skb, sizeof(struct slow_hdr), 0))
		return -1 - DROP_TX_FAILED;
	h = pkt_ptr(skb, 0, sizeof(*h));
	if (!h)
		return -1 - DROP_TX_FAILED;
	__builtin_memset(h, 0, sizeof(*h));
	h->proto = bpf_htons(SLOW_ETH_P);
	h->vif = bpf_htonl(in_vif);
	h->reason = bpf_htons((__u16)reason);
	count_slow(reason);
	set_verdict(V_SLOW, in_vif, reason);
	return bpf_redirect(pkt0, 0);
}

/* Send the frame up; the caller has not changed it. */
INLINE int send_up(struct pkt *p, __u32 reason)
{
	int rc = slow_out(p->skb, p->in_vif, p->vrf_id, reason);

	return rc >= 0 ? rc : drop(p, -1 - rc);
}

/* What the pipeline punts to the agent: dropped there when no agent vif exists. */
NOINLINE int punt(struct pkt *p, __u32 reason)
{
	if (!p->node->agent)
		return drop(p, DROP_NO_AGENT_VIF);
	return send_up(p, reason);
}

#endif
