"""Measuring: spawning the servers, the session latency rows, big messages, xinetd, profiles."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from client import client_session, free_port, load_run, make_message, wait_listening, write_message_file
from common import BenchError, HERE, MiB, ORACLE, PERL, ROOT, load_support, log, stats, summarize
from daemons import measure_daemons
from mxset import measure_mx
from prepare import Setup
from report import evaluate, importtime_report, importtime_table, make_plot, render

class Bench(Setup):
    """One benchmark run: Setup prepares it, these methods measure, report.py writes the results."""

    def argv_for(self, server: str, cfg: Path | None) -> tuple[list[str], dict, str]:
        # (c): TCPREMOTEHOST as tcpserver sets it when it resolved the client (qpsmtpd's fcrdns skips its DNS
        # checks when remote_host is "[IP]"); both servers still do the PTR and A lookups themselves.
        extra = {"TCPREMOTEHOST": "client.example.test"} if cfg is not None and cfg.name.startswith(("c-", "e-")) else {}
        if server == "py":
            return self.server_argv + ["--config", str(cfg)], self.child_env(**extra), str(self.work)
        if server == "qp":
            return [str(ORACLE / "bin" / "qpsmtpd-stdio")], self.child_env(QPSMTPD_CONFIG=str(cfg), **extra), str(cfg)
        if server == "pass":
            return [self.py, "-c", "pass"], self.child_env(), str(self.work)
        if server == "perl":
            return [PERL, "-e", "1"], self.child_env(), str(self.work)
        raise ValueError(server)

    def spawn(self, argv, env, cwd, stdin, stdout, stderr, outer: list[str] | None = None):
        """Run argv under the RSS/time helper; `outer` (if any) runs the helper itself (untimed)."""
        r, w = os.pipe()
        proc = subprocess.Popen((outer or []) + self.helper + [str(w)] + argv, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                                cwd=cwd, pass_fds=(w,), close_fds=True)
        os.close(w)
        return proc, r

    def reap(self, proc, r) -> dict:
        with os.fdopen(r, "rb") as fh:
            line = fh.read().decode().split()
        proc.wait()
        if len(line) != 5:
            raise BenchError(f"spawn helper failed (exit {proc.returncode})")
        wall, rss, code, ut, st = map(int, line)
        return {"wall_ms": wall / 1e6, "rss_kb": rss, "exit": code, "user_ms": ut / 1e3, "sys_ms": st / 1e3}

    def one_session(self, server: str, cfg: Path | None, rcpts: list[str], message, n_msgs: int = 1,
                    timeout: float = 120.0, extra_args: list[str] | None = None,
                    prefix: list[str] | None = None, final: int = 250) -> dict:
        argv, env, cwd = self.argv_for(server, cfg)
        if extra_args:
            argv = argv[:1] + extra_args + argv[1:]
        if prefix:
            argv = prefix + argv
        parent, child = socket.socketpair()
        logf = open(self.work / f"stderr-{server}.log", "ab")
        try:
            outer = self.qp_netns if server == "qp" and cfg is not None and cfg.name.startswith("c-") else None
            proc, r = self.spawn(argv, env, cwd, child, child, logf, outer)
        finally:
            child.close()
            logf.close()
        parent.settimeout(timeout)
        error, data_secs = None, None
        try:
            if server in ("py", "qp"):
                data_secs = client_session(parent, rcpts, message, n_msgs, final)
        except (BenchError, OSError) as exc:
            error = str(exc)
        finally:
            parent.close()
        res = self.reap(proc, r)
        if error is None and res["exit"] != 0 and server in ("py", "qp"):
            error = f"exit status {res['exit']}"
        res["error"] = error
        res["data_secs"] = data_secs
        return res

    def clean_maildirs(self) -> None:
        root = self.work / "maildirs"
        if root.exists():
            for d in root.glob("*/new"):
                for f in d.iterdir():
                    f.unlink()

    # 1, 2, 5: latency and RSS over a socketpair ---------------------------------------------------
    def latency(self) -> None:
        msg = make_message(2048)
        variants = [("pass", "pass", None, 1), ("perl", "perl", None, 1)]
        servers = ["py"] + (["qp"] if self.qp_available else [])
        for server in ("py", "qp"):
            if ("a", server) in self.cfg and "a" in self.sets:
                variants.append((f"a-{server}", server, self.cfg["a", server], 1))
        for server in servers:
            # (b) with one recipient is also (c)'s baseline ("<= 40 ms over (b)").
            for n in self.p["rcpt_counts"] if "b" in self.sets else [1] if "c" in self.sets else []:
                variants.append((f"b-r{n}-{server}", server, self.cfg["b", server], n))
            if ("c", server) in self.cfg:
                variants.append((f"c-{server}", server, self.cfg["c", server], 1))
            for n in self.p["plugin_counts"] if "d" in self.sets else []:
                variants.append((f"d{n}-{server}", server, self.cfg[f"d{n}", server], 1))
        if self.install_mode != "checkout" and "b" in self.sets:
            variants.append(("b-r1-checkout", "checkout", self.cfg["b", "py"], 1))
        log(f"session latency: {len(variants)} variants x {self.p['reps']} runs (+1 warm-up each), interleaved")
        samples: dict[str, list[dict]] = {v[0]: [] for v in variants}
        for rep in range(self.p["reps"] + 1):
            for key, server, cfg, n in variants:
                rcpts = [f"bob{i}@example.test" for i in range(n)]
                if server == "checkout":
                    saved = self.server_argv
                    self.server_argv = [self.py, str(ROOT / "bin" / "in.qpsmtpd")]
                    try:
                        res = self.one_session("py", cfg, rcpts, msg)
                    finally:
                        self.server_argv = saved
                else:
                    res = self.one_session(server, cfg, rcpts, msg)
                if rep > 0 or res["error"]:  # the first round only warms the bytecode and page caches
                    samples[key].append(res)
            self.clean_maildirs()
        for key, runs in samples.items():
            self.results["latency"][key] = summarize(runs)
        for server, dnsserver in (("py", self.dns), ("qp", self.dns_qp)):
            if dnsserver is not None and f"c-{server}" in samples:
                qlog = (dnsserver.directory / "dnsmasq-main.log").read_text(errors="replace")
                n = len(re.findall(r"query\[\w+\] \S+ from 127\.0\.0\.1", qlog))
                self.results["meta"]["dns_check"][server]["queries_in_run"] = n
                self.notes.append(f"(c) {'qpsmtpd-stdio' if server == 'py' else 'qpsmtpd 0.94'}: its dnsmasq on "
                                  f"127.0.0.1:{dnsserver.port} logged {n} queries in all, over "
                                  f"{len(samples[f'c-{server}']) + 2} (c) sessions (the traced one and the warm-up included).")

    def daemons(self) -> None:
        """(6): sessions/s by deployment mode (bench/daemons.py)."""
        measure_daemons(self)

    def plugin_loads(self) -> None:
        """(1f): what loading each shipped plugin imports and costs, against its docstring (bench/plugincost.py)."""
        from plugincost import report

        lines, bad = report(1 if self.opts.quick else 5, self.py)
        self.results["plugin_loads"] = {"lines": lines, "differ": bad}
        if bad:
            self.notes.append(f"(1f) {bad} plugin docstring(s) name other imports at load than were measured: MISSED.")

    def mx(self) -> None:
        """(e): the MX set, when asked for (bench/mxset.py)."""
        if "e" in self.sets:
            measure_mx(self)

    # 2, 3: big messages: RSS and DATA throughput -------------------------------------------------
    def messages(self) -> None:
        free = shutil.disk_usage(self.work).free
        sizes = list(self.p["sizes_mib"])
        if 1024 in sizes and free < 6 * 1024 * MiB:
            sizes.remove(1024)
            self.notes.append(f"1 GiB message skipped: only {free / 2**30:.1f} GiB free under {self.work}.")
        servers = ["py"] + (["qp"] if self.qp_available else [])
        for size in sizes:
            path = self.work / f"msg-{size}MiB.eml"
            write_message_file(path, size * MiB)
            nbytes = path.stat().st_size
            reps = self.p["tput_reps"] if size < 1024 else max(1, min(3, self.p["tput_reps"]))
            entry = {"size_mib": size, "bytes": nbytes}
            runs: dict[str, list] = {s: [] for s in servers + ["cat", "dd"]}
            log(f"{size} MiB message: {reps} runs each of " + ", ".join(runs))
            for rep in range(reps + (1 if size <= 10 else 0)):
                for server in servers:
                    if server == "qp" and size not in self.p["qp_sizes_mib"]:
                        continue
                    if server == "qp" and size >= 1024 and rep > 0:
                        continue  # one run: qpsmtpd takes long over a 1 GiB message
                    res = self.one_session(server, self.cfg["b", server], ["bob@example.test"], path,
                                           timeout=1800)
                    if not res["error"]:
                        res["mib_s"] = nbytes / MiB / res["data_secs"]
                    runs[server].append(res)
                    self.clean_maildirs()
                out = self.work / "copy.out"
                for tool, argv in (("cat", ["/bin/cat", str(path)]),
                                   ("dd", ["/bin/dd", f"if={path}", f"of={out}", "bs=1M", "conv=fsync", "status=none"])):
                    with open(out if tool == "cat" else os.devnull, "wb") as fh:
                        proc, r = self.spawn(argv, self.child_env(), str(self.work), subprocess.DEVNULL, fh, None)
                        res = self.reap(proc, r)
                    res["error"] = None if res["exit"] == 0 else f"exit {res['exit']}"
                    res["mib_s"] = nbytes / MiB / (res["wall_ms"] / 1e3)
                    runs[tool].append(res)
                    out.unlink()
            if size <= 10:  # small sizes: drop the warm-up round
                runs = {k: v[1:] if len(v) > 1 else v for k, v in runs.items()}
            for k, v in runs.items():
                entry[k] = summarize(v, rate=True)
            self.results["messages"][str(size)] = entry
            path.unlink()

    # 3b: hostile shapes of message: CPU against an ordinary message of the same size -----------
    def shapes(self) -> None:
        size = self.p["shape_mib"] * MiB
        plain = self.work / "msg-plain.eml"
        write_message_file(plain, size)
        cases = {"ordinary text": (plain, 250)}
        cases.update(load_support("shapes").shapes(size))
        reps = self.p["tput_reps"]
        runs: dict[str, list] = {name: [] for name in cases}
        log(f"message shapes of {self.p['shape_mib']} MiB: {reps} runs each of {len(cases)}")
        # (b)'s config with room for every shape, in a copy: the sections after this one use (b)'s own limit.
        cfg = self.cfg["b", "py"].with_name("b-shapes-py")
        shutil.copytree(self.cfg["b", "py"], cfg)
        (cfg / "databytes").write_text(f"{4 * size}\n")
        for _ in range(reps + 1):  # the first round warms the caches and is dropped
            for name, (message, code) in cases.items():
                runs[name].append(self.one_session("py", cfg, ["bob@example.test"], message, timeout=600, final=code))
                self.clean_maildirs()
        self.results["shapes"] = {"size_mib": self.p["shape_mib"], "codes": {name: c for name, (_, c) in cases.items()},
                                  "rows": {name: summarize(v[1:]) for name, v in runs.items()}}
        plain.unlink()

    # 4: under xinetd ---------------------------------------------------------------------------
    def xinetd(self) -> None:
        exe = shutil.which("xinetd") or ("/usr/sbin/xinetd" if os.path.exists("/usr/sbin/xinetd") else None)
        if not exe:
            self.notes.append("xinetd not installed (apt-get install xinetd): (4) skipped.")
            self.results["xinetd"] = {"skipped": "xinetd not installed"}
            return
        servers = ["py"] + (["qp"] if self.qp_available else [])
        ports = {s: free_port() for s in servers}
        xdir = self.work / "xinetd"
        xdir.mkdir()
        wrapper = xdir / "qpsmtpd-wrapper.sh"
        if "qp" in servers:
            cfg = self.cfg["b", "qp"]
            # As Debian's/RPM's in.qpsmtpd wrappers do: stderr (the socket under xinetd) goes to a log file.
            wrapper.write_text(f"#!/bin/sh\ncd {cfg} || exit 1\nQPSMTPD_CONFIG={cfg}\nexport QPSMTPD_CONFIG\n"
                               f"exec {ORACLE / 'bin' / 'qpsmtpd-stdio'} 2>>{self.work / 'stderr-qp.log'}\n")
            wrapper.chmod(0o755)
        env_line = "TCPREMOTEIP=192.0.2.10 TCPREMOTEPORT=40000 TCPLOCALIP=127.0.0.1 TCPLOCALPORT=25"
        services = []
        for s in servers:
            if s == "py":
                argv = self.server_argv + ["--config", str(self.cfg["b", "py"])]
            else:
                argv = [str(wrapper)]
            # NAMEINARGS: argv[0] is the full path, so a venv python finds its pyvenv.cfg.
            services.append(f"""service qpbench_{s}
{{
    type = UNLISTED
    id = qpbench_{s}
    socket_type = stream
    protocol = tcp
    wait = no
    user = root
    bind = 127.0.0.1
    port = {ports[s]}
    flags = NAMEINARGS
    server = {argv[0]}
    server_args = {' '.join(argv)}
    env = {env_line}
    instances = UNLIMITED
    per_source = UNLIMITED
    cps = 100000 1
}}
""")
        conf = xdir / "xinetd.conf"
        conf.write_text(f"defaults\n{{\n    log_type = FILE {xdir / 'xinetd.log'}\n    log_on_success =\n"
                        f"    log_on_failure =\n}}\n\n" + "\n".join(services))
        pidfile = xdir / "xinetd.pid"
        proc = subprocess.Popen([exe, "-f", str(conf), "-dontfork", "-pidfile", str(pidfile)],
                                env={"PATH": "/usr/sbin:/usr/bin:/bin"}, stdout=subprocess.DEVNULL,
                                stderr=open(xdir / "xinetd.stderr", "wb"))
        try:
            for s in servers:
                wait_listening(ports[s], proc, 10)
            msg = make_message(2048)
            workloads = [("sessions", 1), ("messages", self.p["big_msgs"])]
            out: dict = {}
            for conc in self.p["xinetd_conc"]:
                for wname, nmsg in workloads:
                    for s in servers:
                        out.setdefault(f"{wname}-c{conc}-{s}", [])
                    log(f"xinetd: concurrency {conc}, {nmsg} message(s)/session, {self.p['xinetd_reps']} x "
                        f"{self.p['xinetd_secs']}s each of {', '.join(servers)}")
                    for rep in range(self.p["xinetd_reps"]):
                        for s in servers:
                            r = load_run(ports[s], conc, self.p["xinetd_secs"], nmsg, msg)
                            out[f"{wname}-c{conc}-{s}"].append(r)
                            self.clean_maildirs()
            for key, runs in out.items():
                ok = [r for r in runs if r["done"] > 0]
                self.results["xinetd"][key] = {
                    "sessions_s": stats([r["sessions_s"] for r in ok]),
                    "messages_s": stats([r["messages_s"] for r in ok]),
                    "failed": sum(r["failed"] for r in runs), "done": sum(r["done"] for r in runs),
                    "errors": sorted({e for r in runs for e in r["errors"]})[:3]}
        finally:
            load_support("downstream").stop(proc)  # xinetd runs in the foreground (-dontfork): proc is it

    # Profiles ----------------------------------------------------------------------------------
    def profiles(self) -> None:
        """Where a (b) session's time goes: -X importtime (per-module medians of several runs) and cProfile."""
        msg = make_message(2048)
        cfg = self.cfg["b", "py"]
        script = self.server_argv[-1]
        raws = []
        for i in range(3 if self.opts.quick else 9):
            raw = self.work / f"importtime-{i}.raw"
            # -X importtime is written by the interpreter to fd 2.
            self.profile_run([self.py, "-X", "importtime", script, "--config", str(cfg)], raw, msg)
            raws.append(raw.read_text())
        pass_raws = []
        for i in range(len(raws)):
            r = subprocess.run([self.py, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                               env=self.child_env(), cwd=str(self.work))
            pass_raws.append(r.stderr)
        self.results["imports_pass"] = importtime_table(pass_raws)
        (self.out / "importtime-b.txt").write_text(importtime_report(raws))
        self.results["profiles"].append("importtime-b.txt")
        self.results["imports"] = importtime_table(raws)
        out = self.out / "cprofile-b.txt"
        self.profile_run([self.py, str(HERE / "profile_session.py"), str(out), script, "--config", str(cfg)], None, msg)
        self.results["profiles"].append(out.name)

    def profile_throughput(self, size_mib: int) -> None:
        path = self.work / f"msg-prof-{size_mib}.eml"
        write_message_file(path, size_mib * MiB)
        out = self.out / f"cprofile-data-{size_mib}MiB.txt"
        argv = [self.py, str(HERE / "profile_session.py"), str(out), self.server_argv[-1], "--config",
                str(self.cfg["b", "py"])]
        self.profile_run(argv, None, path)
        self.results["profiles"].append(out.name)
        path.unlink()
        self.clean_maildirs()

    def profile_run(self, argv, raw: Path | None, message) -> None:
        parent, child = socket.socketpair()
        errf = open(raw, "wb") if raw else open(self.work / "stderr-profile.log", "ab")
        proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=errf, env=self.child_env(), cwd=str(self.work))
        child.close()
        errf.close()
        parent.settimeout(600)
        try:
            client_session(parent, ["bob@example.test"], message)
        except (BenchError, OSError) as exc:
            log(f"profile run {argv}: {exc}")
            self.notes.append(f"A profile run failed: {exc} (the profile shows that session, not the one intended).")
        finally:
            parent.close()
        proc.wait()

    # Output --------------------------------------------------------------------------------------
    def run(self) -> int:
        log(f"work dir {self.work}; results to {self.out}")
        try:
            self.setup_helper()
            self.setup_venv()
            self.prepare_plugin_dirs()
            self.build_configs()
            if "c" in self.sets and "latency" not in self.opts.skip:
                self.setup_dns()
            steps = [("latency", self.latency), ("mx", self.mx), ("plugins", self.plugin_loads), ("messages", self.messages), ("shapes", self.shapes),
                     ("xinetd", self.xinetd), ("daemons", self.daemons), ("profiles", self.profiles)]
            for name, fn in steps:
                if name in self.opts.skip:
                    self.notes.append(f"--skip {name}: not measured in this run.")
                    continue
                t = time.monotonic()
                fn()
                log(f"{name} done in {time.monotonic() - t:.1f}s")
            targets = evaluate(self)
            if any(t["met"] is False and t["key"] == "throughput" for t in targets) and "messages" not in self.opts.skip:
                self.profile_throughput(10 if self.opts.quick else 100)
            self.results["targets"] = targets
            self.results["meta"].update(self.meta())
            self.results["notes"] = self.notes
            (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
            plot_note = None if self.opts.no_plot else make_plot(self.out)
            if plot_note:
                self.notes.append(plot_note)
            (self.out / "results.md").write_text(render(self))
            self.keep_logs()
            log(f"wrote {self.out / 'results.md'} in {time.monotonic() - self.started:.1f}s")
        finally:
            if getattr(self, "mx_set", None) is not None:
                self.mx_set.stop()
            for server in (self.dns, self.dns_qp):
                if server is not None:
                    server.stop()
            if self.opts.keep_work:
                log(f"work dir kept: {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        return 0

    def keep_logs(self) -> None:
        """The servers' stderr logs (the last 256 KiB of each) go to results/logs/, for failures."""
        logs = self.out / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir()
        for f in list(self.work.glob("stderr-*.log")) + list(self.work.glob("xinetd/*.log")) + list(self.work.glob("xinetd/*.stderr")):
            with open(f, "rb") as fh:
                fh.seek(max(0, f.stat().st_size - (256 << 10)))
                (logs / f.name).write_bytes(fh.read())

    def meta(self) -> dict:
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
        return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": "quick" if self.opts.quick else "full",
                "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
                "git": git.stdout.strip(), "reps": self.p["reps"], "helper": " ".join(self.helper),
                "server_argv": self.server_argv, "substituted": self.substituted,
                "elapsed_s": round(time.monotonic() - self.started, 1),
                "loadavg_start": [round(x, 2) for x in self.load_start],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()]}
