/* Security groups and network ACLs on the first packet of a new TCP or UDP flow
 * (stages/route.verdict with model/rules.leaving and entering): one ov_rules lookup per rule
 * set yields every rule that can match the remote address, in the set's order, and the first
 * one matching the protocol and the selector decides (an entry's rules are chained over up to
 * MAX_RULE_CHUNKS chunks of MAX_RULES). The selector is the destination port
 * (the reply direction's: the source port), -1 for a fragment, which carries no ports. */
#ifndef OPENVPC_RULES_H
#define OPENVPC_RULES_H

#include "common.h"

enum rules_rc {
	RULES_DENY = 0,
	RULES_ALLOW = 1,
	RULES_UP = 2, /* more rules apply than the chunks hold (or one is missing): the slow path */
	RULES_NONE = 3, /* no rule of the set matches */
	RULES_NEXT = 4, /* chunk_first: no rule of this chunk matches, go on with the next */
};

/* The first rule of one chunk matching the packet: RULES_ALLOW or RULES_DENY, with its `by`,
 * as rc << 32 | by; else RULES_NEXT << 32 | the next chunk's number (0: none). A global
 * function: the verifier checks its loop once, not once per chunk rules_first walks. */
__attribute__((noinline)) __u64 chunk_first(struct rule_list *l, __u8 proto, int sel)
{
	struct rule *r;
	__u32 n;

	if (!l) /* a global function's pointer argument may be NULL for the verifier */
		return (__u64)RULES_NEXT << 32;
	n = l->n;
	/* the constant bound keeps the loop verifiable; n never exceeds it (encode) */
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= n)
			break;
		r = &l->rules[i];
		if (!(r->flags & RULE_ANY_PROTO) && r->proto != proto)
			continue;
		if (sel < 0 ? !(r->flags & RULE_FRAGMENTS) : (sel < r->lo || sel > r->hi))
			continue;
		return (__u64)((r->flags & RULE_ALLOW) ? RULES_ALLOW : RULES_DENY) << 32 | r->by;
	}
	return (__u64)RULES_NEXT << 32 | l->next;
}

/* The first rule of `set` matching the packet, over the chunks of the remote address's entry
 * (chunk_first's answer, RULES_NONE or RULES_UP in its place). A global function too: it is
 * called six times per first packet, and inlined there it ran past the verifier's
 * instruction limit. A chunk missing from ov_rule_chunks (a set half written or half deleted,
 * which no vif names yet or any more) sends the packet up rather than guessing. */
__attribute__((noinline)) __u64 rules_first(__u32 set, __be32 remote, __u8 proto, int sel)
{
	struct rule_key key = { .prefixlen = 64, .set = set, .addr = remote };
	struct rule_chunk_key next = { .set = set };
	struct rule_list *l = bpf_map_lookup_elem(&ov_rules, &key);
	__u64 found;

	if (!l)
		return (__u64)RULES_NONE << 32;
	if (l->n == RULES_OVERFLOW)
		return (__u64)RULES_UP << 32;
	/* bounded for the verifier; encode never chains more than MAX_RULE_CHUNKS */
	for (__u32 c = 0; c < MAX_RULE_CHUNKS; c++) {
		found = chunk_first(l, proto, sel);
		if (found >> 32 != RULES_NEXT)
			return found;
		next.chunk = (__u32)found;
		if (!next.chunk)
			return (__u64)RULES_NONE << 32;
		l = bpf_map_lookup_elem(&ov_rule_chunks, &next);
		if (!l)
			return (__u64)RULES_UP << 32;
	}
	return (__u64)RULES_UP << 32;
}

/* rules_first's verdict, its `by` into *by when a rule matched. */
INLINE int rules_match(__u32 set, __be32 remote, __u8 proto, int sel, __u32 *by)
{
	__u64 found = rules_first(set, remote, proto, sel);
	int rc = (int)(found >> 32);

	if (rc == RULES_ALLOW || rc == RULES_DENY)
		*by = (__u32)found;
	return rc;
}

/* One direction of a network ACL (`replies`: BY_REPLIES when it judges the reply direction).
 * Every compiled ACL set ends with the `*` deny on 0.0.0.0/0, so some entry always matches. */
INLINE int acl_check(__u32 set, __be32 remote, __u8 proto, int sel, __u32 replies, __u32 *by)
{
	__u32 b = BY_NONE;
	int rc = rules_match(set, remote, proto, sel, &b);

	*by = b | replies;
	return rc == RULES_NONE ? RULES_DENY : rc;
}

/* rules.leaving: the sending port's egress rules, then, when the flow leaves its subnet, the
 * subnet's ACL outbound for the packet and inbound for the replies. */
INLINE int leaving(struct vif *v, struct pkt *p, int sel, int back, __u32 *by)
{
	__u32 ref = BY_NONE, out = BY_NONE;
	int rc;

	if (v->sg_egress) {
		rc = rules_match(v->sg_egress, p->dst, p->proto, sel, &ref);
		if (rc == RULES_UP)
			return rc;
		if (rc != RULES_ALLOW) {
			*by = BY_EGRESS_NO_RULE;
			return RULES_DENY;
		}
	}
	if (v->acl_outbound && (p->dst & v->acl_mask) != v->acl_net) {
		rc = acl_check(v->acl_outbound, p->dst, p->proto, sel, 0, &out);
		if (rc != RULES_ALLOW) {
			*by = out;
			return rc;
		}
		rc = acl_check(v->acl_inbound, p->dst, p->proto, back, BY_REPLIES, by);
		if (rc != RULES_ALLOW)
			return rc;
		*by = ref ? ref : out;
		return RULES_ALLOW;
	}
	*by = ref;
	return RULES_ALLOW;
}

/* rules.entering: when the flow comes from outside the receiving port's subnet, the ACL
 * inbound for the packet and outbound for the replies; then the port's ingress rules. */
INLINE int entering(struct vif *v, struct pkt *p, int sel, int back, __u32 *by)
{
	__u32 via = BY_NONE, ref = BY_NONE;
	int rc;

	if (v->acl_inbound && (p->src & v->acl_mask) != v->acl_net) {
		rc = acl_check(v->acl_inbound, p->src, p->proto, sel, 0, &via);
		if (rc != RULES_ALLOW) {
			*by = via;
			return rc;
		}
		rc = acl_check(v->acl_outbound, p->src, p->proto, back, BY_REPLIES, by);
		if (rc != RULES_ALLOW)
			return rc;
	}
	if (!v->sg_ingress) {
		*by = via;
		return RULES_ALLOW;
	}
	rc = rules_match(v->sg_ingress, p->src, p->proto, sel, &ref);
	if (rc == RULES_UP)
		return rc;
	if (rc != RULES_ALLOW) {
		*by = BY_INGRESS_NO_RULE;
		return RULES_DENY;
	}
	*by = ref;
	return RULES_ALLOW;
}

/* route.verdict: what goes to the gateway itself is not filtered; else the sending VM's side,
 * then the receiving local VM's (at an NH_ENCAP next hop). The first side that names what
 * allowed the flow names it for both. */
NOINLINE int flow_verdict(struct pkt *p, __u32 nh_id, __u32 *by)
{
	struct nexthop *nh = bpf_map_lookup_elem(&ov_nexthops, &nh_id);
	int sel = p->is_fragment ? -1 : (int)p->dport_h;
	int back = p->is_fragment ? -1 : (int)p->sport_h;
	__u32 out = BY_NONE, vif_id;
	struct vif *receiver;
	int rc;

	*by = BY_NONE;
	if (nh && nh->kind == NH_RECEIVE)
		return RULES_ALLOW;
	if (p->vif->kind == VIF_VM) {
		rc = leaving(p->vif, p, sel, back, &out);
		if (rc != RULES_ALLOW) {
			*by = out;
			return rc;
		}
	}
	if (nh && nh->kind == NH_ENCAP) {
		vif_id = nh->vif;
		receiver = bpf_map_lookup_elem(&ov_vifs, &vif_id);
		if (receiver && receiver->kind == VIF_VM) {
			rc = entering(receiver, p, sel, back, by);
			if (rc != RULES_ALLOW || !out)
				return rc;
		}
	}
	*by = out;
	return RULES_ALLOW;
}

#endif
