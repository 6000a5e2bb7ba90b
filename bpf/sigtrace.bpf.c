// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sigtrace kernel side: records ids and the kernel's own verdict for each
 * signal; user space names processes and containers and classifies.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sigtrace.h"
#include "sigtrace_rules.h"

#define SIGNAL_GROUP_EXIT 0x00000004
#define SIGNAL_UNKILLABLE 0x00000040
#define PF_EXITING 0x00000004
#define SI_USER 0
#define MAX_PIDNS_LEVEL 32

/* Settings, fixed before load. Bit (sig - 1) of sig_mask selects sig. */
const volatile __u64 sig_mask = 0;
const volatile bool filter_pids = false;
const volatile bool filter_cgroups = false;
/* x86-64: one raw tracepoint pair for the kill family (detaches in microseconds; the twelve
 * syscalls:* perf tracepoints take ~45 ms each to detach). Numbers come from user space. */
const volatile bool raw_syscalls = false;
/* --no-syscalls (x86-64): no syscall hooks, which tax every syscall on the host; a kill-family
 * call is read from the sender's registers when its signal is generated instead. */
const volatile bool regs_syscalls = false;
/* Raw hooks on 5.15+: no sys_enter hook (a BPF run on every syscall of the host); the first
 * signal of a kill-family call creates its entry from the sender's registers, and sys_exit
 * reads a failed call's arguments from them. */
const volatile bool lazy_calls = false;
const volatile long nr_kill = -1;
const volatile long nr_tkill = -1;
const volatile long nr_tgkill = -1;
const volatile long nr_pidfd_send_signal = -1;
const volatile long nr_rt_sigqueueinfo = -1;
const volatile long nr_rt_tgsigqueueinfo = -1;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Records that found the ring buffer full; user space reports the deltas. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* tgids or tids: a signal matches when its sender or target is listed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

/* cgroup ids (v2, or a v1 pids-controller cgroup). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_filter SEC(".maps");

/* A kill-family syscall in progress, by tid. LRU: a sender that dies inside kill() (its own
 * group's SIGKILL) never reaches sys_exit to remove its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* threads inside a kill-family call at one moment */
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* Processes that took part in a traced signal: their exit is reported. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64); /* enum tracked_bits */
} tracked SEC(".maps");

/* Why a process's exit will be reported (bits of a `tracked` value; kernel side only). */
enum tracked_bits {
	TRACKED_SIGNAL = 1, /* it sent or received a traced signal */
	TRACKED_OOM = 2,    /* the OOM killer chose it */
};

__u64 syscall_seq = 0;

/* Unused: keeps the record types in the object's BTF, where the layout test reads them. */
struct st_generate *_btf_generate __attribute__((unused));
struct st_deliver *_btf_deliver __attribute__((unused));
struct st_syscall *_btf_syscall __attribute__((unused));
struct st_exit *_btf_exit __attribute__((unused));
struct st_oom *_btf_oom __attribute__((unused));

/* Bit (sig - 1) of mask, for sig as a tracepoint's u64 argument holds it (zero- or
 * sign-extended: 0 and negatives wrap past 63 either way, so one unsigned compare). */
static __always_inline bool sig_in(__u64 mask, __u64 sig)
{
	__u64 bit = sig - 1;

	return bit < 64 && ((mask >> bit) & 1);
}

static __always_inline bool sig_wanted(int sig)
{
	return sig_in(sig_mask, (__u32)sig);
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline __u32 record_size(enum st_kind kind)
{
	switch (kind) {
	case ST_KIND_GENERATE:
		return sizeof(struct st_generate);
	case ST_KIND_DELIVER:
		return sizeof(struct st_deliver);
	case ST_KIND_SYSCALL:
		return sizeof(struct st_syscall);
	case ST_KIND_EXIT:
		return sizeof(struct st_exit);
	default:
		return sizeof(struct st_oom);
	}
}

/* A zeroed record of that kind with its header filled in, or NULL when the ring buffer is
 * full (counted as lost). kind is a constant at every call: the size folds away. */
static __always_inline void *reserve(enum st_kind kind)
{
	__u32 size = record_size(kind);
	struct st_header *h = bpf_ringbuf_reserve(&events, size, 0);

	if (!h) {
		count_lost();
		return NULL;
	}
	return record_start(h, size, kind);
}

static __always_inline u64 kn_id(struct cgroup *cg)
{
	return BPF_CORE_READ(cg, kn, id);
}

static __always_inline u64 task_cgroup_v2(struct task_struct *t)
{
	return kn_id(BPF_CORE_READ(t, cgroups, dfl_cgrp));
}

static __always_inline u64 task_cgroup_v1(struct task_struct *t)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, pids_cgrp_id))
		return 0;
	int idx = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);

	if (idx < 0 || idx >= 12)
		return 0;
	struct css_set *cs = BPF_CORE_READ(t, cgroups);
	struct cgroup_subsys_state *css = NULL;

	bpf_core_read(&css, sizeof(css), &cs->subsys[idx]);
	if (!css)
		return 0;
	return kn_id(BPF_CORE_READ(css, cgroup));
}

/* The pid's number in the deepest (its own) namespace, and that namespace. */
static __always_inline int pid_in_own_ns(struct pid *pid, u32 *inum)
{
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};

	if (level >= MAX_PIDNS_LEVEL)
		return 0;
	unsigned long addr = (unsigned long)pid + bpf_core_field_offset(struct pid, numbers) +
			     level * bpf_core_type_size(struct upid);
	bpf_probe_read_kernel(&up, sizeof(up), (void *)addr);
	if (inum)
		*inum = BPF_CORE_READ(up.ns, ns.inum);
	return up.nr;
}

static __always_inline struct pid_namespace *task_pidns(struct task_struct *t)
{
	struct pid *pid = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};

	if (level >= MAX_PIDNS_LEVEL)
		return NULL;
	unsigned long addr = (unsigned long)pid + bpf_core_field_offset(struct pid, numbers) +
			     level * bpf_core_type_size(struct upid);
	bpf_probe_read_kernel(&up, sizeof(up), (void *)addr);
	return up.ns;
}

static __always_inline void fill_task(struct st_task *out, struct task_struct *t)
{
	out->pid = BPF_CORE_READ(t, tgid);
	out->tid = BPF_CORE_READ(t, pid);
	out->ns_tid = pid_in_own_ns(BPF_CORE_READ(t, thread_pid), &out->pidns_inum);
	out->ns_pid = pid_in_own_ns(BPF_CORE_READ(t, group_leader, thread_pid), NULL);
	out->uid = BPF_CORE_READ(t, cred, uid.val);
	out->cgroup_id = task_cgroup_v2(t);
	out->cgroup_v1_id = task_cgroup_v1(t);
	bpf_probe_read_kernel_str(out->comm, sizeof(out->comm), t->comm);
}

static __always_inline bool pid_listed(u32 id)
{
	return bpf_map_lookup_elem(&pid_filter, &id) != NULL;
}

static __always_inline bool cgroup_listed(u64 id)
{
	return id && bpf_map_lookup_elem(&cgroup_filter, &id) != NULL;
}

static __always_inline bool task_matches(struct task_struct *t)
{
	if (filter_pids) {
		if (!pid_listed(BPF_CORE_READ(t, tgid)) && !pid_listed(BPF_CORE_READ(t, pid)))
			return false;
	}
	if (filter_cgroups) {
		if (!cgroup_listed(task_cgroup_v2(t)) && !cgroup_listed(task_cgroup_v1(t)))
			return false;
	}
	return true;
}

static __always_inline bool any_filter(void)
{
	return filter_pids || filter_cgroups;
}

static __always_inline u32 handler_of(struct task_struct *t, int sig)
{
	unsigned long h = 0;

	if (sig < 1 || sig > 64)
		return ST_HANDLER_DFL;
	struct sighand_struct *sh = BPF_CORE_READ(t, sighand);
	/* Index with the kernel's k_sigaction size: ours declares only the fields read. */
	unsigned long addr = (unsigned long)sh + bpf_core_field_offset(struct sighand_struct, action) +
			     ((sig - 1) & 63) * bpf_core_type_size(struct k_sigaction) +
			     bpf_core_field_offset(struct k_sigaction, sa) +
			     bpf_core_field_offset(struct sigaction, sa_handler);

	bpf_probe_read_kernel(&h, sizeof(h), (void *)addr);
	if (h == 0)
		return ST_HANDLER_DFL;
	if (h == 1)
		return ST_HANDLER_IGN;
	return ST_HANDLER_FUNC;
}

/* Which signals the task had a handler function for (SigCgt: bit n-1 for signal n). Only
 * for a SIGKILL's target and an exit: 64 reads would tax every signal of a storm. False when
 * it has no sighand: __exit_signal() drops it in release_task(), after sched_process_exit. */
static __always_inline bool caught_mask(struct task_struct *t, u64 *mask)
{
	struct sighand_struct *sh = BPF_CORE_READ(t, sighand);

	if (!sh)
		return false;
	unsigned long base = (unsigned long)sh + bpf_core_field_offset(struct sighand_struct, action) +
			     bpf_core_field_offset(struct k_sigaction, sa) +
			     bpf_core_field_offset(struct sigaction, sa_handler);
	unsigned long stride = bpf_core_type_size(struct k_sigaction);
	u64 m = 0;

	for (int i = 0; i < 64; i++) {
		unsigned long h = 0;

		bpf_probe_read_kernel(&h, sizeof(h), (void *)(base + i * stride));
		if (h > 1) /* neither SIG_DFL (0) nor SIG_IGN (1) */
			m |= 1ULL << i;
	}
	*mask = m;
	return true;
}

static __always_inline void read_info(struct kernel_siginfo *info, s32 *code, s32 *si_errno,
				      s32 *si_pid, u32 *si_uid, u32 *kind)
{
	unsigned long v = (unsigned long)info;

	if (v == 0) { /* SEND_SIG_NOINFO: the kernel fills SI_USER from current */
		*kind = ST_INFO_NOINFO;
		*code = SI_USER;
		return;
	}
	if (v == 1) { /* SEND_SIG_PRIV */
		*kind = ST_INFO_PRIV;
		*code = SI_KERNEL;
		return;
	}
	*kind = ST_INFO_PTR;
	*code = BPF_CORE_READ(info, si_code);
	*si_errno = BPF_CORE_READ(info, si_errno);
	*si_pid = BPF_CORE_READ(info, _sifields._kill._pid);
	*si_uid = BPF_CORE_READ(info, _sifields._kill._uid);
}

static __always_inline void track(u32 tgid, u64 bits)
{
	u64 *v = bpf_map_lookup_elem(&tracked, &tgid);

	if (v) {
		if ((*v & bits) != bits)
			__sync_fetch_and_or(v, bits);
		return;
	}
	bpf_map_update_elem(&tracked, &tgid, &bits, BPF_ANY);
}

/* A kill-family call from its registers at entry: the syscall ABI's argument registers. */
static __always_inline bool call_from_regs(struct pt_regs___x86 *r, long id, struct inflight *c)
{
	long a0 = BPF_CORE_READ(r, di), a1 = BPF_CORE_READ(r, si), a2 = BPF_CORE_READ(r, dx);

	c->req_pid = (s32)a0;
	if (id == nr_kill) {
		c->nr = ST_SYS_KILL;
		c->sig = (s32)a1;
	} else if (id == nr_tkill) {
		c->nr = ST_SYS_TKILL;
		c->sig = (s32)a1;
		c->req_tid = (s32)a0;
	} else if (id == nr_tgkill) {
		c->nr = ST_SYS_TGKILL;
		c->sig = (s32)a2;
		c->req_tid = (s32)a1;
	} else if (id == nr_pidfd_send_signal) {
		c->nr = ST_SYS_PIDFD_SEND_SIGNAL;
		c->sig = (s32)a1;
		c->sys_flags = (u32)BPF_CORE_READ(r, r10);
	} else if (id == nr_rt_sigqueueinfo) {
		c->nr = ST_SYS_RT_SIGQUEUEINFO;
		c->sig = (s32)a1;
	} else if (id == nr_rt_tgsigqueueinfo) {
		c->nr = ST_SYS_RT_TGSIGQUEUEINFO;
		c->sig = (s32)a2;
		c->req_tid = (s32)a1;
	} else {
		return false;
	}
	return true;
}

/* A traced signal at signal_generate (handle_generate has filtered it by number). */
static __always_inline int generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
				    int group, int result)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	u32 tid = (u32)bpf_get_current_pid_tgid();
	/* regs_syscalls (the default): no syscall hook fills inflight, so no lookup. */
	struct inflight *call = regs_syscalls ? NULL : bpf_map_lookup_elem(&inflight, &tid);
	struct inflight from_regs = {};

	if (call && call->sig == sig) {
		call->count += 1;
	} else {
		call = NULL;
		/* bpf_task_pt_regs() came in 5.15: before, the call stays unknown (the verifier
		 * never sees the branch, so the program still loads). */
		if ((regs_syscalls || lazy_calls) &&
		    bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
			struct pt_regs___x86 *r = (void *)bpf_task_pt_regs(cur);

			if (call_from_regs(r, BPF_CORE_READ(r, orig_ax), &from_regs) &&
			    from_regs.sig == sig) {
				/* regs_syscalls: seq 0, no syscall record follows, nothing waits */
				from_regs.count = 1;
				call = &from_regs;
				if (lazy_calls) { /* sys_exit finishes it: a fan-out's count, its id */
					from_regs.seq = __sync_fetch_and_add(&syscall_seq, 1) + 1;
					bpf_map_update_elem(&inflight, &tid, &from_regs, BPF_ANY);
					call = bpf_map_lookup_elem(&inflight, &tid);
				}
			}
		}
	}

	if (any_filter() && !task_matches(cur) && !task_matches(task))
		return 0;

	struct st_generate *e = reserve(ST_KIND_GENERATE);

	if (!e)
		return 0;
	if (call)
		call->emitted += 1;
	e->sig = sig;
	e->group = group;
	e->result = result;
	read_info(info, &e->code, &e->si_errno, &e->si_pid, &e->si_uid, &e->info_kind);
	e->handler = handler_of(task, sig);

	u32 flags = 0;
	unsigned int sflags = BPF_CORE_READ(task, signal, flags);
	struct pid_namespace *tns = task_pidns(task);

	/* A fatal signal's complete_signal() has already replaced signal->flags by now:
	 * being its namespace's child reaper says the same and survives that. */
	if ((sflags & SIGNAL_UNKILLABLE) ||
	    (tns && BPF_CORE_READ(tns, child_reaper) == BPF_CORE_READ(task, group_leader)))
		flags |= ST_F_UNKILLABLE;
	unsigned long bit = 1UL << ((sig - 1) & 63);

	if (BPF_CORE_READ(task, blocked.sig[0]) & bit)
		flags |= ST_F_BLOCKED;
	else if (BPF_CORE_READ(task, real_blocked.sig[0]) & bit)
		flags |= ST_F_WAITING; /* sigtimedwait() unblocked it for the wait */
	if (BPF_CORE_READ(task, ptrace))
		flags |= ST_F_PTRACED;
	if (call) {
		flags |= ST_F_SYSCALL;
		e->syscall_seq = call->seq;
		e->sys_nr = call->nr;
		e->req_pid = call->req_pid;
		e->sys_flags = call->sys_flags;
		if (fanout_request(call))
			flags |= ST_F_FANOUT;
	}
	if ((BPF_CORE_READ(cur, flags) & PF_EXITING) && tns && BPF_CORE_READ(tns, child_reaper) == cur)
		flags |= ST_F_TEARDOWN;
	/* Killed outright: did it have work to do (a handler for the stop signal it missed)? */
	if (sig == SIGKILL && caught_mask(task, &e->caught))
		flags |= ST_F_CAUGHT;
	e->flags = flags;
	fill_task(&e->sender, cur);
	fill_task(&e->target, task);
	bpf_ringbuf_submit(e, 0);
	track(BPF_CORE_READ(task, tgid), TRACKED_SIGNAL);
	return 0;
}

/* At signal_deliver: a traced signal, or a SIGKILL (handle_deliver has tested the number). */
static __always_inline int deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	unsigned int sflags = BPF_CORE_READ(cur, signal, flags);
	int gcode = BPF_CORE_READ(cur, signal, group_exit_code);
	int effective = sig;

	/* execve() kills the other threads with a SIGKILL nobody sent. */
	if (sig == SIGKILL && bpf_core_field_exists(cur->signal->group_exec_task) &&
	    BPF_CORE_READ(cur, signal, group_exec_task))
		return 0;
	/* A default-fatal signal becomes a group exit that get_signal() reports as SIGKILL. */
	if (sig == SIGKILL && (sflags & SIGNAL_GROUP_EXIT)) {
		/* exit_group() tears the other threads down the same way: no signal was sent. */
		if (!(gcode & 0x7f))
			return 0;
		effective = gcode & 0x7f;
	}
	if (!sig_wanted(effective) && !sig_wanted(sig))
		return 0;
	if (any_filter() && !task_matches(cur))
		return 0;

	struct st_deliver *e = reserve(ST_KIND_DELIVER);

	if (!e)
		return 0;
	e->sig = sig;
	s32 si_errno = 0;
	u32 si_uid = 0;

	read_info(info, &e->code, &si_errno, &e->si_pid, &si_uid, &e->info_kind);
	unsigned long h = (unsigned long)BPF_CORE_READ(ka, sa.sa_handler);

	e->handler = h == 0 ? ST_HANDLER_DFL : (h == 1 ? ST_HANDLER_IGN : ST_HANDLER_FUNC);
	e->group_exit_code = gcode;
	u32 flags = 0;

	if (sflags & SIGNAL_UNKILLABLE)
		flags |= ST_F_UNKILLABLE;
	if (sflags & SIGNAL_GROUP_EXIT)
		flags |= ST_F_GROUP_EXIT;
	e->flags = flags;
	fill_task(&e->task, cur);
	bpf_ringbuf_submit(e, 0);
	track(BPF_CORE_READ(cur, tgid), TRACKED_SIGNAL);
	return 0;
}

/*
 * The two hooks every signal of the host passes: one that is not traced (a storm of them)
 * leaves on the first test, the signal number against sig_mask, before anything else is read
 * (plain functions rather than BPF_PROG, whose argument loads the compiler put first).
 */
SEC("tp_btf/signal_generate")
int handle_generate(u64 *ctx)
{
	if (!sig_in(sig_mask, ctx[0]))
		return 0;
	return generate((int)ctx[0], (void *)ctx[1], (void *)ctx[2], (int)ctx[3], (int)ctx[4]);
}

SEC("tp_btf/signal_deliver")
int handle_deliver(u64 *ctx)
{
	/* Only a SIGKILL can stand for another signal (deliver()): the rest go here. */
	if (!sig_in(sig_mask | (1ULL << (SIGKILL - 1)), ctx[0]))
		return 0;
	return deliver((int)ctx[0], (void *)ctx[1], (void *)ctx[2]);
}

static __always_inline int syscall_enter(s32 nr, s32 sig, s32 req_pid, s32 req_tid, u32 sys_flags)
{
	if (!sig_wanted(sig))
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct inflight call = {
		.seq = __sync_fetch_and_add(&syscall_seq, 1) + 1,
		.nr = nr,
		.sig = sig,
		.req_pid = req_pid,
		.req_tid = req_tid,
		.sys_flags = sys_flags,
	};

	bpf_map_update_elem(&inflight, &tid, &call, BPF_ANY);
	return 0;
}

/* r, id: the raw hook's registers (NULL from the classic tracepoints). */
static __always_inline int syscall_exit(long ret, struct pt_regs___x86 *r, long id)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct inflight *found = bpf_map_lookup_elem(&inflight, &tid);
	struct inflight c = {}, *call = &c; /* a copy: one kind of pointer for the verifier */
	bool in_map = false;

	if (found) {
		c = *found;
		in_map = true;
	} else {
		/* lazy_calls: a call that generated no signal made no entry; only a failure is
		 * news, its arguments still in the registers. */
		if (!lazy_calls || !r || ret >= 0 || !call_from_regs(r, id, &c) || !sig_wanted(c.sig))
			return 0;
		c.seq = __sync_fetch_and_add(&syscall_seq, 1) + 1;
	}
	struct task_struct *cur = bpf_get_current_task_btf();
	enum call_news news = call_news(call, ret);

	if (news == CALL_NEWS_NO)
		goto out;
	if (news == CALL_NEWS_IF_TRACED && any_filter() && !task_matches(cur) &&
	    !(filter_pids && call->req_pid > 0 && pid_listed(call->req_pid)))
		goto out;
	struct st_syscall *e = reserve(ST_KIND_SYSCALL);

	if (!e)
		goto out;
	e->seq = call->seq;
	e->ret = ret;
	e->nr = call->nr;
	e->sig = call->sig;
	e->req_pid = call->req_pid;
	e->req_tid = call->req_tid;
	e->count = call->count;
	e->sys_flags = call->sys_flags;
	fill_task(&e->sender, cur);
	bpf_ringbuf_submit(e, 0);
out:
	if (in_map)
		bpf_map_delete_elem(&inflight, &tid);
	return 0;
}

static __always_inline bool signal_syscall(long nr)
{
	return nr == nr_kill || nr == nr_tkill || nr == nr_tgkill || nr == nr_pidfd_send_signal ||
	       nr == nr_rt_sigqueueinfo || nr == nr_rt_tgsigqueueinfo;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(raw_sys_enter, struct pt_regs *regs, long id)
{
	struct inflight c = {};

	if (!raw_syscalls || !call_from_regs((void *)regs, id, &c))
		return 0;
	return syscall_enter(c.nr, c.sig, c.req_pid, c.req_tid, c.sys_flags);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret)
{
	if (!raw_syscalls)
		return 0;
	struct pt_regs___x86 *r = (void *)regs;
	long id = BPF_CORE_READ(r, orig_ax);

	if (!signal_syscall(id))
		return 0;
	return syscall_exit(ret, r, id);
}

/* Elsewhere: the classic per-syscall tracepoints (user space enables one set or the other). */
#define ARG(ctx, i) ((ctx)->args[i])

SEC("tracepoint/syscalls/sys_enter_kill")
int enter_kill(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_KILL, (s32)ARG(ctx, 1), (s32)ARG(ctx, 0), 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_tkill")
int enter_tkill(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_TKILL, (s32)ARG(ctx, 1), (s32)ARG(ctx, 0), (s32)ARG(ctx, 0), 0);
}

SEC("tracepoint/syscalls/sys_enter_tgkill")
int enter_tgkill(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_TGKILL, (s32)ARG(ctx, 2), (s32)ARG(ctx, 0), (s32)ARG(ctx, 1), 0);
}

SEC("tracepoint/syscalls/sys_enter_pidfd_send_signal")
int enter_pidfd_send_signal(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_PIDFD_SEND_SIGNAL, (s32)ARG(ctx, 1), (s32)ARG(ctx, 0), 0,
			     (u32)ARG(ctx, 3));
}

SEC("tracepoint/syscalls/sys_enter_rt_sigqueueinfo")
int enter_rt_sigqueueinfo(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_RT_SIGQUEUEINFO, (s32)ARG(ctx, 1), (s32)ARG(ctx, 0), 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_rt_tgsigqueueinfo")
int enter_rt_tgsigqueueinfo(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ST_SYS_RT_TGSIGQUEUEINFO, (s32)ARG(ctx, 2), (s32)ARG(ctx, 0),
			     (s32)ARG(ctx, 1), 0);
}

SEC("tracepoint/syscalls/sys_exit_kill")
int exit_kill(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

SEC("tracepoint/syscalls/sys_exit_tkill")
int exit_tkill(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

SEC("tracepoint/syscalls/sys_exit_tgkill")
int exit_tgkill(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

SEC("tracepoint/syscalls/sys_exit_pidfd_send_signal")
int exit_pidfd_send_signal(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

SEC("tracepoint/syscalls/sys_exit_rt_sigqueueinfo")
int exit_rt_sigqueueinfo(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

SEC("tracepoint/syscalls/sys_exit_rt_tgsigqueueinfo")
int exit_rt_tgsigqueueinfo(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, NULL, 0);
}

/* The init of a pid namespace below the host's (before exit_notify() hands the role on). */
static __always_inline bool container_init(struct task_struct *t)
{
	struct pid_namespace *ns = task_pidns(t);

	return ns && BPF_CORE_READ(ns, level) > 0 &&
	       BPF_CORE_READ(ns, child_reaper) == BPF_CORE_READ(t, group_leader);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	/* Only the last thread: signal->live has already been decremented. Every thread of the
	 * host passes here: a direct (BTF) read, no helper call, before the map lookup. */
	if (task->signal->live.counter != 0)
		return 0;
	u32 tgid = BPF_CORE_READ(task, tgid);
	u64 *bits = bpf_map_lookup_elem(&tracked, &tgid);
	u32 flags = 0;

	if (!bits) {
		/* Unfiltered, a container's PID 1 ends its story (and its runtime record) even
		 * when it took part in no traced signal: a job that exits by itself. */
		if (any_filter() ? !task_matches(task) : !container_init(task))
			return 0;
	} else if (*bits & TRACKED_OOM) {
		flags |= ST_F_OOM_VICTIM;
	}

	struct st_exit *e = reserve(ST_KIND_EXIT);

	if (!e)
		goto out;
	unsigned int sflags = BPF_CORE_READ(task, signal, flags);
	int code = BPF_CORE_READ(task, exit_code);

	if (sflags & SIGNAL_GROUP_EXIT)
		code = BPF_CORE_READ(task, signal, group_exit_code);
	e->exit_code = code;
	if (code & 0x80)
		flags |= ST_F_CORE_DUMPED;
	if (caught_mask(task, &e->caught))
		flags |= ST_F_CAUGHT;
	e->flags = flags;
	fill_task(&e->task, task);
	bpf_ringbuf_submit(e, 0);
out:
	if (bits)
		bpf_map_delete_elem(&tracked, &tgid);
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(handle_oom, struct task_struct *task)
{
	struct task_struct *cur = bpf_get_current_task_btf();

	if (any_filter() && !task_matches(task))
		return 0;
	track(BPF_CORE_READ(task, tgid), TRACKED_OOM);

	struct st_oom *e = reserve(ST_KIND_OOM);

	if (!e)
		return 0;
	fill_task(&e->victim, task);
	fill_task(&e->trigger, cur);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
