// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * twscope's tracer, kernel half: who opens outbound TCP connections, how they
 * end, and which connect() fails and why.
 *
 * Tracepoints only (this kernel has no kprobes, and tracepoints are the stable
 * interface):
 *
 *   sock:inet_sock_set_state
 *     CLOSE -> SYN_SENT      connect() reached port selection, in the caller's
 *                            context: remember who (tgid, comm, cgroup), the
 *                            namespace, the destination and the time, keyed by
 *                            the socket's address.
 *     SYN_SENT -> ESTABLISHED
 *     ESTABLISHED -> FIN_WAIT1   we close first: TIME_WAIT will follow
 *     * -> CLOSE             the end. The kernel reports FIN_WAIT2 -> CLOSE
 *                            for the full socket when the TIME_WAIT socket
 *                            replaces it, often in softirq context, so the
 *                            owner comes from the map, never from the current
 *                            task. SYN_SENT -> CLOSE without ESTABLISHED is a
 *                            failed connect (also one that never entered a
 *                            syscall, e.g. io_uring).
 *   syscalls:sys_enter_connect / sys_exit_connect
 *     the errno of a connect() that failed synchronously, EADDRNOTAVAIL above
 *     all: the kernel sets SYN_SENT before it looks for a port, so the failed
 *     socket is seen above and its destination is known.
 *
 * Everything is aggregated in `flows` per (tgid, netns, destination), so a
 * busy host sends no event per connection; only failures go through the ring
 * buffer, and what cannot be recorded is counted in `counters`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "tcptrace.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_CLOSING 11

#define E2BIG 7
#define EEXIST 17
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99
#define ENETUNREACH 101
#define ECONNRESET 104
#define ETIMEDOUT 110
#define ECONNREFUSED 111
#define EHOSTUNREACH 113
#define EINPROGRESS 115
#define EINTR 4
#define ERESTARTSYS 512 /* and the other kernel-internal restarts above it */

/* Only the fields read, by name: CO-RE relocates them against the running
 * kernel's BTF, so no vmlinux.h and no offsets are compiled in. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	int sk_err;
} __attribute__((preserve_access_index));

struct task_struct {
	struct task_struct *group_leader;
	char comm[TASK_COMM_LEN];
} __attribute__((preserve_access_index));

/* The tracepoints' records, as /sys/kernel/tracing/events/.../format gives
 * them (a stable ABI). */
struct inet_sock_set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

struct sys_exit_args {
	__u64 common;
	long syscall_nr;
	long ret;
};

/* A connection followed from SYN_SENT to CLOSE. */
struct sock_info {
	struct flow_key key;
	__u64 start_ns;
	__u64 pid_tgid; /* the thread that called connect() */
	__u8 established;
	__u8 active_close;
	__u8 _pad[6];
};

/* A connect() call in progress on one thread. */
struct connect_call {
	__u64 skaddr; /* the socket that reached SYN_SENT in this call, or 0 */
	struct flow_key key;
	__s32 closed_error; /* the socket failed during the call, with this errno */
	__u32 closed;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} sockets SEC(".maps");

/* LRU: a thread killed inside connect() never reaches sys_exit_connect, and
 * its entry must not stay forever. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct connect_call);
} connects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} failures SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* A zeroed flow_stats too large for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct flow_stats);
} scratch SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);
	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline void leader_comm(char *comm)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	bpf_probe_read_kernel_str(comm, TASK_COMM_LEN, &leader->comm);
}

/* The key's stats, created (in process context) when `create` is set. */
static __always_inline struct flow_stats *flow(const struct flow_key *key, int create)
{
	struct flow_stats *stats = bpf_map_lookup_elem(&flows, key);
	if (stats || !create)
		return stats;
	__u32 zero = 0;
	struct flow_stats *init = bpf_map_lookup_elem(&scratch, &zero);
	if (!init)
		return 0;
	__builtin_memset(init, 0, sizeof(*init));
	init->cgroup_id = bpf_get_current_cgroup_id();
	leader_comm(init->comm);
	long err = bpf_map_update_elem(&flows, key, init, BPF_NOEXIST);
	if (err && err != -EEXIST) { /* -E2BIG: full; -ENOMEM */
		count(COUNTER_FLOWS_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&flows, key);
}

static __always_inline __u32 failure_class(int error)
{
	switch (error) {
	case EADDRNOTAVAIL:
		return FAIL_EADDRNOTAVAIL;
	case EADDRINUSE:
		return FAIL_EADDRINUSE;
	case ECONNREFUSED:
		return FAIL_ECONNREFUSED;
	case ETIMEDOUT:
		return FAIL_ETIMEDOUT;
	case ENETUNREACH:
		return FAIL_ENETUNREACH;
	case EHOSTUNREACH:
		return FAIL_EHOSTUNREACH;
	case ECONNRESET:
		return FAIL_ECONNRESET;
	default:
		return FAIL_OTHER;
	}
}

/* Count a failed connect on its flow and send it to user space. */
static __always_inline void record_failure(const struct flow_key *key, __u64 pid_tgid, int error)
{
	struct flow_stats *stats = flow(key, 0);
	if (stats) {
		__u32 class = failure_class(error);
		if (class < FAIL_CLASSES)
			__sync_fetch_and_add(&stats->failures[class], 1);
	}
	struct failure_event *event = bpf_ringbuf_reserve(&failures, sizeof(*event), 0);
	if (!event) {
		count(COUNTER_EVENTS_DROPPED);
		return;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	event->cgroup_id = stats ? stats->cgroup_id : 0;
	event->tgid = key->tgid;
	event->tid = (__u32)pid_tgid;
	event->netns = key->netns;
	event->error = error;
	__builtin_memcpy(event->daddr, key->daddr, sizeof(event->daddr));
	event->dport = key->dport;
	event->family = key->family;
	event->_pad = 0;
	if (stats)
		__builtin_memcpy(event->comm, stats->comm, sizeof(event->comm));
	else
		__builtin_memset(event->comm, 0, sizeof(event->comm));
	bpf_ringbuf_submit(event, 0);
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r < LIFETIME_BUCKETS ? r : LIFETIME_BUCKETS - 1;
}

static __always_inline int on_syn_sent(struct inet_sock_set_state_args *ctx)
{
	__u64 skaddr = (__u64)ctx->skaddr;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sock_info info = {};
	struct sock *sk = (struct sock *)ctx->skaddr;

	info.key.tgid = pid_tgid >> 32;
	info.key.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	info.key.dport = ctx->dport;
	info.key.family = ctx->family;
	if (ctx->family == AF_INET)
		__builtin_memcpy(info.key.daddr, ctx->daddr, 4);
	else
		__builtin_memcpy(info.key.daddr, ctx->daddr_v6, 16);
	info.start_ns = bpf_ktime_get_ns();
	info.pid_tgid = pid_tgid;

	struct flow_stats *stats = flow(&info.key, 1);
	if (stats)
		__sync_fetch_and_add(&stats->connects, 1);
	if (bpf_map_update_elem(&sockets, &skaddr, &info, BPF_ANY) != 0)
		count(COUNTER_SOCKETS_FULL);

	/* Inside connect(): its exit reports a synchronous failure with errno. */
	struct connect_call *call = bpf_map_lookup_elem(&connects, &pid_tgid);
	if (call) {
		call->skaddr = skaddr;
		call->key = info.key;
	}
	return 0;
}

static __always_inline int on_close(struct inet_sock_set_state_args *ctx, struct sock_info *info)
{
	__u64 skaddr = (__u64)ctx->skaddr;
	struct sock *sk = (struct sock *)ctx->skaddr;
	int error = BPF_CORE_READ(sk, sk_err);

	if (!info->established) {
		/* A connect that failed. No error on the socket means it never got
		 * a source port (sport 0): the exhausted range. */
		if (error == 0)
			error = ctx->sport == 0 ? EADDRNOTAVAIL : ECONNRESET;
		/* If its connect() is still running, the syscall's exit reports it:
		 * with its own errno, or — a non-blocking connect answered at once
		 * (a RST on loopback arrives inside the call, which still returns
		 * EINPROGRESS) — with this one. Otherwise (non-blocking, io_uring)
		 * report it here. */
		struct connect_call *call = bpf_map_lookup_elem(&connects, &info->pid_tgid);
		if (call && call->skaddr == skaddr) {
			call->closed = 1;
			call->closed_error = error;
		} else {
			record_failure(&info->key, info->pid_tgid, error);
		}
		bpf_map_delete_elem(&sockets, &skaddr);
		return 0;
	}

	struct flow_stats *stats = flow(&info->key, 0);
	if (stats) {
		__u64 lifetime_us = (bpf_ktime_get_ns() - info->start_ns) / 1000;
		__u32 bucket = log2_bucket(lifetime_us);
		__sync_fetch_and_add(&stats->closes, 1);
		__sync_fetch_and_add(&stats->concurrent, -1);
		if (bucket < LIFETIME_BUCKETS)
			__sync_fetch_and_add(&stats->lifetime_log2_us[bucket], 1);
		int old = ctx->oldstate;
		if (info->active_close && error == 0 && (old == TCP_FIN_WAIT2 || old == TCP_CLOSING))
			__sync_fetch_and_add(&stats->time_wait_left, 1);
		else if (!(old == TCP_LAST_ACK && error == 0))
			__sync_fetch_and_add(&stats->resets, 1);
	}
	bpf_map_delete_elem(&sockets, &skaddr);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct inet_sock_set_state_args *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 0;
	if (ctx->newstate == TCP_SYN_SENT)
		return on_syn_sent(ctx);
	/* Decide from the states alone before the map lookup: only these three
	 * transitions matter, and on loopback half the events are the server
	 * side's (SYN_RECV, CLOSE_WAIT, LAST_ACK, …). */
	int wanted = (ctx->newstate == TCP_ESTABLISHED && ctx->oldstate == TCP_SYN_SENT) ||
		     (ctx->newstate == TCP_FIN_WAIT1 && ctx->oldstate == TCP_ESTABLISHED) ||
		     ctx->newstate == TCP_CLOSE;
	if (!wanted)
		return 0;

	__u64 skaddr = (__u64)ctx->skaddr;
	struct sock_info *info = bpf_map_lookup_elem(&sockets, &skaddr);
	if (!info)
		return 0; /* inbound, or opened before we attached */

	switch (ctx->newstate) {
	case TCP_ESTABLISHED: {
		if (info->established)
			return 0;
		info->established = 1;
		struct flow_stats *stats = flow(&info->key, 0);
		if (stats) {
			__sync_fetch_and_add(&stats->established, 1);
			__s64 now = __sync_fetch_and_add(&stats->concurrent, 1) + 1;
			/* A racy maximum is still a lower bound of the truth. */
			if (now > 0 && (__u64)now > stats->max_concurrent)
				stats->max_concurrent = now;
		}
		return 0;
	}
	case TCP_FIN_WAIT1:
		info->active_close = 1;
		return 0;
	case TCP_CLOSE:
		return on_close(ctx, info);
	default:
		return 0;
	}
}

SEC("tracepoint/syscalls/sys_enter_connect")
int sys_enter_connect(void *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct connect_call call = {};
	bpf_map_update_elem(&connects, &pid_tgid, &call, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct sys_exit_args *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct connect_call *call = bpf_map_lookup_elem(&connects, &pid_tgid);
	if (!call)
		return 0;
	long ret = ctx->ret;
	/* Only a TCP connect that reached SYN_SENT (call->skaddr set) is ours:
	 * UDP and Unix sockets connect() too. EINPROGRESS is a non-blocking
	 * connect under way, and a blocking one interrupted by a signal (EINTR,
	 * or a restart) goes on too: the end of either is seen on the socket. */
	int in_progress = ret == -EINPROGRESS || ret == -EINTR || ret <= -ERESTARTSYS;
	if (call->skaddr && ret < 0 && !in_progress) {
		struct flow_key key = call->key;
		record_failure(&key, pid_tgid, (int)-ret);
	} else if (call->skaddr && call->closed) {
		struct flow_key key = call->key;
		record_failure(&key, pid_tgid, call->closed_error);
	}
	bpf_map_delete_elem(&connects, &pid_tgid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
