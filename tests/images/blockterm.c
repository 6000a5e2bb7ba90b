/* PID 1 that blocks SIGTERM (sigprocmask) and never unblocks it: the kernel keeps the stop
 * signal pending (a blocked signal is never ignored) until the runtime's SIGKILL. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	printf("ready pid %d\n", (int)getpid());
	fflush(stdout);
	for (;;)
		pause();
}
