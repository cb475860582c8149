"""longrun.py [--sessions N] [--batch N] [--mode forkserver|prefork] [--out FILE]: the listening daemon's parent
over many connections, to see that its memory and descriptors stay flat.

Starts bin/qpsmtpd-forkserver (or -prefork) from this checkout with the 8-plugin set (b) delivering into a
scratch Maildir, drives it with Postfix's smtp-source (concurrency 16, one small message per session) in
batches, and after each batch records the parent's RSS (VmRSS), its peak (VmHWM), its open descriptors and
its children, and the messages delivered (then removed, to keep the disk small). Prints a Markdown table.
Default: 100,000 sessions in batches of 10,000 (about 12 minutes at 140 sessions a second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ["relay", "dont_require_anglebrackets", "badmailfrom", "badrcptto", "helo", "count_unrecognized_commands 4",
           "headers", "rcpt_ok"]


def status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    fields["children"] = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid)
    return fields


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--mode", choices=("forkserver", "prefork"), default="forkserver")
    ap.add_argument("--out", default=None)
    opts = ap.parse_args()
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    work = Path(tempfile.mkdtemp(prefix="qpsmtpd-longrun-"))
    config, maildir = work / "config", work / "Maildir"
    config.mkdir()
    (config / "me").write_text("mx.example.test\n")
    (config / "rcpthosts").write_text("example.test\n")
    (config / "relayclients").write_text("192.0.2.0/24\n")  # not 127.0.0.1: the checks run
    (config / "store_dir").write_text(f"{work}\n")
    (config / "plugins").write_text("\n".join(PLUGINS + [f"queue/maildir {maildir}"]) + "\n")
    with socket_port() as port:
        pass
    argv = [sys.executable, str(ROOT / "bin" / f"qpsmtpd-{opts.mode}"), "--config", str(config), "-l",
            f"127.0.0.1:{port}", "-c", "32", "-m", "32"]
    log = open(work / "daemon.log", "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    rows = []
    try:
        time.sleep(2)
        rows.append((0, 0, status(proc.pid), 0.0))
        done = 0
        while done < opts.sessions:
            n = min(opts.batch, opts.sessions - done)
            t = time.monotonic()
            subprocess.run([source, "-c", "-l", "200", "-m", str(n), "-s", "16", "-f", "sender@example.org",
                            "-t", "bob@example.test", f"127.0.0.1:{port}"], check=True, capture_output=True)
            wall = time.monotonic() - t
            delivered = sum(1 for _ in (maildir / "new").iterdir())
            shutil.rmtree(maildir / "new")
            (maildir / "new").mkdir()
            done += n
            time.sleep(1)  # the last children reaped
            rows.append((done, delivered, status(proc.pid), n / wall))
            print(f"{done} sessions: {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
    out = [f"qpsmtpd-{opts.mode}, {opts.sessions} sessions of the 8-plugin set, smtp-source concurrency 16", "",
           "| sessions so far | delivered in the batch | sessions/s | parent VmRSS kB | parent VmHWM kB | parent fds | children |",
           "|---|---|---|---|---|---|---|"]
    for done, delivered, st, rate in rows:
        out.append(f"| {done} | {delivered} | {rate:.0f} | {st['VmRSS']} | {st['VmHWM']} | {st['fds']} | {st['children']} |")
    text = "\n".join(out) + "\n"
    print(text)
    if opts.out:
        Path(opts.out).write_text(text)
    return 0


class socket_port:
    """A free loopback port (closed again before the daemon binds it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


if __name__ == "__main__":
    sys.exit(main())
