/* Header parsing with the Python parsers' checks and drop reasons (openvpc/packet): lengths
 * are judged against the frame's logical length, so that a frame whose headers are not in
 * the linear area goes up instead of being called short. */
#ifndef OPENVPC_PARSE_H
#define OPENVPC_PARSE_H

#include "common.h"
#include "slow.h"

#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
#define IPPROTO_GRE_ 47
#define IP_MF_OFFSET 0x3fff /* MF and the offset: l4_ports' "every fragment shares one key" */

/* The one's-complement sum of the IPv4 header of `hlen` bytes at `off` (the first 20 bytes
 * checked linear by the caller), 0 when the options are not in the linear area. */
INLINE __u16 ip_header_sum(struct __sk_buff *skb, __u32 off, __u32 hlen)
{
	__u16 *w = pkt_ptr(skb, off, IP_HLEN);
	__u64 sum = 0;

	if (!w)
		return 0;
#pragma unroll
	for (int i = 0; i < IP_HLEN / 2; i++)
		sum += w[i];
	for (int i = 0; i < 10; i++) { /* options: up to 40 bytes, 4 at a time */
		if (IP_HLEN + i * 4 >= hlen)
			break;
		w = pkt_ptr(skb, off + IP_HLEN + i * 4, 4);
		if (!w)
			return 0;
		sum += w[0];
		sum += w[1];
	}
	return csum_fold32(sum);
}

/* parse_ipv4 at `off`, with `avail` bytes of the frame from there; fills the IPv4 fields
 * of `p`. CONTINUE, or the program's return code (a drop or a send-up). */
NOINLINE int parse_ipv4(struct pkt *p, __u32 off, __u32 avail)
{
	struct __sk_buff *skb = p->skb;
	__u8 *h;
	__u32 hlen, tot;
	__u16 ff;

	if (avail < IP_HLEN)
		return drop(p, DROP_SHORT_IPV4);
	h = pkt_ptr(skb, off, IP_HLEN);
	if (!h)
		return send_up(p, SLOW_OTHER);
	if ((h[0] >> 4) != 4)
		return drop(p, DROP_IPV4_BAD_VERSION);
	hlen = (h[0] & 0x0f) * 4;
	tot = ((__u32)h[2] << 8) | h[3];
	if (hlen < IP_HLEN || tot < hlen)
		return drop(p, DROP_IPV4_BAD_LENGTH);
	if (avail < tot)
		return drop(p, DROP_SHORT_IPV4);
	if (ip_header_sum(skb, off, hlen) != 0xffff) {
		if (!pkt_ptr(skb, off, hlen & 0x3c))
			return send_up(p, SLOW_OTHER); /* options beyond the linear area */
		return drop(p, DROP_IPV4_BAD_CHECKSUM);
	}
	h = pkt_ptr(skb, off, IP_HLEN);
	if (!h)
		return send_up(p, SLOW_OTHER);
	ff = ((__u16)h[6] << 8) | h[7];
	p->l3_off = off;
	p->tot_len = tot;
	p->ihl = hlen;
	p->ttl = h[8];
	p->proto = h[9];
	p->frag = ff & IP_MF_OFFSET;
	p->is_fragment = (ff & IP_MF_OFFSET) != 0;
	p->src = *(__be32 *)(h + 12);
	p->dst = *(__be32 *)(h + 16);
	return CONTINUE;
}

/* l4_ports: the flow key's ports (raises short_l4 / short_icmp as the pipeline does). */
NOINLINE int l4_ports(struct pkt *p)
{
	__u32 off = p->l3_off + p->ihl;
	__u32 l4len = p->tot_len - p->ihl;
	__u8 *l4;

	p->sport = p->dport = p->sport_h = p->dport_h = 0;
	if (p->frag)
		return CONTINUE;
	if (p->proto == IPPROTO_TCP_ || p->proto == IPPROTO_UDP_) {
		if (l4len < 4)
			return drop(p, DROP_SHORT_L4);
		l4 = pkt_ptr(p->skb, off, 4);
		if (!l4)
			return send_up(p, SLOW_OTHER);
		p->sport = *(__u16 *)l4;
		p->dport = *(__u16 *)(l4 + 2);
		p->sport_h = bpf_ntohs(p->sport);
		p->dport_h = bpf_ntohs(p->dport);
		return CONTINUE;
	}
	if (p->proto == IPPROTO_ICMP_) {
		if (l4len < 8)
			return drop(p, DROP_SHORT_ICMP);
		l4 = pkt_ptr(p->skb, off, 8);
		if (!l4)
			return send_up(p, SLOW_OTHER);
		if (l4[0] == ICMP_ECHO_REPLY || l4[0] == ICMP_ECHO_REQUEST) {
			p->sport = p->dport = *(__u16 *)(l4 + 4); /* the echo id */
			p->sport_h = p->dport_h = bpf_ntohs(p->sport);
		} else { /* type and code, host order in the key */
			p->sport = p->sport_h = l4[0];
			p->dport = p->dport_h = l4[1];
		}
	}
	return CONTINUE;
}

#endif
