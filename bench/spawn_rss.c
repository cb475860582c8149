/* spawn_rss RESULT_FD PROGRAM [ARG...]
 *
 * Runs PROGRAM as a child with this process's fd 0, 1 and 2 (as a superserver
 * does: fork + exec), waits for it, and writes one line to RESULT_FD:
 *
 *     <wall ns from fork to reap> <peak RSS in KiB> <exit status> <user us> <system us>
 *
 * Why a C helper: Linux carries the spawning process's peak RSS into the
 * child's ru_maxrss across fork and exec, so a child spawned straight from the
 * benchmark's Python process would report at least that process's peak. This
 * helper's own footprint is about 1 MB, so the figure is the child's own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec a, b;
    struct rusage ru;
    int status = 0, code;
    pid_t pid;
    int outfd;

    if (argc < 3) {
        fprintf(stderr, "usage: spawn_rss RESULT_FD PROGRAM [ARG...]\n");
        return 64;
    }
    outfd = atoi(argv[1]);
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 71;
    }
    if (pid == 0) {
        close(outfd);
        execv(argv[2], argv + 2);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 71;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    dprintf(outfd, "%lld %ld %d %ld %ld\n",
            (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec),
            ru.ru_maxrss, code,
            (long)(ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec),
            (long)(ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec));
    return 0;
}
