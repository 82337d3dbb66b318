// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// flowtap's kernel side: hand every frame of an rx queue to that queue's
// AF_XDP socket, stamped with the kernel time it arrived; and, for host mode,
// mirror an interface's traffic to a veth pair without disturbing it.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

// Written in front of each frame handed to a socket, as the first bytes of
// its data (bpf_xdp_adjust_head: every kernel with XDP allows it, where some
// refuse bpf_xdp_adjust_meta to the program and some drivers give the
// metadata area no room). User space takes it off the frame, and clears
// `magic` before reusing the buffer, so a valid marker always belongs to the
// frame it precedes.
struct flowtap_stamp {
    __u64 ktime_ns;
    __u32 magic;
    __u32 check; /* ~magic */
};

#define FLOWTAP_STAMP_MAGIC 0x46545431 /* "FTT1" */

// One AF_XDP socket per rx queue, indexed by queue id.
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 256);
    __type(key, __u32);
    __type(value, __u32);
} flowtap_xsks SEC(".maps");

// Frames of rx queues without a socket, which get flowtap_unbound_action
// and never reach flowtap (queues added to the NIC after it started, or
// --queues below the NIC's): counted, so that they are not lost unseen.
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} flowtap_unbound_frames SEC(".maps");

// Set by the loader before the program is loaded.
// What happens to frames of a queue without a socket: XDP_PASS or XDP_DROP.
volatile const __u32 flowtap_unbound_action = XDP_PASS;
// Host mode: the interface the TC program mirrors to.
volatile const __u32 flowtap_mirror_ifindex = 0;

static __always_inline int stamp_and_redirect(struct xdp_md *ctx)
{
    int stamped = bpf_xdp_adjust_head(ctx, -(int)sizeof(struct flowtap_stamp)) == 0;
    if (stamped) {
        struct flowtap_stamp *stamp = (void *)(long)ctx->data;
        if ((void *)(stamp + 1) <= (void *)(long)ctx->data_end) {
            stamp->ktime_ns = bpf_ktime_get_ns();
            stamp->magic = FLOWTAP_STAMP_MAGIC;
            stamp->check = ~(__u32)FLOWTAP_STAMP_MAGIC;
        }
    }
    // The low bits of the flags are the action when the queue has no socket.
    int action = bpf_redirect_map(&flowtap_xsks, ctx->rx_queue_index, flowtap_unbound_action);
    if (action != XDP_REDIRECT) {
        // A frame that goes on into the stack goes as it came (one too
        // short to be given back, a runt under 14 bytes, is dropped: the
        // stack would read the stamp as its Ethernet header).
        if (stamped && bpf_xdp_adjust_head(ctx, (int)sizeof(struct flowtap_stamp)) != 0)
            action = XDP_DROP;
        __u32 first = 0;
        __u64 *unbound = bpf_map_lookup_elem(&flowtap_unbound_frames, &first);
        if (unbound)
            *unbound += 1;
    }
    return action;
}

// A frame longer than one buffer (a jumbo frame) arrives in several: the
// loader takes this one where the kernel knows multi-buffer XDP (the
// stamp goes in front of the first buffer, as for any frame), and the
// one below where it does not, which never sees such a frame.
SEC("xdp.frags")
int flowtap_xdp_frags(struct xdp_md *ctx)
{
    return stamp_and_redirect(ctx);
}

SEC("xdp")
int flowtap_xdp(struct xdp_md *ctx)
{
    return stamp_and_redirect(ctx);
}

// Host mode, attached to the node interface's ingress and egress: send a
// copy out of the mirror veth, and let the original go on to the next
// program (TCX_NEXT / TC_ACT_UNSPEC) untouched.
SEC("classifier")
int flowtap_mirror(struct __sk_buff *skb)
{
    if (flowtap_mirror_ifindex != 0)
        bpf_clone_redirect(skb, flowtap_mirror_ifindex, 0);
    return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
