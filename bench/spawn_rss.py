"""Fallback for spawn_rss.c when no C compiler is found: same interface, same output line.

Its own peak RSS (a Python interpreter, about 8-10 MB) is carried into the
child's ru_maxrss by Linux, so RSS figures taken through it are upper bounds;
run.py says so in the table when it has to use this.
"""
import os
import sys
import time


def main() -> int:
    outfd = int(sys.argv[1])
    argv = sys.argv[2:]
    t0 = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(outfd)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic_ns() - t0
    code = os.waitstatus_to_exitcode(status)
    code = code if code >= 0 else 128 - code
    os.write(outfd, f"{wall} {ru.ru_maxrss} {code} {int(ru.ru_utime * 1e6)} {int(ru.ru_stime * 1e6)}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
