/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-side state and rules both BPF programs share: sigtrace.bpf.c (CO-RE, vmlinux.h
 * types) and sigtrace/backends/bcc_program.c (BCC, kernel headers), which includes this
 * through the link beside it. Not part of the record ABI (sigtrace.h): user space never sees
 * these, so no ABI bump when they change.
 */
#ifndef __SIGTRACE_RULES_H__
#define __SIGTRACE_RULES_H__

#define SIGKILL 9
#define SI_KERNEL 0x80
#define PIDFD_SIGNAL_PROCESS_GROUP (1u << 2)

/* A kill-family syscall in progress, by tid (each program's `inflight` map). */
struct inflight {
	__u64 seq;
	__s32 nr; /* enum st_sys */
	__s32 sig;
	__s32 req_pid;
	__s32 req_tid;
	__u32 count;   /* signals this call generated */
	__u32 emitted; /* of which passed the filters and reached the ring buffer */
	__u32 sys_flags;
	__u32 flags; /* BCC: BT_F_USER_SIGINFO for its signals; CO-RE: 0 */
};

/* kill(0), kill(-pgid), kill(-1), or a pidfd signal to a process group. */
static __always_inline bool fanout_request(const struct inflight *call)
{
	if (call->nr == ST_SYS_KILL)
		return call->req_pid <= 0;
	return call->nr == ST_SYS_PIDFD_SEND_SIGNAL && (call->sys_flags & PIDFD_SIGNAL_PROCESS_GROUP);
}

/* Whether a finished call gets its own record; who is traced, each program's filters say. */
enum call_news {
	CALL_NEWS_NO,
	CALL_NEWS_YES,
	CALL_NEWS_IF_TRACED, /* if its sender, or the pid it named, is traced */
};

/* The rule userfilter.call_is_news has for user space's filters: keep the two alike. */
static __always_inline enum call_news call_news(const struct inflight *call, long ret)
{
	/* A single-target call's signal carried everything already; only a fan-out's count
	 * and a failure are news (that halves the records of a kill() storm). */
	if (call->emitted > 0)
		return fanout_request(call) ? CALL_NEWS_YES : CALL_NEWS_NO;
	/* Its signals were all filtered out, or it sent none: only a failure is news,
	 * and only when its sender (or the pid it named) is one we trace. */
	if (call->count > 0 || ret >= 0)
		return CALL_NEWS_NO;
	return CALL_NEWS_IF_TRACED;
}

/* A reserved record zeroed, its header filled in (h: from the ring buffer, never NULL). */
static __always_inline void *record_start(struct st_header *h, __u32 size, __u32 kind)
{
	__builtin_memset(h, 0, size);
	h->ts_ns = bpf_ktime_get_ns();
	h->kind = kind;
	h->cpu = bpf_get_smp_processor_id();
	return h;
}

#endif /* __SIGTRACE_RULES_H__ */
