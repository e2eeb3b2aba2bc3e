/* Outputs: a routed packet or a bridged frame to a local vif (decapsulated first when it came
 * from the fabric), and the fabric's outer headers (encap.OuterTemplate, byte for byte).
 * Every helper that can move the packet is followed by re-deriving pointers. */
#ifndef OPENVPC_TX_H
#define OPENVPC_TX_H

#include "common.h"
#include "slow.h"

#define ADJ_FLAGS_DECAP BPF_F_ADJ_ROOM_FIXED_GSO
#define ADJ_ENCAP_BASE (BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)

static const __u8 ZERO_MAC[6] = { 0, 0, 0, 0, 0, 0 };

/* bytes of outer IPv4 + UDP/GRE + VXLAN/MPLS (encap._OUTER_LEN) */
INLINE __u32 outer_len(__u8 encap)
{
	if (encap == ENCAP_VXLAN)
		return IP_HLEN + UDP_HLEN + VXLAN_HLEN;
	if (encap == ENCAP_MPLSOUDP)
		return IP_HLEN + UDP_HLEN + MPLS_HLEN;
	if (encap == ENCAP_MPLSOGRE)
		return IP_HLEN + GRE_HLEN + MPLS_HLEN;
	return 0;
}

/* encap.overhead */
INLINE __u32 overhead(__u8 encap, int l2_payload)
{
	if (encap == ENCAP_VLAN)
		return 0;
	return outer_len(encap) + ((l2_payload || encap == ENCAP_VXLAN) ? ETH_HLEN_ : 0);
}

/* Whether the IPv4 packet fits `mtu` (a super-frame: each of its segments); else it goes up
 * (the pipeline fragments or answers ICMP fragmentation-needed). */
NOINLINE int fits(struct pkt *p, __u32 mtu)
{
	struct __sk_buff *skb = p->skb;
	__u32 hdrs = p->ihl;
	__u8 *tcp;

	if (!skb->gso_size)
		return p->tot_len <= mtu;
	if (p->proto == IPPROTO_TCP_) {
		tcp = pkt_ptr(skb, p->l3_off + p->ihl, 20);
		if (!tcp)
			return 0;
		hdrs += (tcp[12] >> 4) * 4;
	} else {
		hdrs += UDP_HLEN;
	}
	return hdrs + skb->gso_size <= mtu;
}

/* Cut the frame to `len` bytes (the pipeline slices IP packets to their total length). */
INLINE int trim(struct __sk_buff *skb, __u32 len)
{
	if (skb->len <= len)
		return 0;
	return bpf_skb_change_tail(skb, len, 0) ? -1 : 0;
}

/* The pipeline's TTL - 1 with the RFC 1624 checksum update, on the header at `off`. */
INLINE int apply_ttl(struct pkt *p, __u32 off)
{
	__u8 *h;
	__u32 csum;

	if (!p->ttl_dec)
		return 0;
	h = pkt_ptr(p->skb, off, IP_HLEN);
	if (!h)
		return -1;
	h[8] -= 1;
	csum = (((__u32)h[10] << 8) | h[11]) + 0x0100;
	csum = (csum & 0xffff) + (csum >> 16);
	h[10] = csum >> 8;
	h[11] = csum;
	return 0;
}

/* Drop the fabric's 802.1Q tag (in skb metadata or, under BPF_PROG_TEST_RUN, in the data). */
INLINE int untag(struct pkt *p)
{
	if (p->vlan_in_data) {
		if (bpf_skb_vlan_pop(p->skb))
			return -1;
		p->vlan_in_data = 0;
		p->l3_off -= 4;
		p->frame_end -= 4;
		return 0;
	}
	if (p->skb->vlan_present && bpf_skb_vlan_pop(p->skb))
		return -1;
	return 0;
}

INLINE int redirect_vif(struct vif *out)
{
	if (out->flags & VIF_PEER)
		return bpf_redirect_peer(out->ifindex, 0);
	return bpf_redirect(out->ifindex, 0);
}

/* A routed IPv4 packet to a local vif: Ethernet header from the next hop. */
NOINLINE int deliver_routed(struct pkt *p, __u32 out_vif, struct vif *out, const __u8 *dmac,
			  const __u8 *smac)
{
	struct __sk_buff *skb = p->skb;
	__u8 mac[12];
	__u8 *eth;
	int rc;

	mac_copy(mac, dmac);
	mac_copy(mac + 6, smac);
	if (p->l3_off > ETH_HLEN_ && !p->vlan_in_data) { /* decapsulate: nothing moved yet */
		if (bpf_skb_adjust_room(skb, -(__s32)(p->l3_off - ETH_HLEN_), BPF_ADJ_ROOM_MAC,
					ADJ_FLAGS_DECAP))
			return send_up(p, SLOW_OTHER);
		p->l3_off = ETH_HLEN_;
	}
	if (untag(p))
		return drop(p, DROP_TX_FAILED);
	if (p->l3_off != ETH_HLEN_)
		return drop(p, DROP_TX_FAILED);
	if (trim(skb, ETH_HLEN_ + p->tot_len) || apply_ttl(p, ETH_HLEN_))
		return drop(p, DROP_TX_FAILED);
	eth = pkt_ptr(skb, 0, ETH_HLEN_);
	if (!eth)
		return drop(p, DROP_TX_FAILED);
	__builtin_memcpy(eth, mac, 12);
	eth[12] = 0x08;
	eth[13] = 0x00;
	rc = redirect_vif(out);
	if (rc != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx(p, out_vif, skb->len);
}

/* A bridged frame (the inner one, from the fabric) to a local vif, as it is. */
NOINLINE int deliver_frame(struct pkt *p, __u32 out_vif, struct vif *out)
{
	struct __sk_buff *skb = p->skb;
	__u8 inner[ETH_HLEN_];
	__u8 *eth;
	__u32 off = p->l2_off;
	int rc;

	if (off) {
		eth = pkt_ptr(skb, off, ETH_HLEN_);
		if (!eth)
			return send_up(p, SLOW_OTHER);
		__builtin_memcpy(inner, eth, ETH_HLEN_);
		if (bpf_skb_adjust_room(skb, -(__s32)off, BPF_ADJ_ROOM_MAC, ADJ_FLAGS_DECAP))
			return send_up(p, SLOW_OTHER);
		eth = pkt_ptr(skb, 0, ETH_HLEN_);
		if (!eth)
			return drop(p, DROP_TX_FAILED);
		__builtin_memcpy(eth, inner, ETH_HLEN_);
		p->frame_end -= off;
		p->l2_off = 0;
	}
	if (untag(p))
		return drop(p, DROP_TX_FAILED);
	if (trim(skb, p->frame_end))
		return drop(p, DROP_TX_FAILED);
	rc = redirect_vif(out);
	if (rc != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx(p, out_vif, skb->len);
}

/* The outer IPv4 header checksum over 20 bytes. */
INLINE void ip_checksum(__u8 *ip)
{
	__u16 *w = (__u16 *)ip;
	__u64 sum = 0;

	w[5] = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	w[5] = ~csum_fold32(sum);
}

/* The outer headers at `o` (IPv4, UDP or GRE, VXLAN or MPLS) for a payload of `payload`
 * bytes, as OuterTemplate.wrap writes them. `o` has outer_len(encap) bytes. */
INLINE void write_outer(__u8 *o, __u8 encap, __be32 src, __be32 dst, __u32 label, __u16 sport,
			__u32 payload)
{
	__u32 total = outer_len(encap) + payload;
	__u8 *t = o + IP_HLEN;

	o[0] = 0x45;
	o[1] = 0;
	o[2] = total >> 8;
	o[3] = total;
	o[4] = 0; /* id 0 */
	o[5] = 0;
	o[6] = 0x40; /* DF */
	o[7] = 0;
	o[8] = OUTER_TTL;
	o[9] = encap == ENCAP_MPLSOGRE ? IPPROTO_GRE_ : IPPROTO_UDP_;
	__builtin_memcpy(o + 12, &src, 4);
	__builtin_memcpy(o + 16, &dst, 4);
	ip_checksum(o);
	if (encap == ENCAP_MPLSOGRE) {
		t[0] = 0;
		t[1] = 0;
		t[2] = 0x88;
		t[3] = 0x47;
		t += GRE_HLEN;
	} else {
		__u16 dport = encap == ENCAP_VXLAN ? PORT_VXLAN : PORT_MPLS;
		__u32 ulen = total - IP_HLEN;

		t[0] = sport >> 8;
		t[1] = sport;
		t[2] = dport >> 8;
		t[3] = dport;
		t[4] = ulen >> 8;
		t[5] = ulen;
		t[6] = 0; /* no UDP checksum */
		t[7] = 0;
		t += UDP_HLEN;
	}
	if (encap == ENCAP_VXLAN) {
		t[0] = 0x08;
		t[1] = 0;
		t[2] = 0;
		t[3] = 0;
		t[4] = label >> 16;
		t[5] = label >> 8;
		t[6] = label;
		t[7] = 0;
	} else { /* label, TC 0, bottom of stack, TTL 64 */
		__u32 w = (label << 12) | 0x100 | MPLS_TTL;

		t[0] = w >> 24;
		t[1] = w >> 16;
		t[2] = w >> 8;
		t[3] = w;
	}
}

/* The underlay route toward `dst` (the L3 underlay's ECMP sees the outer ports). */
INLINE int fib_lookup(struct pkt *p, struct bpf_fib_lookup *fib, __be32 dst, __u8 encap,
		      __u16 sport)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = 2; /* AF_INET */
	fib->l4_protocol = encap == ENCAP_MPLSOGRE ? IPPROTO_GRE_ : IPPROTO_UDP_;
	fib->sport = bpf_htons(sport);
	fib->dport = bpf_htons(encap == ENCAP_VXLAN ? PORT_VXLAN : PORT_MPLS);
	fib->ifindex = p->node->fabric_ifindex;
	fib->ipv4_src = p->node->fabric_ip;
	fib->ipv4_dst = dst;
	/* from the egress side: the node need not forward on the fabric device for this */
	return bpf_fib_lookup(p->skb, fib, sizeof(*fib), BPF_FIB_LOOKUP_OUTPUT);
}

/* Out of the fabric: to the neighbour the FIB names, or through the kernel's neighbour
 * resolution. The frame's MACs are ZERO_MAC + fabric MAC, as the pipeline writes them for a
 * kernel-routed fabric, until the FIB gives the neighbour's. */
INLINE int fabric_out(struct pkt *p, struct bpf_fib_lookup *fib, long fib_rc)
{
	struct __sk_buff *skb = p->skb;
	__u32 len = skb->len;
	__u8 *eth;
	long rc;

	if (fib_rc == BPF_FIB_LKUP_RET_SUCCESS) {
		eth = pkt_ptr(skb, 0, ETH_HLEN_);
		if (!eth)
			return drop(p, DROP_TX_FAILED);
		mac_copy(eth, fib->dmac);
		mac_copy(eth + 6, fib->smac);
		rc = bpf_redirect(fib->ifindex, 0);
	} else {
		rc = bpf_redirect_neigh(p->node->fabric_ifindex, NULL, 0, 0);
	}
	if (rc != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx(p, p->fabric_vif, len);
}

/* Wrap the packet for `nh` and send it to the fabric. `l2`: the payload is the frame
 * (Ethernet kept), else the IP packet (with a made-up inner Ethernet header for VXLAN:
 * `inner_dmac` + the VRF's gateway MAC). Only from a VM: the frame starts at 0 and the IP
 * packet at 14. The label and entropy port are in p->out_label, p->out_sport. */
NOINLINE int encap_out(struct pkt *p, struct nexthop *nh, int l2, const __u8 *inner_dmac)
{
	__u32 label = p->out_label;
	__u16 sport = p->out_sport;
	struct __sk_buff *skb = p->skb;
	struct bpf_fib_lookup *fib = scratch_fib();
	__u8 encap = nh->encap;
	__u32 olen = outer_len(encap);
	__u32 room, payload;
	__u64 flags;
	__u8 inner[ETH_HLEN_];
	__u8 *d;
	long fib_rc;
	__be32 dst = nh->dst_ip;

	if (p->l3_off != ETH_HLEN_ && (l2 == 0 || p->ethertype == ETH_P_IP))
		return send_up(p, SLOW_OTHER); /* decapsulated then encapsulated again */
	if (!fib)
		return send_up(p, SLOW_OTHER);
	fib_rc = fib_lookup(p, fib, dst, encap, sport);
	if (fib_rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return send_up(p, SLOW_MTU);
	d = pkt_ptr(skb, 0, ETH_HLEN_);
	if (!d)
		return send_up(p, SLOW_OTHER);
	if (l2) {
		__builtin_memcpy(inner, d, ETH_HLEN_);
	} else {
		mac_copy(inner, inner_dmac);
		mac_copy(inner + 6, p->vrf->gateway_mac);
		inner[12] = 0x08;
		inner[13] = 0x00;
	}
	if (l2 && p->ethertype != ETH_P_IP) {
		/* a non-IP frame rides whole: new headers in front of it (adjust_room only
		 * knows IP packets) */
		payload = skb->len;
		room = ETH_HLEN_ + olen;
		if (bpf_skb_change_head(skb, room, 0))
			return drop(p, DROP_TX_FAILED);
	} else {
		if (trim(skb, ETH_HLEN_ + p->tot_len) || apply_ttl(p, ETH_HLEN_))
			return drop(p, DROP_TX_FAILED);
		payload = p->tot_len;
		room = olen;
		flags = ADJ_ENCAP_BASE;
		if (encap == ENCAP_MPLSOGRE)
			flags |= BPF_F_ADJ_ROOM_ENCAP_L4_GRE;
		else
			flags |= BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
		if (l2 || encap == ENCAP_VXLAN) {
			room += ETH_HLEN_;
			payload += ETH_HLEN_;
			flags |= BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN_);
			if (encap == ENCAP_VXLAN)
				flags |= BPF_F_ADJ_ROOM_ENCAP_L2_ETH;
		} else {
			flags |= BPF_F_ADJ_ROOM_ENCAP_L2(MPLS_HLEN);
		}
		if (bpf_skb_adjust_room(skb, room, BPF_ADJ_ROOM_MAC, flags))
			return drop(p, DROP_TX_FAILED);
		d = pkt_ptr(skb, ETH_HLEN_ + olen, ETH_HLEN_);
		if (d && (l2 || encap == ENCAP_VXLAN))
			__builtin_memcpy(d, inner, ETH_HLEN_);
	}
	d = pkt_ptr(skb, 0, ETH_HLEN_ + IP_HLEN + UDP_HLEN + VXLAN_HLEN);
	if (!d)
		return drop(p, DROP_TX_FAILED);
	mac_copy(d, ZERO_MAC);
	mac_copy(d + 6, p->node->fabric_mac);
	d[12] = 0x08;
	d[13] = 0x00;
	write_outer(d + ETH_HLEN_, encap, p->node->fabric_ip, dst, label, sport, payload);
	return fabric_out(p, fib, fib_rc);
}

/* 802.1Q on the L2 underlay: the routed packet to the remote node's MAC, or (bridged) the
 * VM's frame as it is, tagged. The MAC comes from the FIB (which answers only where the
 * fabric device forwards: net.ipv4.conf.<fabric>.forwarding=1); a neighbour it does not
 * know goes up, where the pipeline resolves it; without a FIB answer the kernel's neighbour
 * resolution fills it in (bpf_redirect_neigh). */
NOINLINE int vlan_out(struct pkt *p, struct nexthop *nh, __u32 vlan, int bridged)
{
	struct __sk_buff *skb = p->skb;
	struct bpf_fib_lookup *fib = scratch_fib();
	struct bpf_redir_neigh neigh = { .nh_family = 2 /* AF_INET */ };
	long fib_rc = -1, rc;
	__u8 *eth;

	if (p->l3_off != ETH_HLEN_ || !fib)
		return send_up(p, SLOW_OTHER);
	if (!bridged) {
		fib_rc = fib_lookup(p, fib, nh->dst_ip, ENCAP_MPLSOUDP, 0);
		if (fib_rc == BPF_FIB_LKUP_RET_NO_NEIGH)
			return send_up(p, SLOW_OTHER); /* the slow path resolves it, as the pipeline */
		if (trim(skb, ETH_HLEN_ + p->tot_len) || apply_ttl(p, ETH_HLEN_))
			return drop(p, DROP_TX_FAILED);
		eth = pkt_ptr(skb, 0, ETH_HLEN_);
		if (!eth)
			return drop(p, DROP_TX_FAILED);
		mac_copy(eth, fib_rc == BPF_FIB_LKUP_RET_SUCCESS ? fib->dmac : ZERO_MAC);
		mac_copy(eth + 6, p->node->fabric_mac);
		eth[12] = 0x08;
		eth[13] = 0x00;
	}
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), (__u16)vlan))
		return drop(p, DROP_TX_FAILED);
	if (bridged || fib_rc == BPF_FIB_LKUP_RET_SUCCESS) {
		rc = bpf_redirect(bridged ? p->node->fabric_ifindex : fib->ifindex, 0);
	} else {
		neigh.ipv4_nh = nh->dst_ip;
		rc = bpf_redirect_neigh(p->node->fabric_ifindex, &neigh, sizeof(neigh), 0);
	}
	if (rc != TC_ACT_REDIRECT)
		return drop(p, DROP_TX_FAILED);
	return count_tx_tagged(p, p->fabric_vif, skb->len + 4, VERDICT_TAGGED | (vlan & 0x0fff));
}

#endif
