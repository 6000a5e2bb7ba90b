/*
 * Signal storm for tests/bench/run_bench.py: kill(getpid(), SIG) in a loop.
 *
 * usage: storm [-w] [-g] SECONDS [RATE [SIGNO]]
 *   RATE 0 (default) sends as fast as it can; RATE > 0 paces to that many signals/s.
 *   SIGNO defaults to SIGUSR1; a counting handler is installed for it.
 *   -w: wait for one byte on stdin before starting (so that a tracer that needs the pid,
 *   `sigtrace --backend ptrace --pid P`, can attach first); EOF instead: exit 3, no storm.
 *   -g: no signals: syscall(SYS_getppid) in the loop instead of kill(), no handler (what a
 *   tracer costs a process that sends none); "kills" and "rate" then count those calls.
 * Prints one JSON line when done:
 *   {"pid":P,"kills":N,"handled":H,"seconds":S,"rate":N/S}
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 16

static volatile sig_atomic_t handled;

static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts;

	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
		;
}

int main(int argc, char **argv)
{
	int wait_go = 0;
	int getppid_loop = 0;

	for (; argc > 1 && argv[1][0] == '-'; argv++, argc--) {
		if (strcmp(argv[1], "-w") == 0)
			wait_go = 1;
		else if (strcmp(argv[1], "-g") == 0)
			getppid_loop = 1;
		else
			break; /* usage */
	}
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: storm [-w] [-g] SECONDS [RATE [SIGNO]]\n");
		return 2;
	}
	double seconds = atof(argv[1]);
	double rate = argc > 2 ? atof(argv[2]) : 0.0;
	int sig = argc > 3 ? atoi(argv[3]) : SIGUSR1;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (!getppid_loop && sigaction(sig, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}

	if (wait_go) {
		char go;
		ssize_t n;

		while ((n = read(0, &go, 1)) < 0 && errno == EINTR)
			;
		if (n <= 0)
			return 3;
	}

	pid_t me = getpid();
	long kills = 0;
	double start = now_s();
	double elapsed = 0.0;

	for (;;) {
		if (getppid_loop)
			for (int i = 0; i < BATCH; i++)
				syscall(SYS_getppid);
		else
			for (int i = 0; i < BATCH; i++)
				kill(me, sig);
		kills += BATCH;
		elapsed = now_s() - start;
		if (elapsed >= seconds)
			break;
		if (rate > 0.0) {
			double due = (double)kills / rate;

			if (due > elapsed)
				sleep_until(start + due);
		}
	}
	printf("{\"pid\":%d,\"kills\":%ld,\"handled\":%ld,\"seconds\":%.6f,\"rate\":%.1f}\n",
	       (int)me, kills, (long)handled, elapsed, (double)kills / elapsed);
	return 0;
}
