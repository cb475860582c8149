"""qpsmtpd-prefork: workers forked before the connections come; each serves one session, fresh.

    qpsmtpd-prefork [--listen-address ADDR[:PORT]]... [--port PORT] [--smtps-port PORT]...
                    [--children N] [--idle-children N] [--max-from-ip N] [--user USER]
                    [--pid-file FILE] [--detach] [--config DIR] [--preload MOD,...]

Debian's qpsmtpd-prefork's option names (port 25, 15 children, 5 idle, 10 per
address, 0 for no per-address limit). The parent binds (or takes systemd's
sockets), becomes USER and preloads as qpsmtpd-forkserver does, then keeps
--idle-children workers waiting in accept(), up to --children in all: the
pool grows as connections come and shrinks as sessions end, and at
--children busy workers new clients wait in the kernel's listen queue.

A worker that accepts a connection runs exactly what in.qpsmtpd runs, then
exits: config and plugins are read for each connection, and nothing a session
leaves behind (its plugins' module state, its limits, its signals) can reach
the next one, so each worker serves one connection and the parent replaces
it. What the pool saves over qpsmtpd-forkserver is the fork on the client's
path. A client with --max-from-ip sessions running gets `421 4.7.0` and is
closed. Signals, --shutdown-timeout and upgrades as qpsmtpd-forkserver.
"""

import mmap
import os
import select
import signal
import socket
import sys

from . import forkserver

USAGE = __doc__.split("\n\n")[1] + "\n"
NAMES = {"--listen-address": "listen", "--interface": "listen", "-l": "listen", "--port": "ports", "-p": "ports",
         "--smtps-port": "smtps_ports", "--children": "limit", "-c": "limit", "--idle-children": "idle", "-m": "per_ip",
         "--max-from-ip": "per_ip", "--user": "user", "-u": "user", "--pid-file": "pid_file",
         "--config": "config", "--preload": "preload", "--shutdown-timeout": "shutdown_timeout",
         "--renice-parent": "renice"}
DEFAULTS = {**forkserver.DEFAULTS, "ports": [], "limit": 15, "idle": 5, "per_ip": 10, "renice": 0}
SLOT = 48  # per worker in the shared table: 1 octet busy, 1 octet length, the client's canonical address


def parse_args(argv: list[str]) -> dict:
    opts = forkserver.parse_args(argv, NAMES, DEFAULTS, USAGE, "qpsmtpd-prefork")
    if not opts["ports"] and not opts["smtps_ports"]:
        opts["ports"] = ["25"]
    opts["limit"] = max(opts["limit"], 1)
    opts["idle"] = min(max(opts["idle"], 1), opts["limit"])
    opts["per_ip"] = opts["per_ip"] or opts["limit"]
    return opts


class Pool(forkserver.Parent):
    def __init__(self, opts: dict, listeners: list[tuple[socket.socket, bool]], log) -> None:
        super().__init__(opts, listeners, log)  # its wake pipe: a worker's accept, or a signal
        self.workers: dict[int, int] = {}  # pid -> slot
        self.table = mmap.mmap(-1, SLOT * opts["limit"])  # shared with every worker: who serves whom
        self.stop_r, self.stop_w = os.pipe()  # closed by the parent: idle workers leave

    def busy(self, slot: int) -> bool:
        return self.table[slot * SLOT] == 1

    def reaped(self) -> None:
        slots = dict(self.workers)
        for pid, status in forkserver.reap(self.workers):
            if pid in slots:
                self.table[slots[pid] * SLOT:(slots[pid] + 1) * SLOT] = bytes(SLOT)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) not in (signal.SIGTERM, signal.SIGKILL):
                self.log(3, f"worker {pid} died of signal {os.WTERMSIG(status)}")

    def run(self) -> int:
        self.catch_signals()
        for s, _ in self.listeners:
            s.setblocking(False)
        self.log(6, "listening on " + ", ".join(f"{forkserver._name(s)}{' (smtps)' if smtps else ''}"
                                                for s, smtps in self.listeners)
                 + f"; {self.opts['idle']} idle workers, {self.opts['limit']} at most")
        while True:
            self.reaped()
            if self.stopping:
                return self.drain()
            if forkserver.fingerprint() != self.code and forkserver.settled(self.wake_r, lambda: bool(self.stopping)):
                self.log(6, "the installed code changed: starting it, with the same sockets")
                os.close(self.stop_w)  # idle workers of the old code leave; busy ones finish their session
                forkserver.reexec(self.listeners)
            idle = sum(1 for slot in self.workers.values() if not self.busy(slot))
            while idle < self.opts["idle"] and len(self.workers) < self.opts["limit"]:
                self.spawn()
                idle += 1
            try:
                ready, _, _ = select.select([self.wake_r], [], [], 1.0)
            except InterruptedError:
                continue
            if ready:
                os.read(self.wake_r, 512)

    def spawn(self) -> None:
        slot = min(set(range(self.opts["limit"])) - set(self.workers.values()))
        pid = os.fork()
        if pid == 0:
            self.worker(slot)
        self.workers[pid] = slot

    def worker(self, slot: int) -> None:
        """In the forked worker: wait for a connection, serve it, exit; never returns."""
        try:
            for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # idle: nothing to lose
            os.close(self.wake_r)
            os.close(self.stop_w)
            conn, peer, smtps = self.wait()
            from .netlist import canonical_ip

            ip = canonical_ip(peer[0])
            name = ip.encode()[:SLOT - 2]
            self.table[slot * SLOT:slot * SLOT + 2 + len(name)] = bytes((1, len(name))) + name
            try:
                os.write(self.wake_w, b"a")  # the parent starts another idle worker
            except OSError:
                pass
            # Written before counting: two clients from one address at once each see the other, so the
            # limit is never passed (at worst both are refused and retry).
            same = sum(1 for i in range(self.opts["limit"]) if self.table[i * SLOT] == 1
                       and self.table[i * SLOT + 2:i * SLOT + 2 + self.table[i * SLOT + 1]] == name)
            busy = sum(1 for i in range(self.opts["limit"]) if self.table[i * SLOT] == 1)
            for s, _ in self.listeners:
                s.close()
            os.close(self.stop_r)
            os.close(self.wake_w)
            if same > self.opts["per_ip"]:
                self.log(6, f"refused {ip}: {same - 1} sessions from it already (--max-from-ip {self.opts['per_ip']})")
                forkserver.refuse(conn, ip)
                conn.close()
                os._exit(0)
            forkserver.session(conn, peer, smtps, self.opts["config"], busy, same, self.opts["per_ip"], self.log,
                               ended=lambda: self.table.__setitem__(slot * SLOT, 0))  # no longer counts
        except BaseException as exc:  # noqa: BLE001 - never back into the parent's loop
            try:
                self.log(2, f"worker failed: {exc!r}")
            finally:
                os._exit(111)
        os._exit(0)

    def wait(self) -> tuple[socket.socket, tuple, bool]:
        socks = {s.fileno(): (s, smtps) for s, smtps in self.listeners}
        while True:
            try:
                ready, _, _ = select.select([self.stop_r, *socks], [], [])
            except InterruptedError:
                continue
            if self.stop_r in ready:
                os._exit(0)  # stopping or upgrading: an idle worker just leaves
            if forkserver.fingerprint() != self.code:
                os._exit(0)  # an upgrade: the client waits for a worker of the new code (the parent re-executes)
            for fd in ready:
                try:
                    conn, peer = socks[fd][0].accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # another worker took it
                return conn, peer, socks[fd][1]

    def drain(self) -> int:
        os.close(self.stop_w)
        for s, _ in self.listeners:
            s.close()
        busy = sum(1 for slot in self.workers.values() if self.busy(slot))
        self.log(6, f"stopping: {busy} session(s) running, {self.opts['shutdown_timeout']:g}s to finish")
        return forkserver.finish(self.workers, self.reaped, self.wake_r, self.stopping + self.opts["shutdown_timeout"])


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    started = forkserver.start(opts, "qpsmtpd-prefork")
    if isinstance(started, int):
        return started
    if opts["renice"]:
        try:
            os.nice(-opts["renice"])  # qpsmtpd's: the parent before its workers
        except OSError:
            pass
    return Pool(opts, *started).run()
