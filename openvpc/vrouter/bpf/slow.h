/* Going up: the frame, as it arrived, behind a struct slow_hdr, out of pkt0 to the vRouter
 * process, rate-limited per (input vif, VRF) with ov_punt_tokens. */
#ifndef OPENVPC_SLOW_H
#define OPENVPC_SLOW_H

#include "common.h"

#define NS_PER_US 1000ULL
#define MILLI 1000ULL
#define MAX_REFILL_US 100000000ULL /* 100 s: any bucket is full again long before */

/* One token from the source's bucket (full on first use, as ratelimit.PuntLimiter). */
INLINE int take_token(struct pkt *p)
{
	struct punt_key key = { .vif = p->in_vif, .vrf = p->vrf_id };
	__u64 now = bpf_ktime_get_ns();
	__u64 burst = (__u64)p->node->punt_burst * MILLI;
	__u64 rate = p->node->punt_rate_milli;
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

/* Send the frame up; the caller has not changed it. */
NOINLINE int send_up(struct pkt *p, __u32 reason)
{
	struct __sk_buff *skb = p->skb;
	__u32 pkt0 = p->node->pkt0_ifindex;
	struct slow_hdr *h;

	if (!pkt0)
		return drop(p, DROP_NO_AGENT_VIF);
	if (!take_token(p))
		return drop(p, DROP_PUNT_RATE_LIMITED);
	if (skb->vlan_present && vlan_tag_into_data(skb))
		return drop(p, DROP_TX_FAILED);
	if (bpf_skb_change_head(skb, sizeof(struct slow_hdr), 0))
		return drop(p, DROP_TX_FAILED);
	h = pkt_ptr(skb, 0, sizeof(*h));
	if (!h)
		return drop(p, DROP_TX_FAILED);
	__builtin_memset(h, 0, sizeof(*h));
	h->proto = bpf_htons(SLOW_ETH_P);
	h->vif = bpf_htonl(p->in_vif);
	h->reason = bpf_htons((__u16)reason);
	count_slow(reason);
	set_verdict(V_SLOW, p->in_vif, reason);
	return bpf_redirect(pkt0, 0);
}

/* What the pipeline punts to the agent: dropped there when no agent vif exists. */
NOINLINE int punt(struct pkt *p, __u32 reason)
{
	if (!p->node->agent)
		return drop(p, DROP_NO_AGENT_VIF);
	return send_up(p, reason);
}

#endif
