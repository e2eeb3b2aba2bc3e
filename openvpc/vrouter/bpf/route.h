/* IP forwarding (pipeline.route / ip_nexthop / receive / tunnel_ip): TTL, FIB, flow table,
 * next hop; the gateway's echo reply. */
#ifndef OPENVPC_ROUTE_H
#define OPENVPC_ROUTE_H

#include "common.h"
#include "slow.h"
#include "parse.h"
#include "entropy.h"
#include "flow.h"
#include "tx.h"
#include "arp.h"

/* Amazon's destination check: a VM receives only what is addressed to it (its address, its
 * VIPs) unless the check is off (an appliance a route points at). */
INLINE int destination_allowed(struct pkt *p, __u32 out_id, const struct vif *out)
{
	struct allowed_ip_key key = { .vif = out_id, .ip = p->dst };

	if (out->kind != VIF_VM || !(out->flags & VIF_SOURCE_CHECK))
		return 1;
	if (out->has_ip && p->dst == out->ip)
		return 1;
	return bpf_map_lookup_elem(&ov_allowed_ips, &key) != NULL;
}

#define ICMP_CHUNK 64
#define ICMP_MAX_CHUNKS 64 /* echo requests up to 4 KiB are answered here, longer ones above */

/* The one's-complement sum of `len` bytes at `off`, read as stored (little end), the odd last
 * byte as the high-order byte of a zero-padded word. Shaped for the verifier: the bytes go
 * through a stack buffer (bpf_skb_load_bytes), so that the offset and the length stay
 * imprecise scalars and every way out of the chunk loop meets the one tail (zero-padded to a
 * whole chunk) in the same state; reading the packet directly made each chunk's offset a
 * distinct constant, and the tail a separate walk per chunk count (half the load time). */
INLINE int sum_bytes(struct __sk_buff *skb, __u32 off, __u32 len, __u64 *out)
{
	__u8 buf[ICMP_CHUNK];
	__u64 sum = 0;
	__u64 rest;

	for (int i = 0; i < ICMP_MAX_CHUNKS; i++) {
		if (len < ICMP_CHUNK)
			break;
		if (bpf_skb_load_bytes(skb, off, buf, ICMP_CHUNK))
			return -1;
		sum = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)buf, ICMP_CHUNK, (__u32)csum_fold32(sum));
		off += ICMP_CHUNK;
		len -= ICMP_CHUNK;
	}
	if (len >= ICMP_CHUNK)
		return -1;
	if (len) {
		__builtin_memset(buf, 0, sizeof(buf));
		rest = len;
		asm volatile("%0 &= 63" : "+r"(rest)); /* bounded on the register the helper gets */
		if (rest == 0 || bpf_skb_load_bytes(skb, off, buf, rest))
			return -1;
		sum = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)buf, ICMP_CHUNK, (__u32)csum_fold32(sum));
	}
	*out = sum;
	return 0;
}

/* replies.echo_reply over the request: swapped addresses, a fresh IPv4 header (no options,
 * TTL 64, id 0), type 0 code 0, both checksums recomputed. */
NOINLINE int echo_reply(struct pkt *p)
{
	struct __sk_buff *skb = p->skb;
	__u32 icmp_len = p->tot_len - p->ihl;
	__be32 src = p->src, dst = p->dst;
	__u64 sum;
	__u8 *d;

	if (skb->gso_size || icmp_len >= ICMP_CHUNK * ICMP_MAX_CHUNKS + ICMP_CHUNK ||
	    p->l3_off != ETH_HLEN_)
		return send_up(p, SLOW_OTHER);
	if (bpf_skb_pull_data(skb, ETH_HLEN_ + p->tot_len))
		return send_up(p, SLOW_OTHER);
	if (trim(skb, ETH_HLEN_ + p->tot_len))
		return drop(p, DROP_TX_FAILED);
	if (p->ihl > IP_HLEN &&
	    bpf_skb_adjust_room(skb, -(__s32)(p->ihl - IP_HLEN), BPF_ADJ_ROOM_NET, 0))
		return drop(p, DROP_TX_FAILED);
	d = pkt_ptr(skb, 0, ETH_HLEN_ + IP_HLEN + 8);
	if (!d)
		return drop(p, DROP_TX_FAILED);
	mac_copy(d, p->vif->mac);
	mac_copy(d + 6, p->vrf->gateway_mac);
	d += ETH_HLEN_;
	d[0] = 0x45;
	d[1] = 0;
	d[2] = (IP_HLEN + icmp_len) >> 8;
	d[3] = IP_HLEN + icmp_len;
	d[4] = d[5] = d[6] = d[7] = 0;
	d[8] = 64;
	d[9] = IPPROTO_ICMP_;
	__builtin_memcpy(d + 12, &dst, 4);
	__builtin_memcpy(d + 16, &src, 4);
	ip_checksum(d);
	d += IP_HLEN;
	d[0] = ICMP_ECHO_REPLY;
	d[1] = 0;
	d[2] = d[3] = 0;
	if (sum_bytes(skb, ETH_HLEN_ + IP_HLEN, icmp_len, &sum))
		return drop(p, DROP_TX_FAILED);
	d = pkt_ptr(skb, ETH_HLEN_ + IP_HLEN, 4);
	if (!d)
		return drop(p, DROP_TX_FAILED);
	*(__u16 *)(d + 2) = ~csum_fold32(sum);
	if (redirect_vif(p->vif) != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx(p, p->in_vif, skb->len);
}

/* A packet to a gateway address: echo replies from the sender's own gateway, DNS up. */
INLINE int receive(struct pkt *p)
{
	__u8 *icmp;
	int own;

	if (p->vif->kind != VIF_VM)
		return drop(p, DROP_RECEIVE_UNHANDLED);
	own = (p->vif->gateway_ip && p->dst == p->vif->gateway_ip) ||
	      (p->vrf->link_local_gateway && p->dst == p->vrf->link_local_gateway);
	if (p->proto == IPPROTO_ICMP_ && !p->is_fragment) {
		icmp = pkt_ptr(p->skb, p->l3_off + p->ihl, 1);
		if (!icmp)
			return send_up(p, SLOW_OTHER);
		if (*icmp == ICMP_ECHO_REQUEST) {
			if (!own)
				return drop(p, DROP_GATEWAY_OF_OTHER_SUBNET);
			return echo_reply(p);
		}
	}
	if (p->proto == IPPROTO_UDP_ && p->dport_h == PORT_DNS)
		return punt(p, SLOW_DNS);
	return drop(p, DROP_RECEIVE_UNHANDLED);
}

/* tunnel_ip: the routed packet to a remote vRouter. */
NOINLINE int tunnel_ip(struct pkt *p, struct nexthop *nh, __u32 label, struct route *r)
{
	__u32 mtu = p->node->fabric_mtu;
	const __u8 *inner_dmac;

	if (mtu < overhead(nh->encap, 0) || !fits(p, mtu - overhead(nh->encap, 0)))
		return send_up(p, SLOW_MTU);
	if (nh->encap == ENCAP_VLAN)
		return vlan_out(p, nh, label, 0);
	inner_dmac = (r && r->has_mac) ? r->mac : p->vrf->gateway_mac;
	p->out_label = label;
	p->out_sport = entropy_port(p);
	return encap_out(p, nh, 0, inner_dmac);
}

/* ip_nexthop, with ECMP (members chosen by the entropy port) unrolled into a bounded loop. */
INLINE int ip_nexthop(struct pkt *p, struct route *r)
{
	__u32 nh_id = r->nh, label = r->label, out_id;
	struct nexthop *nh = NULL;
	struct vif *out;
	__u16 sport;
	__u32 idx;

	for (int i = 0; i <= MAX_DEPTH + 1; i++) {
		nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
		if (!nh || p->depth > MAX_DEPTH)
			return drop(p, DROP_INVALID_NEXTHOP);
		if (nh->kind != NH_ECMP || nh->n_members == 0)
			break;
		if (nh->n_members > MAX_ECMP)
			return send_up(p, SLOW_NEXTHOP);
		sport = entropy_port(p);
		idx = member_index(sport, nh->n_members);
		nh_id = nh->members[idx].nh;
		if (nh->members[idx].label != NO_LABEL) /* else the route's own */
			label = nh->members[idx].label;
		p->depth++;
	}
	if (!nh)
		return drop(p, DROP_INVALID_NEXTHOP);
	switch (nh->kind) {
	case NH_ENCAP:
		out_id = nh->vif;
		if (out_id == p->in_vif)
			return drop(p, DROP_SAME_VIF);
		out = bpf_map_lookup_elem(&ov_vifs, &out_id);
		if (!out || out->kind == VIF_NONE)
			return drop(p, DROP_INVALID_NEXTHOP);
		if (!destination_allowed(p, out_id, out))
			return drop(p, DROP_DST_IP_MISMATCH);
		if (!fits(p, out->mtu))
			return send_up(p, SLOW_MTU);
		if (!out->ifindex)
			return send_up(p, SLOW_NEXTHOP);
		return deliver_routed(p, out_id, out, nh->dst_mac, nh->src_mac);
	case NH_TUNNEL:
		if (p->fabric_in)
			return drop(p, DROP_FABRIC_TO_FABRIC);
		if (label == NO_LABEL)
			return drop(p, DROP_INVALID_NEXTHOP);
		return tunnel_ip(p, nh, label, r);
	case NH_RECEIVE:
		return receive(p);
	case NH_RESOLVE:
		return punt(p, SLOW_RESOLVE);
	case NH_SLOW:
		return send_up(p, SLOW_NEXTHOP);
	case NH_DISCARD:
		return drop(p, DROP_DISCARD_NEXTHOP);
	default:
		return drop(p, DROP_INVALID_NEXTHOP);
	}
}

/* Route the IPv4 packet parsed into `p` in its VRF. A subprogram: many stages call it. */
static __noinline int route(struct pkt *p)
{
	struct route *r;
	int rc;

	if (!p->vrf)
		return drop(p, DROP_INVALID_VRF);
	if ((p->vrf->flags & VRF_DECREMENT_TTL) && !p->fabric_in) {
		if (p->ttl <= 1)
			return drop(p, DROP_TTL_EXPIRED);
		p->ttl_dec = 1;
	}
	r = ip_fib_lookup(p->vrf_id, p->dst);
	if (!r)
		return drop(p, DROP_NO_ROUTE);
	rc = l4_ports(p);
	if (rc != CONTINUE)
		return rc;
	if (ports_say(p, r->nh, VIF_POLICY)) {
		rc = flow_stage(p, r->nh);
		if (rc != CONTINUE)
			return rc;
	}
	return ip_nexthop(p, r);
}

#endif
