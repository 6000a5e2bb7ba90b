// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sigtrace's kernel side for BCC (kernels with BPF but no BTF), compiled at run time.
 *
 * It runs against whatever kernel headers are installed, which need not match the running
 * kernel, so it never reads a kernel struct: only the tracepoints' own fields (laid out from
 * tracefs's format files by BCC) and helpers (pid/tgid, uid, comm, cgroup id, time). User
 * space reads the rest from /proc and marks it as derived.
 *
 * Settings come as -D flags from sigtrace/backends/bcc.py: SIG_MASK, FILTER_PIDS,
 * FILTER_CGROUPS (in-kernel cgroup filter for events whose subject is current),
 * RINGBUF_PAGES, HAVE_SYS_<call>, EXIT_HAS_GROUP_DEAD, HAVE_OOM, OOM_HAS_COMM, OOM_HAS_UID,
 * and the record sizes user space decodes (BT_*_SIZE), checked below at compile time.
 * Record kinds, the record header, syscall numbers and shared flags are sigtrace.h's (the
 * CO-RE program's header, shipped beside this file): one definition for C and for wire.py.
 * A kill-family call's state and rules are sigtrace_rules.h's, shared with the CO-RE program.
 */

/* Named by the syscall tracepoints' formats; only ever compared with NULL here. */
struct siginfo;
typedef struct siginfo siginfo_t;

#include "sigtrace.h"
#include "sigtrace_rules.h"

/* An exiting task's SI_KERNEL SIGKILL within this long is its namespace teardown. */
#define TEARDOWN_WINDOW_NS 1000000000ULL

/* Flags: ST_F_SYSCALL, ST_F_OOM_VICTIM and ST_F_FANOUT mean what they do in sigtrace.h;
 * these are this program's own, above the shared bits (bcc_records.py decodes them). */
#define BT_F_USER_SIGINFO (1u << 16) /* the call passed its own siginfo: si_pid is the caller's */
#define BT_F_TRACKED (1u << 17)      /* exit: the process took part in a traced signal */
#define BT_F_SENDER_EXITING (1u << 18) /* user space confirms a teardown (sender ns pid 1) */

/* Why `tracked` holds a process: its exit is reported either way. */
#define TRACK_SIGNALLED 1 /* it took part in a traced signal */
#define TRACK_OOM_VICTIM 2

struct bt_task {
	u64 cgroup_id; /* bpf_get_current_cgroup_id(): cgroup v2 */
	u32 pid;       /* tgid */
	u32 tid;
	u32 uid; /* real uid */
	u32 _pad;
	char comm[ST_COMM_LEN];
};

struct bt_generate {
	struct st_header hdr;
	u64 seq;
	s32 sys_nr;
	s32 req_pid;
	u32 sys_flags;
	u32 flags;
	s32 sig;
	s32 code;
	s32 si_errno;
	s32 group;
	s32 result;
	s32 target_tid;
	char target_comm[ST_COMM_LEN];
	struct bt_task sender;
};

struct bt_deliver {
	struct st_header hdr;
	s32 sig;
	s32 code;
	s32 si_errno;
	u32 _pad;
	u64 sa_handler;
	u64 sa_flags;
	struct bt_task task;
};

struct bt_syscall {
	struct st_header hdr;
	u64 seq;
	s64 ret;
	s32 nr;
	s32 sig;
	s32 req_pid;
	s32 req_tid;
	u32 count;
	u32 sys_flags;
	struct bt_task sender;
};

struct bt_exit {
	struct st_header hdr;
	u32 flags;
	u32 _pad;
	struct bt_task task;
};

struct bt_oom {
	struct st_header hdr;
	s32 victim_tid;
	u32 victim_uid; /* 0xffffffff: the tracepoint has no uid field */
	char victim_comm[ST_COMM_LEN];
	struct bt_task trigger;
};

/* User space decodes these with struct: a layout drift must not compile. */
_Static_assert(sizeof(struct bt_generate) == BT_GENERATE_SIZE, "bt_generate size");
_Static_assert(sizeof(struct bt_deliver) == BT_DELIVER_SIZE, "bt_deliver size");
_Static_assert(sizeof(struct bt_syscall) == BT_SYSCALL_SIZE, "bt_syscall size");
_Static_assert(sizeof(struct bt_exit) == BT_EXIT_SIZE, "bt_exit size");
_Static_assert(sizeof(struct bt_oom) == BT_OOM_SIZE, "bt_oom size");
_Static_assert(sizeof(struct bt_task) == BT_TASK_SIZE, "bt_task size");

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 1);
/* [0]: kill-family call sequence; [1]: non-zero once user space drains (stop emitting). */
BPF_ARRAY(state, u64, 2);
BPF_HASH(pid_filter, u32, u8, 8192); /* tids: --pid's processes and their threads */
BPF_HASH(cgroup_filter, u64, u8, 4096);
BPF_HASH(inflight, u32, struct inflight, 4096); /* by tid: a kill-family call in progress */
/* tid or tgid → TRACK_* bits: their exits are reported. */
BPF_TABLE("lru_hash", u32, u64, tracked, 16384);
/* tid → when its thread group died: its SI_KERNEL SIGKILLs right after are a teardown. */
BPF_TABLE("lru_hash", u32, u64, exiting, 1024);

static inline bool sig_wanted(int sig)
{
	if (sig < 1 || sig > 64)
		return false;
	return (SIG_MASK >> (sig - 1)) & 1;
}

static inline bool paused(void)
{
	int one = 1;
	u64 *v = state.lookup(&one);

	return v && *v;
}

static inline void count_lost(void)
{
	int zero = 0;
	u64 *n = lost.lookup(&zero);

	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

static inline bool pid_listed(u32 id)
{
	return pid_filter.lookup(&id) != NULL;
}

/* The pid filter and (where the cgroups are v2) the cgroup filter, for current. */
static inline bool current_matches(void)
{
	u64 id = bpf_get_current_pid_tgid();

	if (FILTER_PIDS && !pid_listed(id >> 32) && !pid_listed((u32)id))
		return false;
	if (FILTER_CGROUPS) {
		u64 cg = bpf_get_current_cgroup_id();

		if (!cgroup_filter.lookup(&cg))
			return false;
	}
	return true;
}

static inline void track(u32 id, u64 bits)
{
	u64 *v = tracked.lookup(&id);

	if (v) {
		if ((*v & bits) != bits)
			__sync_fetch_and_or(v, bits);
		return;
	}
	tracked.update(&id, &bits);
}

/* A zeroed record with its header filled in, or NULL: the ring buffer is full (counted). */
static inline void *reserve(u32 size, u32 kind)
{
	struct st_header *h = events.ringbuf_reserve(size);

	if (!h) {
		count_lost();
		return NULL;
	}
	return record_start(h, size, kind);
}

static inline void fill_current(struct bt_task *t)
{
	u64 id = bpf_get_current_pid_tgid();

	t->cgroup_id = bpf_get_current_cgroup_id();
	t->pid = id >> 32;
	t->tid = (u32)id;
	t->uid = (u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(&t->comm, sizeof(t->comm));
}

TRACEPOINT_PROBE(signal, signal_generate)
{
	int sig = args->sig;

	if (!sig_wanted(sig) || paused())
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	u32 target = args->pid;
	struct inflight *call = inflight.lookup(&tid);

	if (call && call->sig == sig)
		call->count += 1;
	else
		call = NULL;
	/* Only the target's tid is known here (its tgid and cgroup are in its task_struct):
	 * user space widens the pid set to --pid's threads and filters cgroups itself. */
	if (FILTER_PIDS && !pid_listed(id >> 32) && !pid_listed(tid) && !pid_listed(target))
		return 0;

	struct bt_generate *e = reserve(sizeof(*e), ST_KIND_GENERATE);

	if (!e)
		return 0;
	e->sig = sig;
	e->code = args->code;
	e->si_errno = args->errno;
	e->group = args->group;
	e->result = args->result;
	e->target_tid = target;
	__builtin_memcpy(e->target_comm, args->comm, ST_COMM_LEN);

	u32 flags = 0;

	if (call) {
		call->emitted += 1;
		flags |= ST_F_SYSCALL | call->flags;
		e->seq = call->seq;
		e->sys_nr = call->nr;
		e->req_pid = call->req_pid;
		e->sys_flags = call->sys_flags;
		if (fanout_request(call))
			flags |= ST_F_FANOUT;
	}
	if (sig == SIGKILL && args->code == SI_KERNEL) {
		u64 *died = exiting.lookup(&tid);

		if (died && bpf_ktime_get_ns() - *died < TEARDOWN_WINDOW_NS)
			flags |= BT_F_SENDER_EXITING;
	}
	e->flags = flags;
	fill_current(&e->sender);
	events.ringbuf_submit(e, 0);
	track(target, TRACK_SIGNALLED);
	return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
	int sig = args->sig;
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;

	if (paused())
		return 0;
	if (sig == SIGKILL) {
		/* get_signal() reports every group exit as SIGKILL: a default-fatal signal's, and
		 * also exec()'s and exit_group()'s, where nothing was sent. Only a process that
		 * took part in a traced signal can have had one of ours. */
		if (!tracked.lookup(&tgid) && !tracked.lookup(&tid))
			return 0;
	} else if (!sig_wanted(sig)) {
		return 0;
	}
	if ((FILTER_PIDS || FILTER_CGROUPS) && !current_matches())
		return 0;

	struct bt_deliver *e = reserve(sizeof(*e), ST_KIND_DELIVER);

	if (!e)
		return 0;
	e->sig = sig;
	e->code = args->code;
	e->si_errno = args->errno;
	e->sa_handler = args->sa_handler;
	e->sa_flags = args->sa_flags;
	fill_current(&e->task);
	events.ringbuf_submit(e, 0);
	if (sig != SIGKILL)
		track(tgid, TRACK_SIGNALLED);
	return 0;
}

static inline int sys_enter(s32 nr, s32 sig, s32 req_pid, s32 req_tid, u32 sys_flags, u32 flags)
{
	if (!sig_wanted(sig))
		return 0;
	int zero = 0;
	u64 *seq = state.lookup(&zero);

	if (!seq)
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct inflight call = {};

	call.seq = __sync_fetch_and_add(seq, 1) + 1;
	call.nr = nr;
	call.sig = sig;
	call.req_pid = req_pid;
	call.req_tid = req_tid;
	call.sys_flags = sys_flags;
	call.flags = flags;
	inflight.update(&tid, &call);
	return 0;
}

static inline int sys_exit(long ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct inflight *call = inflight.lookup(&tid);

	if (!call)
		return 0;
	if (paused())
		goto out;
	enum call_news news = call_news(call, ret);

	if (news == CALL_NEWS_NO)
		goto out;
	if (news == CALL_NEWS_IF_TRACED && (FILTER_PIDS || FILTER_CGROUPS) && !current_matches() &&
	    !(FILTER_PIDS && call->req_pid > 0 && pid_listed(call->req_pid)))
		goto out;

	struct bt_syscall *e = reserve(sizeof(*e), ST_KIND_SYSCALL);

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
	fill_current(&e->sender);
	events.ringbuf_submit(e, 0);
out:
	inflight.delete(&tid);
	return 0;
}

/* A kill-family call's two probes, `pid`, `tid` and `sys_flags` its arguments as sys_enter()
 * takes them. The syscall tracepoints' fields are 8 bytes wide whatever their C type: truncate. */
#define KILL_CALL(name, nr, pid, tid, sys_flags, flags)                                    \
	TRACEPOINT_PROBE(syscalls, sys_enter_##name)                                        \
	{                                                                                   \
		return sys_enter(nr, (s32)args->sig, (s32)(pid), (s32)(tid), (u32)(sys_flags), \
				 flags);                                                    \
	}                                                                                   \
	TRACEPOINT_PROBE(syscalls, sys_exit_##name)                                         \
	{                                                                                   \
		return sys_exit(args->ret);                                                 \
	}

#ifdef HAVE_SYS_KILL
KILL_CALL(kill, ST_SYS_KILL, args->pid, 0, 0, 0)
#endif
#ifdef HAVE_SYS_TKILL
KILL_CALL(tkill, ST_SYS_TKILL, args->pid, args->pid, 0, 0)
#endif
#ifdef HAVE_SYS_TGKILL
KILL_CALL(tgkill, ST_SYS_TGKILL, args->tgid, args->pid, 0, 0)
#endif
#ifdef HAVE_SYS_PIDFD_SEND_SIGNAL
KILL_CALL(pidfd_send_signal, ST_SYS_PIDFD_SEND_SIGNAL, args->pidfd, 0, args->flags,
	  args->info ? BT_F_USER_SIGINFO : 0)
#endif
#ifdef HAVE_SYS_RT_SIGQUEUEINFO
KILL_CALL(rt_sigqueueinfo, ST_SYS_RT_SIGQUEUEINFO, args->pid, 0, 0, BT_F_USER_SIGINFO)
#endif
#ifdef HAVE_SYS_RT_TGSIGQUEUEINFO
KILL_CALL(rt_tgsigqueueinfo, ST_SYS_RT_TGSIGQUEUEINFO, args->tgid, args->pid, 0, BT_F_USER_SIGINFO)
#endif

/* The format has no exit code: user space joins these with the process-events connector's. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;

#ifdef EXIT_HAS_GROUP_DEAD
	if (!args->group_dead)
		return 0;
#else
	/* Without group_dead, the main thread's exit stands for the process's. */
	if (tid != tgid)
		return 0;
#endif
	u64 now = bpf_ktime_get_ns();

	exiting.update(&tid, &now);
	u64 bits = 0;
	u64 *v = tracked.lookup(&tgid);

	if (v)
		bits |= *v;
	v = tracked.lookup(&tid);
	if (v)
		bits |= *v;
	if (!bits && (!(FILTER_PIDS || FILTER_CGROUPS) || !current_matches()))
		goto out;

	struct bt_exit *e = reserve(sizeof(*e), ST_KIND_EXIT);

	if (!e)
		goto out;
	e->flags = (bits ? BT_F_TRACKED : 0) | ((bits & TRACK_OOM_VICTIM) ? ST_F_OOM_VICTIM : 0);
	fill_current(&e->task);
	events.ringbuf_submit(e, 0);
out:
	if (bits) {
		tracked.delete(&tgid);
		tracked.delete(&tid);
	}
	return 0;
}

#ifdef HAVE_OOM
TRACEPOINT_PROBE(oom, mark_victim)
{
	u32 victim = args->pid;

	if (FILTER_PIDS && !pid_listed(victim))
		return 0;
	track(victim, TRACK_OOM_VICTIM);

	struct bt_oom *e = reserve(sizeof(*e), ST_KIND_OOM);

	if (!e)
		return 0;
	e->victim_tid = victim;
#ifdef OOM_HAS_UID
	e->victim_uid = args->uid;
#else
	e->victim_uid = 0xffffffff;
#endif
#ifdef OOM_HAS_COMM
	TP_DATA_LOC_READ_STR(e->victim_comm, comm, ST_COMM_LEN);
#endif
	fill_current(&e->trigger);
	events.ringbuf_submit(e, 0);
	return 0;
}
#endif
