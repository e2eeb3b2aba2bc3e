/* A program the verifier must refuse (it reads the packet without a bounds check): the test
 * that libbpf's log, the verifier's reasons included, reaches our logging. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int rejected_in(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;

	return data[12];
}

char LICENSE[] SEC("license") = "GPL";
