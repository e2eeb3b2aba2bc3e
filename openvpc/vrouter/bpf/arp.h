/* The ARP proxy (pipeline.arp_from_vm / arp_answer): the reply is written over the request
 * and sent back out of the device it came in on. */
#ifndef OPENVPC_ARP_H
#define OPENVPC_ARP_H

#include "common.h"
#include "slow.h"
#include "tx.h"

#define ARP_LEN 28

INLINE struct route *ip_fib_lookup(__u32 vrf, __be32 addr)
{
	struct fib_key key = { .prefixlen = 64, .vrf = vrf, .addr = addr };

	return bpf_map_lookup_elem(&ov_ip_fib, &key);
}

INLINE int same_prefix(__be32 a, __be32 b, __u8 plen)
{
	__u32 mask;

	if (plen == 0)
		return 1;
	if (plen >= 32)
		return a == b;
	mask = 0xffffffffu << (32 - plen);
	return (bpf_ntohl(a) & mask) == (bpf_ntohl(b) & mask);
}

/* The MAC the proxy answers for `target`, or 0 when it has none. */
INLINE int arp_answer(struct pkt *p, __be32 target, __u8 *answer)
{
	struct vif *vif = p->vif;
	struct vrf *vrf = p->vrf;
	struct route *r;

	if (vif->has_ip && target == vif->ip)
		return 0;
	if (vrf->arp_mode == ARP_SINGLE_MAC ||
	    (vif->gateway_ip && target == vif->gateway_ip) ||
	    (vrf->link_local_gateway && target == vrf->link_local_gateway)) {
		mac_copy(answer, vrf->gateway_mac);
		return 1;
	}
	r = ip_fib_lookup(p->vrf_id, target);
	if (!r)
		return 0;
	if ((vif->has_ip && same_prefix(target, vif->ip, vif->prefix_len)) ||
	    vrf->mode != MODE_L3) {
		if (!r->has_mac)
			return 0;
		mac_copy(answer, r->mac);
		return 1;
	}
	mac_copy(answer, vrf->gateway_mac);
	return 1;
}

NOINLINE int arp_from_vm(struct pkt *p)
{
	struct __sk_buff *skb = p->skb;
	__u8 sha[6], answer[6];
	__be32 spa, tpa;
	__u8 *a, *eth;
	__u16 op;

	if (p->len < ETH_HLEN_ + ARP_LEN)
		return drop(p, DROP_SHORT_ARP);
	a = pkt_ptr(skb, ETH_HLEN_, ARP_LEN);
	if (!a)
		return send_up(p, SLOW_ARP);
	if (a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0 || a[4] != 6 || a[5] != 4)
		return drop(p, DROP_ARP_NOT_IPV4_ETHERNET);
	op = ((__u16)a[6] << 8) | a[7];
	if (op != 1 && op != 2)
		return drop(p, DROP_ARP_BAD_OP);
	if (op != 1)
		return p->vrf->mode == MODE_L3 ? punt(p, SLOW_ARP) : BRIDGE_IT;
	mac_copy(sha, a + 8);
	__builtin_memcpy(&spa, a + 14, 4);
	__builtin_memcpy(&tpa, a + 24, 4);
	if (spa == tpa || spa == 0) /* gratuitous or a probe: the agent learns from it */
		return punt(p, SLOW_ARP);
	if (!arp_answer(p, tpa, answer)) {
		if (p->vif->has_ip && tpa == p->vif->ip)
			return drop(p, DROP_ARP_IGNORED);
		return p->vrf->mode == MODE_L3 ? punt(p, SLOW_ARP) : BRIDGE_IT;
	}
	if (trim(skb, ETH_HLEN_ + ARP_LEN))
		return drop(p, DROP_TX_FAILED);
	eth = pkt_ptr(skb, 0, ETH_HLEN_ + ARP_LEN);
	if (!eth)
		return drop(p, DROP_TX_FAILED);
	a = eth + ETH_HLEN_;
	mac_copy(eth, sha);
	mac_copy(eth + 6, answer);
	a[7] = 2; /* reply */
	mac_copy(a + 8, answer);
	__builtin_memcpy(a + 14, &tpa, 4);
	mac_copy(a + 18, sha);
	__builtin_memcpy(a + 24, &spa, 4);
	if (redirect_vif(p->vif) != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx(p, p->in_vif, ETH_HLEN_ + ARP_LEN);
}

#endif
