// SPDX-License-Identifier: GPL-2.0
/* The vRouter's fast path: three tc programs over the maps of layout.h, held to the Python
 * pipeline (openvpc/vrouter/pipeline.py) by the equivalence test. vif_in: frames from a VM;
 * fabric_in: frames from the underlay; slow_in: frames the slow path sends down through pkt0.
 * What they do not handle goes up to the slow path (slow.h), as it arrived. */
#include "common.h"
#include "slow.h"
#include "parse.h"
#include "arp.h"
#include "route.h"
#include "bridge.h"

#define PULL_VIF 128 /* Ethernet + IPv4 with options + the L4 ports */
#define PULL_FABRIC 256 /* the same behind outer IPv4 + UDP/GRE + VXLAN/MPLS + Ethernet */

INLINE struct node *node_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ov_node, &zero);
}

INLINE void pull(struct __sk_buff *skb, __u32 want)
{
	__u32 len = skb->len;

	if (skb->data_end - skb->data < want && skb->data_end - skb->data < len)
		bpf_skb_pull_data(skb, len < want ? len : want);
}

/* Ethernet of the frame at p->l2_off (pipeline parse_ethernet): fills ethertype, eth_dst,
 * and the IPv4 offset. 1 when it carries an 802.1Q tag (the caller decides). */
INLINE int parse_eth(struct pkt *p, int *rc)
{
	__u32 avail = p->frame_end - p->l2_off;
	__u8 *e;

	*rc = CONTINUE;
	if (p->frame_end < p->l2_off || avail < ETH_HLEN_) {
		*rc = drop(p, DROP_SHORT_ETHERNET);
		return 0;
	}
	e = pkt_ptr(p->skb, p->l2_off, ETH_HLEN_);
	if (!e) {
		*rc = send_up(p, SLOW_OTHER);
		return 0;
	}
	mac_copy(p->eth_dst, e);
	p->ethertype = ((__u16)e[12] << 8) | e[13];
	p->l3_off = p->l2_off + ETH_HLEN_;
	if (p->ethertype != ETH_P_8021Q)
		return 0;
	if (avail < ETH_HLEN_ + 4)
		*rc = drop(p, DROP_SHORT_VLAN);
	return 1;
}

/* -- vif_in -------------------------------------------------------------------------------- */

INLINE int not_unicast(struct pkt *p)
{
	__u32 d = bpf_ntohl(p->dst), host;
	struct vif *vif = p->vif;

	if ((d >> 24) >= 224 || d == 0xffffffffu)
		return 1;
	if (!vif->has_ip || vif->prefix_len >= 31)
		return 0;
	host = (1u << (32 - vif->prefix_len)) - 1;
	return (d & host) == host && same_prefix(p->dst, vif->ip, vif->prefix_len);
}

INLINE int source_allowed(struct pkt *p)
{
	struct allowed_ip_key key = { .vif = p->in_vif, .ip = p->src };

	if (!(p->vif->flags & VIF_SOURCE_CHECK))
		return 1;
	if (p->vif->has_ip && p->src == p->vif->ip)
		return 1;
	return bpf_map_lookup_elem(&ov_allowed_ips, &key) != NULL;
}

#define MIN_MSS 536 /* limits.MIN_MSS */
#define MAX_SEGMENTS 64 /* limits.MAX_SEGMENTS */

/* A VM's super-frame that superframe.gso_refusal may refuse, or that is not TCP over IPv4:
 * the slow path judges it (counts the drop, or answers fragmentation-needed), so that no
 * absurd segmentation ever reaches a device. Others (a segment size from the minimum MSS to
 * what the vif's MTU carries, no more segments than limits.max_segments allows) are counted
 * as their segments: p->segs and p->seg_payload. */
INLINE int gso_suspect(struct pkt *p)
{
	struct __sk_buff *skb = p->skb;
	__u32 gso = skb->gso_size, mtu = p->vif->mtu, hdrs, per, most, payload;
	__u8 *h;

	if (gso < MIN_MSS)
		return 1;
	h = pkt_ptr(skb, 12, 12); /* ethertype, IPv4 version/IHL ... protocol */
	if (!h || h[0] != 0x08 || h[1] != 0x00 || h[11] != IPPROTO_TCP_)
		return 1;
	hdrs = (h[2] & 0xf) * 4;
	h = pkt_ptr(skb, ETH_HLEN_ + hdrs + 12, 1); /* the TCP data offset */
	if (!h)
		return 1;
	hdrs += (h[0] >> 4) * 4;
	if (hdrs + gso > mtu)
		return 1;
	per = mtu > MIN_MSS + 40 ? mtu - 40 : MIN_MSS;
	most = (0xffff + per - 1) / per;
	if (most < MAX_SEGMENTS)
		most = MAX_SEGMENTS;
	payload = p->len > ETH_HLEN_ + hdrs ? p->len - ETH_HLEN_ - hdrs : 0;
	p->segs = (payload + gso - 1) / gso;
	p->seg_payload = payload;
	return p->segs > most;
}

/* pipeline.from_vm */
INLINE int from_vm(struct pkt *p)
{
	struct __sk_buff *skb = p->skb;
	__u8 *e;
	int rc;

	if (p->len < ETH_HLEN_)
		return drop(p, DROP_SHORT_ETHERNET);
	if (skb->gso_size && gso_suspect(p))
		return send_up(p, SLOW_OTHER);
	if (skb->vlan_present)
		return drop(p, DROP_VM_VLAN_TAGGED);
	if (parse_eth(p, &rc))
		return rc == CONTINUE ? drop(p, DROP_VM_VLAN_TAGGED) : rc;
	if (rc != CONTINUE)
		return rc;
	e = pkt_ptr(skb, 6, 6);
	if (!e)
		return send_up(p, SLOW_OTHER);
	if (!mac_eq(e, p->vif->mac))
		return drop(p, DROP_SRC_MAC_MISMATCH);
	p->vrf_id = p->vif->vrf;
	p->vrf = bpf_map_lookup_elem(&ov_vrfs, &p->vrf_id);
	if (!p->vrf)
		return drop(p, DROP_INVALID_VRF);
	if (p->ethertype == ETH_P_ARP)
		return arp_from_vm(p);
	if (p->ethertype != ETH_P_IP) {
		if (p->vrf->mode == MODE_L3)
			return drop(p, DROP_L3_NON_IP);
		return BRIDGE_IT;
	}
	rc = parse_ipv4(p, ETH_HLEN_, p->len - ETH_HLEN_);
	if (rc != CONTINUE)
		return rc;
	if (p->proto == IPPROTO_UDP_) {
		rc = l4_ports(p);
		if (rc != CONTINUE)
			return rc;
		if (p->dport_h == PORT_DHCP_SERVER)
			return punt(p, SLOW_DHCP);
	}
	if (!source_allowed(p))
		return drop(p, DROP_SRC_IP_MISMATCH);
	if (p->vrf->mode == MODE_L3) {
		if ((p->vrf->flags & VRF_UNICAST_ONLY) && ((p->eth_dst[0] & 1) || not_unicast(p)))
			return drop(p, DROP_L3_MULTICAST_OR_BROADCAST);
		return ROUTE_IT;
	}
	if (p->vrf->mode == MODE_L2_L3 && ip_fib_lookup(p->vrf_id, p->dst))
		return ROUTE_IT;
	return BRIDGE_IT;
}

/* The stages a frame goes through after its input stage: bridge, route (or both, through an
 * L2 network's gateway MAC). */
INLINE int forward(struct pkt *p, int rc)
{
	if (rc == BRIDGE_IT)
		rc = bridge(p);
	if (rc == ROUTE_IT)
		rc = route(p);
	return rc;
}

SEC("tc")
int vif_in(struct __sk_buff *skb)
{
	struct pkt pk = {};
	struct pkt *p = &pk;
	__u32 ifindex = skb->ifindex;
	__u32 *vif_id;

	p->skb = skb;
	p->len = skb->len;
	p->node = node_cfg();
	vif_id = bpf_map_lookup_elem(&ov_ifindex, &ifindex);
	if (!p->node || !vif_id)
		return drop_vif(DROP_INVALID_VIF, 0, 0);
	p->in_vif = *vif_id;
	p->vif = bpf_map_lookup_elem(&ov_vifs, &p->in_vif);
	if (!p->vif || p->vif->kind != VIF_VM)
		return drop_vif(DROP_INVALID_VIF, 0, 0);
	ifindex = p->node->fabric_ifindex;
	vif_id = bpf_map_lookup_elem(&ov_ifindex, &ifindex);
	p->fabric_vif = vif_id ? *vif_id : 0; /* what tunnelled frames count as sent on */
	p->frame_end = p->len;
	pull(skb, PULL_VIF);
	return forward(p, from_vm(p));
}

/* -- fabric_in ----------------------------------------------------------------------------- */

/* pipeline.frame_in once the frame's Ethernet header is parsed: route or bridge. */
INLINE int frame_decide(struct pkt *p)
{
	int rc;

	if (p->ethertype == ETH_P_IP && p->vrf->mode != MODE_L2) {
		rc = parse_ipv4(p, p->l3_off, p->frame_end - p->l3_off);
		if (rc != CONTINUE)
			return rc;
		if (p->vrf->mode == MODE_L3 || ip_fib_lookup(p->vrf_id, p->dst))
			return ROUTE_IT;
	}
	if (p->vrf->mode == MODE_L3)
		return drop(p, DROP_L3_NON_IP);
	return BRIDGE_IT;
}

/* pipeline.frame_in: a decapsulated frame (at p->l2_off .. p->frame_end) in p->vrf. */
INLINE int frame_in(struct pkt *p)
{
	int rc, tagged = parse_eth(p, &rc);

	if (rc != CONTINUE)
		return rc;
	if (tagged) /* a tag inside the tunnel: unusual */
		return send_up(p, SLOW_OTHER);
	return frame_decide(p);
}

INLINE int set_vrf(struct pkt *p, __u32 vrf_id)
{
	p->vrf_id = vrf_id;
	p->vrf = bpf_map_lookup_elem(&ov_vrfs, &p->vrf_id);
	return p->vrf != NULL;
}

/* pipeline.mpls_in: the label at `off`, the payload up to `end`. */
INLINE int mpls_in(struct pkt *p, __u32 off, __u32 end)
{
	struct label *lab = NULL;
	__u32 word, label;
	__u8 *m;

	if (end < off + MPLS_HLEN)
		return drop(p, DROP_SHORT_MPLS);
	m = pkt_ptr(p->skb, off, MPLS_HLEN);
	if (!m)
		return send_up(p, SLOW_OTHER);
	word = ((__u32)m[0] << 24) | ((__u32)m[1] << 16) | ((__u32)m[2] << 8) | m[3];
	label = word >> 12;
	if (word & 0x100)
		lab = bpf_map_lookup_elem(&ov_labels, &label);
	if (!lab || !set_vrf(p, lab->vrf))
		return drop(p, DROP_INVALID_LABEL);
	off += MPLS_HLEN;
	if (lab->l2) {
		p->l2_off = off;
		p->frame_end = end;
		return frame_in(p);
	}
	int rc = parse_ipv4(p, off, end - off);

	return rc == CONTINUE ? ROUTE_IT : rc;
}

/* pipeline.vxlan_in */
INLINE int vxlan_in(struct pkt *p, __u32 off, __u32 end)
{
	__u32 *vrf_id;
	__u32 vni;
	__u8 *v;

	if (end < off + VXLAN_HLEN)
		return drop(p, DROP_SHORT_VXLAN);
	v = pkt_ptr(p->skb, off, VXLAN_HLEN);
	if (!v)
		return send_up(p, SLOW_OTHER);
	if (!(v[0] & 0x08))
		return drop(p, DROP_VXLAN_NO_VNI_FLAG);
	vni = ((__u32)v[4] << 16) | ((__u32)v[5] << 8) | v[6];
	vrf_id = bpf_map_lookup_elem(&ov_vnis, &vni);
	if (!vrf_id || !set_vrf(p, *vrf_id))
		return drop(p, DROP_INVALID_VNI);
	p->l2_off = off + VXLAN_HLEN;
	p->frame_end = end;
	return frame_in(p);
}

/* pipeline.vlan_in: an 802.1Q frame on the L2 underlay. */
INLINE int vlan_in(struct pkt *p)
{
	__u32 vid = p->vlan;
	__u32 *vrf_id = bpf_map_lookup_elem(&ov_vlans, &vid);
	__u8 *e;
	int rc;

	if (!vrf_id || !set_vrf(p, *vrf_id))
		return drop(p, DROP_INVALID_VLAN);
	if (p->vlan_in_data) { /* the frame's own header follows the tag */
		e = pkt_ptr(p->skb, 16, 2);
		if (!e)
			return send_up(p, SLOW_OTHER);
		p->ethertype = ((__u16)e[0] << 8) | e[1];
		p->l3_off = ETH_HLEN_ + 4;
		if (p->ethertype == ETH_P_8021Q)
			return send_up(p, SLOW_OTHER); /* two tags */
	}
	if (mac_eq(p->eth_dst, p->node->fabric_mac) && p->ethertype == ETH_P_IP) {
		rc = parse_ipv4(p, p->l3_off, p->frame_end - p->l3_off);
		return rc == CONTINUE ? ROUTE_IT : rc;
	}
	if (p->vlan_in_data) /* the frame without its tag: frame[:12] + frame[16:] */
		return frame_decide(p);
	return frame_in(p);
}

/* pipeline.from_fabric, for what is ours: the node's own traffic passes to the kernel. */
INLINE int from_fabric(struct pkt *p)
{
	struct __sk_buff *skb = p->skb;
	__u32 p4, end, dport;
	__u16 gflags;
	__u8 *l4;
	int rc, tagged;

	if (skb->vlan_present) {
		p->vlan = skb->vlan_tci & 0x0fff;
		tagged = parse_eth(p, &rc);
		if (rc != CONTINUE)
			return rc;
		if (tagged)
			return send_up(p, SLOW_OTHER); /* two tags */
		return vlan_in(p);
	}
	tagged = parse_eth(p, &rc);
	if (rc != CONTINUE)
		return rc;
	if (tagged) {
		l4 = pkt_ptr(skb, ETH_HLEN_, 2);
		if (!l4)
			return send_up(p, SLOW_OTHER);
		p->vlan = (((__u16)l4[0] << 8) | l4[1]) & 0x0fff;
		p->vlan_in_data = 1;
		return vlan_in(p);
	}
	if (p->ethertype != ETH_P_IP || !mac_eq(p->eth_dst, p->node->fabric_mac))
		return pass_to_kernel(p);
	rc = parse_ipv4(p, ETH_HLEN_, p->len - ETH_HLEN_);
	if (rc != CONTINUE)
		return rc;
	if (p->dst != p->node->fabric_ip)
		return pass_to_kernel(p);
	p4 = ETH_HLEN_ + p->ihl;
	end = ETH_HLEN_ + p->tot_len;
	if (p->proto == IPPROTO_GRE_) {
		if (p->is_fragment)
			return drop(p, DROP_OUTER_FRAGMENT);
		if (end < p4 + GRE_HLEN)
			return drop(p, DROP_SHORT_GRE);
		l4 = pkt_ptr(skb, p4, GRE_HLEN);
		if (!l4)
			return send_up(p, SLOW_OTHER);
		gflags = ((__u16)l4[0] << 8) | l4[1];
		if (gflags & 0x0007)
			return drop(p, DROP_GRE_BAD_VERSION);
		if (gflags & 0x8000) /* checksum present */
			p4 += 4;
		if (gflags & 0x2000) /* key */
			p4 += 4;
		if (gflags & 0x1000) /* sequence */
			p4 += 4;
		if (end < p4 + GRE_HLEN)
			return drop(p, DROP_SHORT_GRE);
		if (l4[2] != 0x88 || l4[3] != 0x47)
			return drop(p, DROP_GRE_NOT_MPLS);
		return mpls_in(p, p4 + GRE_HLEN, end);
	}
	if (p->proto != IPPROTO_UDP_)
		return pass_to_kernel(p);
	if (p->frag & 0x1fff) /* a later fragment: no ports to tell ours from the node's */
		return pass_to_kernel(p);
	if (end < p4 + UDP_HLEN) {
		if (p->is_fragment)
			return pass_to_kernel(p);
		return drop(p, DROP_SHORT_UDP);
	}
	l4 = pkt_ptr(skb, p4, UDP_HLEN);
	if (!l4)
		return send_up(p, SLOW_OTHER);
	dport = ((__u32)l4[2] << 8) | l4[3];
	if (dport != PORT_VXLAN && dport != PORT_MPLS && dport != PORT_MPLS_LEGACY)
		return pass_to_kernel(p);
	if (p->is_fragment)
		return drop(p, DROP_OUTER_FRAGMENT);
	if (dport == PORT_VXLAN)
		return vxlan_in(p, p4 + UDP_HLEN, end);
	return mpls_in(p, p4 + UDP_HLEN, end);
}

SEC("tc")
int fabric_in(struct __sk_buff *skb)
{
	struct pkt pk = {};
	struct pkt *p = &pk;
	__u32 ifindex = skb->ifindex;
	__u32 *vif_id;

	p->skb = skb;
	p->len = skb->len;
	p->node = node_cfg();
	vif_id = bpf_map_lookup_elem(&ov_ifindex, &ifindex);
	if (!p->node || !vif_id) { /* not configured (yet): the kernel's */
		set_verdict(V_PASS, 0, 0);
		return TC_ACT_OK;
	}
	p->in_vif = *vif_id;
	p->fabric_vif = *vif_id;
	p->vif = bpf_map_lookup_elem(&ov_vifs, &p->in_vif);
	if (!p->vif || p->vif->kind != VIF_FABRIC) {
		set_verdict(V_PASS, 0, 0);
		return TC_ACT_OK;
	}
	p->fabric_in = 1;
	p->frame_end = p->len;
	p->segs = skb->gso_segs; /* what GRO coalesced */
	if (p->len < ETH_HLEN_)
		return drop(p, DROP_SHORT_ETHERNET);
	pull(skb, PULL_FABRIC);
	return forward(p, from_fabric(p));
}

/* -- slow_in ------------------------------------------------------------------------------- */

#define SLOW_COPY 64
#define SLOW_MAX_CHUNKS 160 /* frames up to 10 KiB come down this way */

/* Move the frame behind the header to the front: adjust_room removes bytes only inside
 * IP packets, and the header's 0x88b5 is none. */
INLINE int strip_slow_hdr(struct __sk_buff *skb)
{
	__u32 hl = sizeof(struct slow_hdr);
	__u32 len = skb->len - hl, off = 0, rest;
	__u8 buf[SLOW_COPY];

	for (int i = 0; i < SLOW_MAX_CHUNKS; i++) {
		if (off + SLOW_COPY > len)
			break;
		if (bpf_skb_load_bytes(skb, off + hl, buf, SLOW_COPY) ||
		    bpf_skb_store_bytes(skb, off, buf, SLOW_COPY, 0))
			return -1;
		off += SLOW_COPY;
	}
	rest = len - off;
	if (rest >= SLOW_COPY)
		return -1;
	if (rest) {
		__u64 r = rest;

		asm volatile("%0 &= 63" : "+r"(r)); /* bounded on the register the helper gets */
		if (r == 0 || bpf_skb_load_bytes(skb, off + hl, buf, r) ||
		    bpf_skb_store_bytes(skb, off, buf, r, 0))
			return -1;
	}
	return bpf_skb_change_tail(skb, len, 0) ? -1 : 0;
}

SEC("tc")
int slow_in(struct __sk_buff *skb)
{
	struct slow_hdr *h;
	struct vif *out;
	__u32 out_id, reason;
	long rc;

	if (skb->len < sizeof(*h) + ETH_HLEN_)
		return drop_vif(DROP_AGENT_FRAME_INVALID, 0, 0);
	if (bpf_skb_pull_data(skb, sizeof(*h)))
		return drop_vif(DROP_AGENT_FRAME_INVALID, 0, 0);
	h = pkt_ptr(skb, 0, sizeof(*h));
	if (!h)
		return drop_vif(DROP_AGENT_FRAME_INVALID, 0, 0);
	out_id = bpf_ntohl(h->vif);
	reason = bpf_ntohs(h->reason);
	if (h->proto != bpf_htons(SLOW_ETH_P) || reason != SLOW_INJECT)
		return drop_vif(DROP_AGENT_FRAME_INVALID, 0, 0);
	out = bpf_map_lookup_elem(&ov_vifs, &out_id);
	if (!out || out->kind != VIF_VM || !out->ifindex)
		return drop_vif(DROP_AGENT_FRAME_INVALID, 0, 0);
	if (strip_slow_hdr(skb))
		return drop_vif(DROP_TX_FAILED, 0, 0);
	/* to the device's egress: the VM receives it as if sent by the node side */
	rc = bpf_redirect(out->ifindex, 0);
	if (rc != TC_ACT_REDIRECT)
		return drop_vif(DROP_TX_FAILED, 0, 0);
	return sent(out_id, skb->len, 0);
}

char _license[] SEC("license") = "GPL";
