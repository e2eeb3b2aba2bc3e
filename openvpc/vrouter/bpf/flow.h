/* The flow table (pipeline.flow_stage): a hit counts atomically and forwards or drops; a miss,
 * or a NAT flow, goes up to the slow path, which owns HOLD entries, quotas and the agent. */
#ifndef OPENVPC_FLOW_H
#define OPENVPC_FLOW_H

#include "common.h"
#include "slow.h"
#include "parse.h"

/* Whether the packet goes through the flow table (pipeline.needs_flow). */
INLINE int needs_flow(struct pkt *p, __u32 nh_id)
{
	struct nexthop *nh;
	struct vif *target;
	__u32 vif_id;

	if (p->vif->kind == VIF_VM && (p->vif->flags & VIF_POLICY))
		return 1;
	nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
	if (!nh || nh->kind != NH_ENCAP)
		return 0;
	vif_id = nh->vif;
	target = bpf_map_lookup_elem(&ov_vifs, &vif_id);
	return target && target->kind != VIF_NONE && (target->flags & VIF_POLICY);
}

NOINLINE int flow_stage(struct pkt *p)
{
	struct flow_key key = {
		.vrf = p->vrf_id,
		.src = p->src,
		.dst = p->dst,
		.sport = p->sport,
		.dport = p->dport,
		.proto = p->proto,
	};
	struct flow *f = bpf_map_lookup_elem(&ov_flows, &key);
	__u8 tcp_flags = 0;
	__u8 *fl;

	if (!f) {
		if (!p->node->agent)
			return drop(p, DROP_NO_AGENT_VIF);
		return send_up(p, SLOW_FLOW);
	}
	if (f->action != FLOW_FORWARD && f->action != FLOW_DROP)
		return send_up(p, SLOW_FLOW); /* NAT rewrites in the slow path */
	if (p->proto == IPPROTO_TCP_ && p->tot_len > (__u32)p->ihl + 13) {
		fl = pkt_ptr(p->skb, p->l3_off + p->ihl + 13, 1);
		if (!fl)
			return send_up(p, SLOW_OTHER);
		tcp_flags = *fl;
	}
	p->flow = f; /* counted when the fast path decides (flow_touch) */
	p->flow_tcp_flags = tcp_flags;
	if (f->action == FLOW_DROP)
		return drop(p, DROP_FLOW_ACTION_DROP);
	return CONTINUE;
}

#endif
