/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel<->userspace ABI of mcp-warden.
 *
 * Every struct here has a #[repr(C)] mirror in agent-common/src/lib.rs; the
 * test agent-ebpf/tests/abi_layout.rs reads the BTF that clang emits for the
 * compiled object and fails when a size or a field offset differs.
 *
 * Conventions: addresses are stored as 16 network-order bytes, IPv4 as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one key shape serves both
 * families; ports are host byte order. Padding is explicit and always zero.
 */
#ifndef WARDEN_H
#define WARDEN_H

#include <linux/types.h>

#define WARDEN_COMM_LEN 16
#define WARDEN_MAX_ENDPOINTS 4096
#define WARDEN_MAX_SOCKS 65536
#define WARDEN_MAX_FLOWS 65536

/* warden_config.flags */
#define WARDEN_CFG_LISTEN6 (1u << 0)   /* an IPv6 listener exists */
#define WARDEN_CFG_ALL_NETNS (1u << 1) /* also redirect sockets of other netns */

/* indexes into warden_stats (per-CPU u64 counters) */
#define WARDEN_STAT_REDIRECTED 0
#define WARDEN_STAT_SKIPPED_MARK 1
#define WARDEN_STAT_SKIPPED_NETNS 2
#define WARDEN_STAT_RECORD_FAILED 3
#define WARDEN_STAT_REKEYED 4
#define WARDEN_STAT_REKEY_FAILED 5
#define WARDEN_STAT_NO_LISTENER6 6
#define WARDEN_STAT_MAX 8

/* Single entry of the warden_config array: where the agent listens and who it is. */
struct warden_config {
	__u8 listen_ip4[4];
	__u8 listen_ip6[16];
	__u16 listen_port4;
	__u16 listen_port6;
	__u32 self_mark;    /* SO_MARK of the agent's own upstream sockets; never redirected */
	__u32 flags;        /* WARDEN_CFG_* */
	__u64 netns_cookie; /* the agent's network namespace */
};

/* Exact endpoint key (warden_ep_exact). */
struct warden_ep_key {
	__u8 ip6[16];
	__u16 port;
	__u16 pad;
};

/*
 * CIDR endpoint key (warden_ep_cidr, an LPM trie). The port comes first so
 * that every prefix includes all 16 port bits: prefixlen = 16 + 96 + v4 bits,
 * or 16 + v6 bits. The port is big-endian here because LPM compares bytes.
 * Byte-only data, so the key has no hidden padding (aya's LpmTrie key is
 * `prefixlen` followed directly by this data).
 */
struct warden_cidr_data {
	__u8 port_be[2];
	__u8 ip6[16];
	__u8 pad[2];
};

struct warden_cidr_key {
	__u32 prefixlen;
	struct warden_cidr_data data;
};

struct warden_ep_val {
	__u32 endpoint_id;
	__u32 flags;
};

/* What the agent learns about a redirected connection. */
struct warden_flow {
	__u8 orig_ip6[16];   /* destination the client dialled */
	__u16 orig_port;
	__u16 orig_family;   /* AF_INET or AF_INET6: the socket family of the dial */
	__u32 endpoint_id;
	__u32 pid;           /* tgid: the process */
	__u32 tid;           /* the thread that called connect() */
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;     /* cgroup v2 id of the caller */
	__u64 netns_cookie;
	__u64 socket_cookie;
	__u64 ktime_ns;      /* CLOCK_MONOTONIC at connect() */
	char comm[WARDEN_COMM_LEN];
};

/* 4-tuple of the client's socket after redirection, as the agent sees it on accept. */
struct warden_tuple {
	__u8 src_ip6[16]; /* the client's local address */
	__u8 dst_ip6[16]; /* the agent's listener */
	__u16 src_port;
	__u16 dst_port;
	__u32 pad;
};

#endif
