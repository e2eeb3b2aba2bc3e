/* The flow table (pipeline.flow_stage): a hit counts atomically and forwards or drops. A miss
 * for ports the vRouter decides for is judged by their security groups and network ACLs
 * (rules.h) and makes the flow and its reverse, or a DROP entry alone, within the room the
 * slow path gives (the table's capacity, the VRF's quota); a miss the agent decides, a NAT
 * flow, a first packet that is neither TCP nor UDP, or one with more applicable rules than
 * ov_rules and its chunks hold goes up to the slow path, which owns HOLD entries and the
 * agent. */
#ifndef OPENVPC_FLOW_H
#define OPENVPC_FLOW_H

#include "common.h"
#include "slow.h"
#include "parse.h"
#include "rules.h"

#define EEXIST_ 17

/* Whether a port the packet is under, the sending VM's or the receiving local one's (at the
 * next hop `nh_id`), has all the `want` flags (route.ports_say). */
INLINE int ports_say(struct pkt *p, __u32 nh_id, __u8 want)
{
	struct nexthop *nh;
	struct vif *target;
	__u32 vif_id;

	if (p->vif->kind == VIF_VM && (p->vif->flags & want) == want)
		return 1;
	nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
	if (!nh || nh->kind != NH_ENCAP)
		return 0;
	vif_id = nh->vif;
	target = bpf_map_lookup_elem(&ov_vifs, &vif_id);
	return target && target->kind != VIF_NONE && (target->flags & want) == want;
}

/* 1 when `wanted` more flows fit the limit of `key` (a VRF id or FLOW_ROOM_ALL). */
INLINE int room_for(__u32 key, __u64 wanted)
{
	struct flow_room *room = bpf_map_lookup_elem(&ov_flow_room, &key);
	__u64 *made = bpf_map_lookup_elem(&ov_flow_made, &key);
	__u64 in_use;

	if (!room)
		return 0;
	in_use = room->used + (made && *made > room->seen ? *made - room->seen : 0);
	return in_use + wanted <= room->limit;
}

INLINE void count_made(__u32 key, __u64 n)
{
	__u64 zero = 0, *made = bpf_map_lookup_elem(&ov_flow_made, &key);

	if (!made) {
		bpf_map_update_elem(&ov_flow_made, &key, &zero, BPF_NOEXIST);
		made = bpf_map_lookup_elem(&ov_flow_made, &key);
		if (!made)
			return;
	}
	__sync_fetch_and_add(made, n);
}

/* Whether the packet goes to a VM here whose VRF is not `vrf` (route tables of one VPC, a
 * peering): route.decide keys the reverse in the receiver's VRF. */
INLINE int other_vrf_receives(__u32 nh_id, __u32 vrf)
{
	struct nexthop *nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
	struct vif *receiver;
	__u32 vif_id;

	if (!nh || nh->kind != NH_ENCAP)
		return 0;
	vif_id = nh->vif;
	receiver = bpf_map_lookup_elem(&ov_vifs, &vif_id);
	return receiver && receiver->kind == VIF_VM && receiver->vrf != vrf;
}

/* The vRouter's own verdict on a new flow (route.decide): the ports' rules allow it, and it
 * goes in with its reverse (fields swapped), or deny it, and a DROP entry goes in alone. Both
 * are admitted as FlowTable.install admits them: the table's capacity first, then the VRF's
 * quota. */
NOINLINE int flow_make(struct pkt *p, struct flow_key *key, __u32 nh_id)
{
	struct flow_key rkey = {
		.vrf = key->vrf,
		.src = key->dst,
		.dst = key->src,
		.sport = key->dport,
		.dport = key->sport,
		.proto = key->proto,
	};
	struct flow f = { .action = FLOW_FORWARD, .last_used = bpf_ktime_get_ns() };
	struct flow *rf = NULL;
	__u64 wanted = (rkey.src == key->src && rkey.sport == key->sport) ? 1 : 2;
	__u32 all = FLOW_ROOM_ALL, vrf = key->vrf, by = BY_NONE;
	long err;
	int rc;

	if (!bpf_map_lookup_elem(&ov_flow_room, &vrf))
		return send_up(p, SLOW_FLOW); /* the slow path has not given this VRF room yet */
	if (other_vrf_receives(nh_id, vrf))
		return send_up(p, SLOW_FLOW); /* the reverse goes in the receiver's VRF, whose room
						 * the slow path counts apart */
	rc = flow_verdict(p, nh_id, &by);
	if (rc == RULES_UP)
		return send_up(p, SLOW_FLOW);
	if (rc != RULES_ALLOW) {
		f.action = FLOW_DROP;
		wanted = 1;
	}
	f.by = by;
	/* FlowTable.install admits only the entries it adds, and turns an existing reverse (a
	 * DROP of the other direction, say) into this flow's, counters kept */
	if (wanted == 2) {
		rf = bpf_map_lookup_elem(&ov_flows, &rkey);
		if (rf && rf->action != FLOW_FORWARD && rf->action != FLOW_DROP)
			return send_up(p, SLOW_FLOW); /* NAT: the slow path rewrites it */
		if (rf)
			wanted = 1;
	}
	if (!room_for(all, wanted))
		return drop(p, DROP_FLOW_TABLE_FULL);
	if (!room_for(vrf, wanted))
		return drop(p, DROP_FLOW_VRF_QUOTA_EXCEEDED);
	err = bpf_map_update_elem(&ov_flows, key, &f, BPF_NOEXIST);
	if (err == -EEXIST_)
		return CONTINUE; /* another CPU made it first */
	if (err)
		return drop(p, DROP_FLOW_TABLE_FULL);
	if (rf) {
		rf->action = FLOW_FORWARD; /* the slow path takes it over at its next fold */
		rf->by = by;
	} else if (wanted == 2) {
		err = bpf_map_update_elem(&ov_flows, &rkey, &f, BPF_NOEXIST);
		if (err == -EEXIST_)
			wanted = 1;
		else if (err) {
			bpf_map_delete_elem(&ov_flows, key);
			return drop(p, DROP_FLOW_TABLE_FULL);
		}
	}
	count_made(all, wanted);
	count_made(vrf, wanted);
	return CONTINUE;
}

NOINLINE int flow_stage(struct pkt *p, __u32 nh_id)
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
	int rc;

	if (!f && !ports_say(p, nh_id, VIF_POLICY | VIF_AGENT)) { /* the vRouter decides */
		if (p->proto != IPPROTO_TCP_ && p->proto != IPPROTO_UDP_)
			return send_up(p, SLOW_FLOW); /* ICMP keys: see encode.encode_flow_key */
		rc = flow_make(p, &key, nh_id);
		if (rc != CONTINUE)
			return rc;
		f = bpf_map_lookup_elem(&ov_flows, &key);
		if (!f)
			return send_up(p, SLOW_FLOW); /* aged out at once: the slow path decides */
	}
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
