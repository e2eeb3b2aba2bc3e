/* Bridging (pipeline.bridge / l2_nexthop / tunnel_l2): the MAC FIB, ECMP by the Ethernet
 * header's entropy, the L2 gateway (route in the VRF), the fabric for remote MACs. */
#ifndef OPENVPC_BRIDGE_H
#define OPENVPC_BRIDGE_H

#include "common.h"
#include "slow.h"
#include "parse.h"
#include "entropy.h"
#include "tx.h"

static const __u8 BROADCAST_MAC[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* The 14 Ethernet bytes the pipeline hashes: the frame's, without a fabric 802.1Q tag. */
INLINE int frame_eth(struct pkt *p, __u8 *eth)
{
	__u8 *d = pkt_ptr(p->skb, p->l2_off, 18);

	if (!d) {
		d = pkt_ptr(p->skb, p->l2_off, ETH_HLEN_);
		if (!d || p->vlan_in_data)
			return -1;
	}
	__builtin_memcpy(eth, d, 12);
	if (p->vlan_in_data) {
		eth[12] = d[16];
		eth[13] = d[17];
	} else {
		eth[12] = d[12];
		eth[13] = d[13];
	}
	return 0;
}

/* tunnel_l2: the frame to a remote vRouter (from a VM only: the fabric's frames never go back). */
INLINE int tunnel_l2(struct pkt *p, struct nexthop *nh, __u32 label)
{
	__u32 mtu = p->node->fabric_mtu;
	__u32 over = overhead(nh->encap, 1);
	__u8 eth[ETH_HLEN_];
	int rc;

	if (nh->encap == ENCAP_VLAN)
		return vlan_out(p, nh, label, 1);
	if (p->ethertype == ETH_P_IP) {
		rc = l4_ports(p);
		if (rc != CONTINUE)
			return rc;
		if (mtu < over || !fits(p, mtu - over))
			return send_up(p, SLOW_MTU);
		p->out_label = label;
		p->out_sport = entropy_port(p);
		return encap_out(p, nh, 1, NULL);
	}
	if (p->len - ETH_HLEN_ + over > mtu)
		return drop(p, DROP_FRAGMENTATION_NEEDED);
	if (frame_eth(p, eth))
		return send_up(p, SLOW_OTHER);
	p->out_label = label;
	p->out_sport = entropy_port_l2(p->vrf_id, eth);
	return encap_out(p, nh, 1, NULL);
}

INLINE int l2_nexthop(struct pkt *p, __u32 nh_id, __u32 label)
{
	struct nexthop *nh = NULL;
	struct vif *out;
	__u8 eth[ETH_HLEN_];
	__u32 out_id;
	__u16 sport;
	__u32 idx;
	int rc;

	for (int i = 0; i <= MAX_DEPTH + 1; i++) {
		nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
		if (!nh || p->depth > MAX_DEPTH)
			return drop(p, DROP_INVALID_NEXTHOP);
		if (nh->kind != NH_ECMP)
			break;
		if (nh->n_members == 0)
			return drop(p, DROP_INVALID_NEXTHOP);
		if (nh->n_members > MAX_ECMP)
			return send_up(p, SLOW_NEXTHOP);
		if (frame_eth(p, eth))
			return send_up(p, SLOW_OTHER);
		sport = entropy_port_l2(p->vrf_id, eth);
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
		if (!out->ifindex)
			return send_up(p, SLOW_NEXTHOP);
		return deliver_frame(p, out_id, out);
	case NH_TUNNEL:
		if (p->fabric_in)
			return drop(p, DROP_FABRIC_TO_FABRIC);
		if (label == NO_LABEL)
			return drop(p, DROP_INVALID_NEXTHOP);
		return tunnel_l2(p, nh, label);
	case NH_L2RECEIVE:
		if (p->ethertype != ETH_P_IP)
			return drop(p, DROP_RECEIVE_UNHANDLED);
		rc = parse_ipv4(p, p->l3_off, p->frame_end - p->l3_off);
		if (rc != CONTINUE)
			return rc;
		/* the gateway routes on behalf of the network, so it may send to the fabric */
		p->fabric_in = 0;
		p->depth++;
		return ROUTE_IT;
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

/* Switch the (inner) frame by destination MAC in its VRF's MAC FIB. */
static __noinline int bridge(struct pkt *p)
{
	struct mac_key key = { .vrf = p->vrf_id };
	struct route *r;

	if (p->eth_dst[0] & 1)
		mac_copy(key.mac, BROADCAST_MAC);
	else
		mac_copy(key.mac, p->eth_dst);
	r = bpf_map_lookup_elem(&ov_mac_fib, &key);
	if (!r)
		return drop(p, DROP_NO_L2_ROUTE);
	return l2_nexthop(p, r->nh, r->label);
}

#endif
