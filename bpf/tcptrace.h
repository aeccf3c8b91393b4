/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The records the tracer's kernel half writes and its user half
 * (crates/twscope-trace/src/abi.rs) reads. Every struct has explicit padding
 * so both compilers lay it out the same; the Rust side asserts the sizes.
 */
#ifndef TWSCOPE_TCPTRACE_H
#define TWSCOPE_TCPTRACE_H

#define TASK_COMM_LEN 16

/* Log2 buckets of a connection's lifetime in microseconds: bucket i holds
 * lifetimes in [2^i, 2^(i+1)) µs (bucket 0 also holds < 1 µs); the last one
 * holds everything longer (2^31 µs is 36 minutes). */
#define LIFETIME_BUCKETS 32

/* Connect failures are counted per errno class; the ring buffer carries the
 * exact errno. */
enum failure_class {
	FAIL_EADDRNOTAVAIL = 0, /* no free source port: the outage */
	FAIL_EADDRINUSE = 1,
	FAIL_ECONNREFUSED = 2,
	FAIL_ETIMEDOUT = 3,
	FAIL_ENETUNREACH = 4,
	FAIL_EHOSTUNREACH = 5,
	FAIL_ECONNRESET = 6,
	FAIL_OTHER = 7,
	FAIL_CLASSES = 8,
};

/* Indexes of the `counters` array: what the kernel half could not record. */
enum counter {
	COUNTER_EVENTS_DROPPED = 0, /* ring buffer full: failure events lost */
	COUNTER_FLOWS_FULL = 1,     /* `flows` full: a new (process, destination) not counted */
	COUNTER_SOCKETS_FULL = 2,   /* `sockets` full: a connection not followed */
	COUNTERS = 4,
};

/* One (process, network namespace, destination): the aggregation key. */
struct flow_key {
	__u32 tgid;
	__u32 netns;    /* inode of the socket's network namespace */
	__u8 daddr[16]; /* IPv4 in the first 4 bytes */
	__u16 dport;    /* host byte order */
	__u16 family;   /* AF_INET or AF_INET6 */
	__u32 _pad;
};

/* What happened to one key's connections since the tracer attached. */
struct flow_stats {
	__u64 connects;       /* SYN_SENT: every connect that reached port selection */
	__u64 established;    /* SYN_SENT -> ESTABLISHED */
	__u64 time_wait_left; /* closed as the active closer: a TIME_WAIT socket stays */
	__u64 resets;         /* aborted from ESTABLISHED, CLOSE_WAIT or FIN_WAIT1 */
	__u64 closes;         /* every close of an established connection */
	__s64 concurrent;     /* established now (opened since attach) */
	__u64 max_concurrent; /* most established at once */
	__u64 failures[FAIL_CLASSES];
	__u64 lifetime_log2_us[LIFETIME_BUCKETS];
	__u64 cgroup_id; /* cgroup v2 id of the connecting task */
	char comm[TASK_COMM_LEN]; /* the process's (thread group leader's) name */
};

/* One connect failure, sent to user space as it happens. */
struct failure_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 cgroup_id;
	__u32 tgid;
	__u32 tid;
	__u32 netns;
	__s32 error; /* positive errno */
	__u8 daddr[16];
	__u16 dport;
	__u16 family;
	__u32 _pad;
	char comm[TASK_COMM_LEN];
};

#endif
