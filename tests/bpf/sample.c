/* The binding's test program: one map of each kind the datapath uses, and a tc program that
 * counts what it sees and answers a verdict chosen through its maps. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct settings {
	__u32 verdict; /* what to return when no prefix matches */
	__u32 redirect_ifindex; /* with TC_ACT_REDIRECT */
	__u32 swap_macs; /* rewrite the frame: the test sees the output bytes change */
};

struct prefix_key {
	__u32 prefixlen;
	__be32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} sample_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32); /* ifindex */
	__type(value, __u64); /* packets */
} sample_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, __u32); /* verdict for destinations in the prefix */
} sample_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32); /* verdict */
	__type(value, __u32); /* packets: 4 bytes, so the per-CPU stride (8) differs */
} sample_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16);
	__type(key, __be32); /* IPv4 source */
	__type(value, __u64); /* packets */
} sample_sources SEC(".maps");

static __always_inline void count(void *map, const void *key)
{
	__u64 one = 1, *n = bpf_map_lookup_elem(map, key);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(map, key, &one, BPF_NOEXIST);
}

SEC("tc")
int sample_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 zero = 0, ifindex = skb->ifindex, verdict = TC_ACT_OK, *v;
	struct settings *s = bpf_map_lookup_elem(&sample_settings, &zero);

	count(&sample_seen, &ifindex);
	if (s)
		verdict = s->verdict;
	if (skb->mark) /* lets a test run choose the verdict through the context */
		verdict = skb->mark;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) <= data_end) {
			struct prefix_key key = { .prefixlen = 32, .addr = ip->daddr };
			__be32 saddr = ip->saddr;

			count(&sample_sources, &saddr);
			v = bpf_map_lookup_elem(&sample_prefixes, &key);
			if (v)
				verdict = *v;
		}
	}
	v = bpf_map_lookup_elem(&sample_verdicts, &verdict);
	if (v)
		*v += 1; /* this CPU's slot: no atomics needed */
	if (s && s->swap_macs) {
		__u8 tmp[ETH_ALEN];

		__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	}
	if (verdict == TC_ACT_REDIRECT)
		return bpf_redirect(s ? s->redirect_ifindex : 0, 0);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
