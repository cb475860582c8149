"""(6) Sessions/s by deployment mode, with Postfix's smtp-source as the client, in one run.

Rows, each on a loopback high port started here and stopped by PID, all with
the 8-plugin set (b) delivering into a Maildir, and the MX set (e) when it
was measured in this run:
  - in.qpsmtpd under xinetd (a process per connection);
  - our qpsmtpd-forkserver and qpsmtpd-prefork (from the bench venv);
  - Debian's qpsmtpd-forkserver and qpsmtpd-prefork (Perl, qpsmtpd 0.94), same plugins;
  - Postfix's smtpd, a private instance delivering into a Maildir (virtual).

smtp-source runs `-m N -s C` (N sessions of one 2 KB message, C at once), at
concurrency 8 and 16. Sessions/s is N over its wall time; CPU per session is
the growth of the server's own CPU and its reaped children's
(/proc/PID/stat utime+stime+cutime+cstime) over N. For Postfix, whose
master does not reap smtpd between sessions, and Debian's prefork, whose
children serve up to 100 sessions before they are reaped, CPU is not shown.

Memory, sampled every 50 ms during the first run at each concurrency from
/proc/PID/smaps_rollup: the parent's peak RSS, and for the processes under it
(its sessions, workers or xinetd's in.qpsmtpd) the peak RSS of one and the
peak of its private memory (what a fork really costs; RSS counts the pages it
shares with the parent too).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from client import free_port, wait_listening
from common import ORACLE, QP_PLUGINS, ROOT, load_support, log, stats

TICK = os.sysconf("SC_CLK_TCK")
CONCURRENCY = (8, 16)


def tree_cpu(pid: int) -> float:
    """Seconds of CPU of `pid` and of the children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, private) in kB of one process; (0, 0) when it has gone."""
    rss = private = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == "Rss":
                rss = int(value.split()[0])
            elif name in ("Private_Clean", "Private_Dirty"):
                private += int(value.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return rss, private


class MemorySampler(threading.Thread):
    """Peaks of the parent `pid` and of any one process under it."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.parent_kb = self.child_kb = self.child_private_kb = 0

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.parent_kb = max(self.parent_kb, _rollup(self.pid)[0])
            parents = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                    except (OSError, ValueError, IndexError):
                        continue
            tree, grew = {self.pid}, True
            while grew:  # descendants: xinetd's children make sessions of their own (setsid)
                more = {pid for pid, ppid in parents.items() if ppid in tree} - tree
                tree |= more
                grew = bool(more)
            for pid in tree - {self.pid}:
                rss, private = _rollup(pid)
                self.child_kb = max(self.child_kb, rss)
                self.child_private_kb = max(self.child_private_kb, private)

    def stop(self) -> dict:
        self.done.set()
        self.join()
        return {"parent_kb": self.parent_kb, "child_kb": self.child_kb, "child_private_kb": self.child_private_kb}


def smtp_source(port: int, sessions: int, concurrency: int, size: int = 2048) -> tuple[float, str]:
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    t0 = time.monotonic()
    try:
        r = subprocess.run([exe, "-c", "-l", str(size), "-m", str(sessions), "-s", str(concurrency), "-f",
                            "sender@example.org", "-t", "bob@example.test", "-S", "bench", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60 + sessions)
    except subprocess.TimeoutExpired:
        return time.monotonic() - t0, f"smtp-source timed out after {60 + sessions} s"
    wall = time.monotonic() - t0
    problem = "" if r.returncode == 0 and "error" not in r.stderr.lower() else (r.stderr.strip() or f"exit {r.returncode}")[:200]
    return wall, problem


class Daemon:
    """One server under test: start() -> the PID whose CPU is counted, stop()."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict, cwd: str, logfile: Path, maildir: Path,
                 cpu: bool = True):
        self.name, self.argv, self.port, self.env, self.cwd, self.logfile, self.cpu = name, argv, port, env, cwd, logfile, cpu
        self.maildir = maildir  # where every session's message must land
        self.proc: subprocess.Popen | None = None

    def delivered(self) -> int:
        return sum(len(files) for path, _, files in os.walk(self.maildir) if os.path.basename(path) == "new")

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                     stdout=open(self.logfile, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_listening(self.port, self.proc, 30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def daemons(b, cfg_key: str) -> list[Daemon]:
    """The servers to compare for the plugin set `cfg_key` ("b", or "e-all" for the MX set)."""
    out = []
    cfg = b.cfg["b", "py"] if cfg_key == "b" else b.mx_cfg
    maildir = b.maildir("b" if cfg_key == "b" else "e-all", "py")
    env = b.child_env()
    for k in ("TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT", "TCPLOCALHOST"):
        env.pop(k)
    xinetd = shutil.which("xinetd") or ("/usr/sbin/xinetd" if os.path.exists("/usr/sbin/xinetd") else None)
    if xinetd:
        port = free_port()
        xdir = b.work / f"daemons-xinetd-{cfg_key}"
        xdir.mkdir(exist_ok=True)
        argv = b.server_argv + ["--config", str(cfg)]
        extra = "TCPREMOTEHOST=client.example.test" if cfg_key != "b" else ""
        (xdir / "xinetd.conf").write_text(f"""defaults
{{
}}
service qpbench
{{
    type = UNLISTED
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    bind = 127.0.0.1
    port = {port}
    flags = NAMEINARGS
    server = {argv[0]}
    server_args = {' '.join(argv)}
    env = PATH=/usr/local/bin:/usr/bin:/bin {extra}
    instances = UNLIMITED
    per_source = UNLIMITED
    cps = 100000 1
}}
""")
        out.append(Daemon("in.qpsmtpd under xinetd", [xinetd, "-f", str(xdir / "xinetd.conf"), "-dontfork"], port,
                          {"PATH": "/usr/sbin:/usr/bin:/bin"}, str(b.work), xdir / "xinetd.log", maildir))
    port = free_port()
    out.append(Daemon("qpsmtpd-forkserver (ours)", [str(b.venv / "bin" / "qpsmtpd-forkserver"), "--config", str(cfg),
                                                     "-l", f"127.0.0.1:{port}", "-c", "64", "-m", "64"],
                      port, env, str(b.work), b.work / f"daemons-forkserver-{cfg_key}.log", maildir))
    port = free_port()
    out.append(Daemon("qpsmtpd-prefork (ours)", [str(b.venv / "bin" / "qpsmtpd-prefork"), "--config", str(cfg),
                                                  "--listen-address", f"127.0.0.1:{port}", "--children", "64",
                                                  "--idle-children", "16", "--max-from-ip", "0"],
                      port, env, str(b.work), b.work / f"daemons-prefork-{cfg_key}.log", maildir))
    if cfg_key == "b" and b.qp_available:
        qcfg = b.cfg["b", "qp"]
        qenv = dict(env, QPSMTPD_CONFIG=str(qcfg))
        perl = "/usr/bin/qpsmtpd-forkserver"
        if os.path.exists(perl):
            port = free_port()
            out.append(Daemon("qpsmtpd-forkserver (Debian's, Perl)", [perl, "-l", "127.0.0.1", "-p", str(port), "-c",
                                                                      "64", "-m", "64", "-u", "root"],
                              port, qenv, str(qcfg), b.work / "daemons-qp-forkserver.log", b.maildir("b", "qp")))
        perl = "/usr/bin/qpsmtpd-prefork"  # (not --renice-parent: under perl -T its value kills every child)
        if os.path.exists(perl):
            port = free_port()
            out.append(Daemon("qpsmtpd-prefork (Debian's, Perl)", [perl, "--listen-address", "127.0.0.1", "--port",
                                                                   str(port), "--children", "64", "--idle-children", "16",
                                                                   "--max-from-ip", "0", "--user", "root"],
                              port, qenv, str(qcfg), b.work / "daemons-qp-prefork.log", b.maildir("b", "qp"), cpu=False))
    return out


def measure_daemons(b) -> None:
    if not (shutil.which("smtp-source") or os.path.exists("/usr/sbin/smtp-source")):
        b.notes.append("(6) smtp-source not installed (apt-get install postfix): deployment modes not measured.")
        return
    sessions = 40 if b.opts.quick else 400
    rows: dict = {}
    sets = [("b", "the 8-plugin set (b)")] + ([("e-all", "the MX set (e)")] if getattr(b, "mx_cfg", None) else [])
    postfix = None
    try:
        downstream = load_support("downstream")
        postfix = downstream.Postfix({"bench": ""}).start()
    except BaseException as exc:  # noqa: BLE001 - pytest.skip inside is a BaseException
        b.notes.append(f"(6) no Postfix row: {str(exc)[:200]}")
        postfix = None
    try:
        for key, label in sets:
            servers = daemons(b, key)
            if postfix is not None and key == "b":
                servers.append(Daemon("Postfix smtpd", [], postfix.ports["bench"], {}, "", Path(os.devnull),
                                      postfix.maildir, cpu=False))
            for server in servers:
                if server.argv:
                    try:
                        server.start()
                    except Exception as exc:  # noqa: BLE001
                        b.notes.append(f"(6) {server.name} did not start: {str(exc)[:200]}")
                        server.argv = []
                        continue
                try:
                    smtp_source(server.port, 4, 2)  # warm-up: caches, the greylisting triplet of (e)
                    if postfix is not None and server.maildir == postfix.maildir:
                        postfix.settle()
                    for conc in CONCURRENCY:
                        runs, memory = [], None
                        for i in range(1 if b.opts.quick else 3):
                            pid = server.proc.pid if server.proc else None
                            cpu0 = tree_cpu(pid) if pid and server.cpu else None
                            before = server.delivered()
                            sampler = MemorySampler(pid) if pid and i == 0 else None
                            if sampler:
                                sampler.start()
                            wall, problem = smtp_source(server.port, sessions, conc)
                            if sampler:
                                memory = sampler.stop()
                            cpu = (tree_cpu(pid) - cpu0) * 1000 / sessions if cpu0 is not None else None
                            if postfix is not None and server.maildir == postfix.maildir:
                                postfix.settle()  # its queue manager delivers after the 250
                            got = server.delivered() - before
                            if got != sessions:
                                problem = f"{got} of {sessions} delivered" + (f"; {problem}" if problem else "")
                            runs.append({"sessions_s": sessions / wall, "cpu_ms": cpu, "problem": problem})
                        log(f"(6) {label}, {server.name}, concurrency {conc}: "
                            + ", ".join(f"{r['sessions_s']:.0f}/s" for r in runs))
                        rows[f"{key}|{server.name}|{conc}"] = {
                            "sessions_s": stats([r["sessions_s"] for r in runs]),
                            "cpu_ms": stats([r["cpu_ms"] for r in runs if r["cpu_ms"] is not None]),
                            "problems": sorted({r["problem"] for r in runs if r["problem"]}), "memory": memory}
                finally:
                    if server.argv:
                        server.stop()
    finally:
        if postfix is not None:
            postfix.stop()
    b.results["daemons"] = {"sessions": sessions, "rows": rows, "sets": dict(sets)}


def render_daemons(R: dict) -> list[str]:
    D = R.get("daemons")
    out = ["## 6. Sessions/s by deployment mode (smtp-source, one 2 KB message per session)", ""]
    if not D:
        return out + ["Not measured in this run (see the notes).", ""]
    out += [f"{D['sessions']} sessions a run; median (min–max) of the runs. CPU per session: the server and the "
            "children it reaped. Memory: peak RSS of the parent, and of one process under it (RSS / private).", "",
            "| plugin set | server | concurrency | sessions/s | ×xinetd | CPU ms/session | parent MB | child MB (RSS / private) | problems |",
            "|---|---|---|---|---|---|---|---|---|"]
    for key, e in D["rows"].items():
        cfg, name, conc = key.split("|")
        base = D["rows"].get(f"{cfg}|in.qpsmtpd under xinetd|{conc}")
        s = e["sessions_s"]
        ratio = f"{s['median'] / base['sessions_s']['median']:.2f}x" if s and base and base["sessions_s"] else "—"
        cpu = e["cpu_ms"]
        mem = e.get("memory") or {}
        parent = f"{mem['parent_kb'] / 1024:.1f}" if mem.get("parent_kb") else "—"
        child = f"{mem['child_kb'] / 1024:.1f} / {mem['child_private_kb'] / 1024:.1f}" if mem.get("child_kb") else "—"
        out.append(f"| {D['sets'][cfg]} | {name} | {conc} | "
                   + (f"{s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f})" if s else "—")
                   + f" | {ratio} | " + (f"{cpu['median']:.1f}" if cpu else "—")
                   + f" | {parent} | {child} | {'; '.join(e['problems']) or '—'} |")
    out.append("")
    return out
