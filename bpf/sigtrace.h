/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Records the kernel side hands to user space through the ring buffer.
 * Fixed-width fields only, arrays last; sigtrace/wire.py mirrors this file
 * and tests/unit/test_wire_layout.py checks it against the object's BTF.
 * Bump ST_ABI_VERSION on any change.
 */
#ifndef __SIGTRACE_H__
#define __SIGTRACE_H__

#define ST_ABI_VERSION 3
#define ST_COMM_LEN 16

enum st_kind {
	ST_KIND_GENERATE = 1, /* signal:signal_generate, sender context */
	ST_KIND_DELIVER = 2,  /* signal:signal_deliver, target context */
	ST_KIND_SYSCALL = 3,  /* a kill-family syscall returned */
	ST_KIND_EXIT = 4,     /* sched:sched_process_exit, last thread of a process */
	ST_KIND_OOM = 5,      /* oom:mark_victim */
};

/* Our own syscall numbers: the kernel's differ between architectures. */
enum st_sys {
	ST_SYS_KILL = 1,
	ST_SYS_TKILL = 2,
	ST_SYS_TGKILL = 3,
	ST_SYS_PIDFD_SEND_SIGNAL = 4,
	ST_SYS_RT_SIGQUEUEINFO = 5,
	ST_SYS_RT_TGSIGQUEUEINFO = 6,
};

/* What `info` was at the tracepoint: SEND_SIG_NOINFO/SEND_SIG_PRIV are not pointers. */
enum st_info_kind {
	ST_INFO_NOINFO = 0,
	ST_INFO_PRIV = 1,
	ST_INFO_PTR = 2,
};

/* The receiving task's disposition for the signal. */
enum st_handler {
	ST_HANDLER_DFL = 0,
	ST_HANDLER_IGN = 1,
	ST_HANDLER_FUNC = 2,
};

/* Bits of st_generate.flags / st_deliver.flags / st_exit.flags. */
#define ST_F_UNKILLABLE (1u << 0)  /* target's signal->flags has SIGNAL_UNKILLABLE */
#define ST_F_BLOCKED (1u << 1)     /* signal is in the target task's blocked mask */
#define ST_F_SYSCALL (1u << 2)     /* generated inside a traced kill-family syscall */
#define ST_F_TEARDOWN (1u << 3)    /* sender is the exiting child reaper of the target's pid ns */
#define ST_F_PTRACED (1u << 4)     /* target is ptraced: the kernel queues what it would drop */
#define ST_F_GROUP_EXIT (1u << 5)  /* deliver: a group exit is under way (sig reads SIGKILL) */
#define ST_F_OOM_VICTIM (1u << 6)  /* exit: the OOM killer chose this process */
#define ST_F_CORE_DUMPED (1u << 7) /* exit: core dumped */
#define ST_F_WAITING (1u << 8)     /* target waits for it in sigtimedwait() (tini, dumb-init) */
#define ST_F_FANOUT (1u << 9)      /* its syscall named a group: an st_syscall record follows */
#define ST_F_CAUGHT (1u << 10)     /* `caught` was read (a SIGKILL's target, an exiting process) */

struct st_task {
	__u64 cgroup_id;    /* cgroup v2 (default hierarchy) id */
	__u64 cgroup_v1_id; /* cgroup id in the pids controller's hierarchy (v1 hosts) */
	__u32 pid;          /* host tgid */
	__u32 tid;          /* host tid */
	__u32 ns_pid;       /* tgid in the task's own pid namespace */
	__u32 ns_tid;       /* tid in the task's own pid namespace */
	__u32 pidns_inum;   /* inode of the task's pid namespace */
	__u32 uid;          /* real uid */
	char comm[ST_COMM_LEN];
};

struct st_header {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 kind;  /* enum st_kind */
	__u32 cpu;
};

struct st_generate {
	struct st_header hdr;
	__u64 syscall_seq; /* valid with ST_F_SYSCALL: matches st_syscall.seq */
	__s32 sys_nr;      /* with ST_F_SYSCALL: enum st_sys of the call that sent it */
	__s32 req_pid;     /* with ST_F_SYSCALL: the call's pid argument (see st_syscall) */
	__u32 sys_flags;   /* with ST_F_SYSCALL: pidfd_send_signal flags */
	__u32 _pad;
	__s32 sig;
	__s32 code;     /* si_code (SI_USER for NOINFO, SI_KERNEL for PRIV) */
	__s32 si_errno; /* siginfo errno: not a result */
	__s32 si_pid;   /* sender pid as the target sees it (0: from an ancestor pid ns) */
	__u32 si_uid;
	__u32 info_kind; /* enum st_info_kind */
	__s32 group;     /* type != PIDTYPE_PID: 1 for a plain kill(pid) too */
	__s32 result;    /* enum trace_signal_deliver: 0 delivered .. 4 lose_info */
	__u32 handler;   /* enum st_handler, target's disposition */
	__u32 flags;
	__u64 caught;    /* with ST_F_CAUGHT (SIGKILL only): bit n-1 set when the target had a
			  * handler function for signal n (its /proc status SigCgt) */
	struct st_task sender;
	struct st_task target;
};

struct st_deliver {
	struct st_header hdr;
	__s32 sig;             /* as the tracepoint reports it */
	__s32 code;
	__s32 si_pid;
	__u32 info_kind;
	__u32 handler;         /* enum st_handler for sig */
	__s32 group_exit_code; /* signal->group_exit_code: the real cause behind a SIGKILL */
	__u32 flags;
	__u32 _pad;
	struct st_task task;
};

/* Only for calls whose signals need it: a group request (ST_F_FANOUT: how many it reached),
 * or a call that failed before generating anything (EPERM, ESRCH). */
struct st_syscall {
	struct st_header hdr;
	__u64 seq;
	__s64 ret;
	__s32 nr;      /* enum st_sys */
	__s32 sig;
	__s32 req_pid; /* kill: pid argument; tgkill/rt_tgsigqueueinfo: tgid; tkill: tid; pidfd_send_signal: the fd */
	__s32 req_tid; /* tgkill/rt_tgsigqueueinfo: tid; otherwise 0 */
	__u32 count;   /* signal_generate events inside this call */
	__u32 sys_flags; /* pidfd_send_signal flags */
	struct st_task sender;
};

struct st_exit {
	struct st_header hdr;
	__s32 exit_code; /* wait status: exit status << 8, or the signal | 0x80 for a core */
	__u32 flags;
	__u64 caught; /* with ST_F_CAUGHT: the process's handler mask at exit, as st_generate's */
	struct st_task task;
};

struct st_oom {
	struct st_header hdr;
	struct st_task victim;
	struct st_task trigger; /* the allocating task whose context ran the OOM killer */
};

#endif /* __SIGTRACE_H__ */
