/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types sigtrace reads, declared for CO-RE.
 *
 * Not a full `bpftool btf dump` of one kernel: every struct carries
 * preserve_access_index, so libbpf relocates each field access against the
 * running kernel's BTF at load time. Only names and shapes matter here, not
 * offsets; keeping the subset small makes the committed object reproducible
 * on any build machine (the full dump differs from kernel to kernel).
 */
#ifndef __SIGTRACE_VMLINUX_H__
#define __SIGTRACE_VMLINUX_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef int pid_t;
typedef unsigned int uid_t;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	unsigned long sig[1];
} sigset_t;

struct ns_common {
	unsigned int inum;
};

struct task_struct;

struct pid_namespace {
	struct task_struct *child_reaper;
	unsigned int level;
	struct ns_common ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct kernfs_node {
	u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[12];
	struct cgroup *dfl_cgrp;
};

struct signal_struct {
	atomic_t live;
	struct task_struct *group_exec_task;
	int group_exit_code;
	unsigned int flags;
};

typedef void (*__sighandler_t)(int);

struct sigaction {
	__sighandler_t sa_handler;
	unsigned long sa_flags;
};

struct k_sigaction {
	struct sigaction sa;
};

struct sighand_struct {
	struct k_sigaction action[64];
};

typedef struct {
	uid_t val;
} kuid_t;

struct cred {
	kuid_t uid;
};

struct task_struct {
	unsigned int flags;
	unsigned int ptrace;
	int exit_code;
	pid_t pid;
	pid_t tgid;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	const struct cred *cred;
	char comm[16];
	struct signal_struct *signal;
	struct sighand_struct *sighand;
	sigset_t blocked;
	sigset_t real_blocked;
	struct css_set *cgroups;
};

union __sifields {
	struct {
		pid_t _pid;
		uid_t _uid;
	} _kill;
};

struct kernel_siginfo {
	struct {
		int si_signo;
		int si_errno;
		int si_code;
		union __sifields _sifields;
	};
};

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

/* Layout of the classic syscalls:sys_enter_* / sys_exit_* tracepoint records. */
struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long id;
	unsigned long args[6];
};

struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long id;
	long ret;
};

/* x86-64 registers at syscall entry/exit; the ___x86 flavour is matched to pt_regs. */
struct pt_regs___x86 {
	unsigned long r10;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
};

#pragma clang attribute pop

/* Relocated by value at load time: the controller's index differs between kernels. */
enum cgroup_subsys_id {
	pids_cgrp_id = 11,
};

/* Whether the kernel has a helper (bpf_task_pt_regs: 5.15), checked at load time. */
enum bpf_func_id {
	BPF_FUNC_task_pt_regs = 175,
};

#endif /* __SIGTRACE_VMLINUX_H__ */
