// SPDX-License-Identifier: GPL-2.0
/*
 * mcp-warden's redirect programs, attached to a cgroup v2 directory:
 *
 *   cgroup/connect4|6      dst matches an endpoint -> record the caller by
 *                          socket cookie, rewrite dst to the agent's listener
 *   sockops                on TCP connect, copy that record under the socket's
 *                          4-tuple, which is what the agent sees on accept()
 *   cgroup/getpeername4|6  report the dialled address, not the listener
 *   cgroup/sock_release    drop the cookie record
 *
 * GPL because the helpers used here (get_current_comm among them) are GPL-only.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "warden.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct warden_config);
} warden_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WARDEN_MAX_ENDPOINTS);
	__type(key, struct warden_ep_key);
	__type(value, struct warden_ep_val);
} warden_ep_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, WARDEN_MAX_ENDPOINTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct warden_cidr_key);
	__type(value, struct warden_ep_val);
} warden_ep_cidr SEC(".maps");

/* Keyed by socket cookie: lives as long as the client's socket (getpeername needs it). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WARDEN_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct warden_flow);
} warden_socks SEC(".maps");

/* Keyed by 4-tuple: the agent looks it up on accept() and deletes it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WARDEN_MAX_FLOWS);
	__type(key, struct warden_tuple);
	__type(value, struct warden_flow);
} warden_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WARDEN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} warden_stats SEC(".maps");

/* The verifier allows only 4-byte loads of these ctx arrays; stop clang from merging two into one. */
#define CTX_U32(field) (*(volatile __u32 *)&(field))

static __always_inline void copy_ctx_ip6(__u8 *dst, const __u32 *field)
{
	__u32 w[4] = {CTX_U32(field[0]), CTX_U32(field[1]), CTX_U32(field[2]), CTX_U32(field[3])};
	__builtin_memcpy(dst, w, 16);
}

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&warden_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct warden_config *config(void)
{
	__u32 zero = 0;
	struct warden_config *cfg = bpf_map_lookup_elem(&warden_config, &zero);
	if (!cfg || cfg->listen_port4 == 0)
		return 0; /* agent never configured this instance */
	return cfg;
}

static __always_inline void set_mapped_v4(__u8 *ip6, __u32 ip4_be)
{
	__builtin_memset(ip6, 0, 10);
	ip6[10] = 0xff;
	ip6[11] = 0xff;
	__builtin_memcpy(ip6 + 12, &ip4_be, 4);
}

static __always_inline int is_mapped_v4(const __u32 w[4])
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* Exact match first, then the longest CIDR prefix. */
static __always_inline struct warden_ep_val *match_endpoint(const __u8 ip6[16], __u16 port)
{
	struct warden_ep_key key = {};
	__builtin_memcpy(key.ip6, ip6, 16);
	key.port = port;
	struct warden_ep_val *val = bpf_map_lookup_elem(&warden_ep_exact, &key);
	if (val)
		return val;

	struct warden_cidr_key ck = {};
	ck.prefixlen = 16 + 128;
	ck.data.port_be[0] = port >> 8;
	ck.data.port_be[1] = port & 0xff;
	__builtin_memcpy(ck.data.ip6, ip6, 16);
	return bpf_map_lookup_elem(&warden_ep_cidr, &ck);
}

/* Decides whether this connect() is ours; returns the config when it is. */
static __always_inline struct warden_config *should_consider(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 0;
	struct warden_config *cfg = config();
	if (!cfg)
		return 0;
	struct bpf_sock *sk = ctx->sk;
	if (sk && cfg->self_mark && sk->mark == cfg->self_mark) {
		count(WARDEN_STAT_SKIPPED_MARK);
		return 0;
	}
	if (!(cfg->flags & WARDEN_CFG_ALL_NETNS) && bpf_get_netns_cookie(ctx) != cfg->netns_cookie) {
		count(WARDEN_STAT_SKIPPED_NETNS);
		return 0;
	}
	return cfg;
}

/* Records the caller under the socket cookie; 0 if the record could not be stored. */
static __always_inline int record(struct bpf_sock_addr *ctx, const __u8 orig_ip6[16], __u16 orig_port,
				  __u16 family, const struct warden_ep_val *ep)
{
	struct warden_flow flow = {};
	__builtin_memcpy(flow.orig_ip6, orig_ip6, 16);
	flow.orig_port = orig_port;
	flow.orig_family = family;
	flow.endpoint_id = ep->endpoint_id;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	flow.pid = pid_tgid >> 32;
	flow.tid = (__u32)pid_tgid;
	__u64 uid_gid = bpf_get_current_uid_gid();
	flow.uid = (__u32)uid_gid;
	flow.gid = uid_gid >> 32;
	flow.cgroup_id = bpf_get_current_cgroup_id();
	flow.netns_cookie = bpf_get_netns_cookie(ctx);
	flow.socket_cookie = bpf_get_socket_cookie(ctx);
	flow.ktime_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(flow.comm, sizeof(flow.comm));
	if (bpf_map_update_elem(&warden_socks, &flow.socket_cookie, &flow, BPF_ANY) != 0) {
		count(WARDEN_STAT_RECORD_FAILED);
		return 0;
	}
	return 1;
}

SEC("cgroup/connect4")
int warden_connect4(struct bpf_sock_addr *ctx)
{
	struct warden_config *cfg = should_consider(ctx);
	if (!cfg)
		return 1;
	__u8 ip6[16];
	set_mapped_v4(ip6, ctx->user_ip4);
	__u16 port = bpf_ntohs(ctx->user_port);
	struct warden_ep_val *ep = match_endpoint(ip6, port);
	if (!ep)
		return 1;
	/* Without a record the agent would refuse the connection anyway: refuse it here. */
	if (!record(ctx, ip6, port, AF_INET, ep))
		return 0;
	__u32 listen_ip4;
	__builtin_memcpy(&listen_ip4, cfg->listen_ip4, 4);
	ctx->user_ip4 = listen_ip4;
	ctx->user_port = bpf_htons(cfg->listen_port4);
	count(WARDEN_STAT_REDIRECTED);
	return 1;
}

SEC("cgroup/connect6")
int warden_connect6(struct bpf_sock_addr *ctx)
{
	struct warden_config *cfg = should_consider(ctx);
	if (!cfg)
		return 1;
	__u32 w[4];
	copy_ctx_ip6((__u8 *)w, ctx->user_ip6);
	__u16 port = bpf_ntohs(ctx->user_port);
	struct warden_ep_val *ep = match_endpoint((const __u8 *)w, port);
	if (!ep)
		return 1;
	if (!record(ctx, (const __u8 *)w, port, AF_INET6, ep))
		return 0;
	if (is_mapped_v4(w)) {
		/* a dual-stack socket dialling ::ffff:a.b.c.d: land on the IPv4 listener */
		__u32 listen_ip4;
		__builtin_memcpy(&listen_ip4, cfg->listen_ip4, 4);
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = listen_ip4;
		ctx->user_port = bpf_htons(cfg->listen_port4);
	} else {
		if (!(cfg->flags & WARDEN_CFG_LISTEN6)) {
			/* nowhere to land: refuse rather than let it go direct */
			count(WARDEN_STAT_NO_LISTENER6);
			return 0;
		}
		__u32 l[4];
		__builtin_memcpy(l, cfg->listen_ip6, 16);
		ctx->user_ip6[0] = l[0];
		ctx->user_ip6[1] = l[1];
		ctx->user_ip6[2] = l[2];
		ctx->user_ip6[3] = l[3];
		ctx->user_port = bpf_htons(cfg->listen_port6);
	}
	count(WARDEN_STAT_REDIRECTED);
	return 1;
}

SEC("sockops")
int warden_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct warden_flow *flow = bpf_map_lookup_elem(&warden_socks, &cookie);
	if (!flow)
		return 1;
	struct warden_tuple t = {};
	if (skops->family == AF_INET) {
		set_mapped_v4(t.src_ip6, skops->local_ip4);
		set_mapped_v4(t.dst_ip6, skops->remote_ip4);
	} else {
		copy_ctx_ip6(t.src_ip6, skops->local_ip6);
		copy_ctx_ip6(t.dst_ip6, skops->remote_ip6);
	}
	t.src_port = (__u16)skops->local_port;          /* host order */
	t.dst_port = (__u16)bpf_ntohl(skops->remote_port); /* network order in the upper half */
	if (bpf_map_update_elem(&warden_flows, &t, flow, BPF_ANY) == 0)
		count(WARDEN_STAT_REKEYED);
	else
		count(WARDEN_STAT_REKEY_FAILED);
	return 1;
}

SEC("cgroup/getpeername4")
int warden_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct warden_flow *flow = bpf_map_lookup_elem(&warden_socks, &cookie);
	if (!flow)
		return 1;
	__u32 ip4;
	__builtin_memcpy(&ip4, flow->orig_ip6 + 12, 4);
	ctx->user_ip4 = ip4;
	ctx->user_port = bpf_htons(flow->orig_port);
	return 1;
}

SEC("cgroup/getpeername6")
int warden_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct warden_flow *flow = bpf_map_lookup_elem(&warden_socks, &cookie);
	if (!flow)
		return 1;
	__u32 w[4];
	__builtin_memcpy(w, flow->orig_ip6, 16);
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = bpf_htons(flow->orig_port);
	return 1;
}

SEC("cgroup/sock_release")
int warden_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	bpf_map_delete_elem(&warden_socks, &cookie);
	return 1;
}
