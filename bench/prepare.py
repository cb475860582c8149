"""Setting the benchmark up: the clean venv, the configs and plugin dirs of each row, the local DNS server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client import make_message
from common import CONFIGS, DNSBL_ZONE, DNS_RECORDS, FULL, HERE, ORACLE, QP_PLUGINS, QUICK, RHSBL_ZONE, ROOT, SETS, STUB_HOOKS, asks_dns, load_dnsserver, log, port53_free, strace_destinations

class Setup:
    """Everything a run needs before it measures; measure.Bench adds the measuring."""

    def __init__(self, opts) -> None:
        self.opts = opts
        self.p = dict(QUICK if opts.quick else FULL)
        if opts.reps:
            self.p["reps"] = opts.reps
        if opts.sizes:
            self.p["sizes_mib"] = [int(x) for x in opts.sizes.split(",")]
            self.p["qp_sizes_mib"] = [x for x in self.p["sizes_mib"] if x in self.p["qp_sizes_mib"] or x <= 100]
        if opts.no_1g:
            self.p["sizes_mib"] = [s for s in self.p["sizes_mib"] if s < 1024]
            self.p["qp_sizes_mib"] = [s for s in self.p["qp_sizes_mib"] if s < 1024]
        self.out = Path(opts.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="qpsmtpd-bench-", dir=opts.work))
        self.notes: list[str] = []
        self.results: dict = {"latency": {}, "messages": {}, "xinetd": {}, "profiles": [], "meta": {}}
        self.qp_available = self._qp_available()
        self.sets = set(opts.sets.split(",")) if opts.sets else set(SETS) - ({"e"} if opts.quick else set())
        if not self.sets <= set(SETS):
            raise SystemExit(f"--sets: choose from {','.join(SETS)}")
        self.dns = self.dns_qp = None
        self.qp_netns: list[str] | None = None
        self.c_qp_why = "qpsmtpd not installed" if not self.qp_available else None
        self.c_why = None
        self.started = time.monotonic()
        self.load_start = os.getloadavg()

    # Set-up -----------------------------------------------------------------------------------
    def _qp_available(self) -> bool:
        launcher = ORACLE / "bin" / "qpsmtpd-stdio"
        ok = launcher.is_file() and Path("/usr/share/perl5/Qpsmtpd.pm").is_file() and QP_PLUGINS.is_dir()
        if not ok:
            self.notes.append("qpsmtpd 0.94 not installed (apt-get install qpsmtpd libnet-ip-perl) or oracle launcher "
                              f"missing at {launcher}: its columns are skipped.")
        return ok

    def child_env(self, **extra) -> dict:
        """What tcpserver or xinetd would give: no PYTHON* variables, the TCP* variables of the connection."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TCPREMOTEIP": "192.0.2.10", "TCPREMOTEPORT": "40000",
               "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": "25", "TCPLOCALHOST": "mx.example.test"}
        env.update(extra)
        return env

    def setup_helper(self) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        exe = self.work / "spawn_rss"
        if cc:
            r = subprocess.run([cc, "-O2", "-o", str(exe), str(HERE / "spawn_rss.c")], capture_output=True, text=True)
            if r.returncode == 0:
                self.helper = [str(exe)]
                return
            log(f"cc failed: {r.stderr.strip()}")
        self.helper = [sys.executable, str(HERE / "spawn_rss.py")]
        self.notes.append("No C compiler: processes were spawned through bench/spawn_rss.py, so every peak RSS "
                          "includes that Python helper's own (about 8-10 MB): read them as upper bounds.")

    def setup_venv(self) -> None:
        """A clean venv (no .pth files) with the project, and the argv the superserver would run."""
        venv = Path(self.opts.venv).resolve() if self.opts.venv else HERE / ".venv"
        base = self.opts.python or shutil.which("python3") or sys.executable
        py = venv / "bin" / "python"
        mode = self.opts.install
        if mode == "auto":
            mode = "wheel" if (ROOT / "pyproject.toml").is_file() else "checkout"
        stamp = venv / ".bench-base"
        want = f"{os.path.realpath(base)} {mode}"
        if not py.exists() or not stamp.exists() or stamp.read_text().strip() != want:
            log(f"creating venv {venv} from {base} ({mode})")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, env=self.build_env())
            stamp.write_text(want + "\n")
        self.venv, self.py = venv, str(py)
        if mode in ("wheel", "editable"):
            cmd = [base, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--force-reinstall",
                   "--no-warn-script-location"]
            cmd += ["-e", str(ROOT)] if mode == "editable" else [str(ROOT)]
            log(f"installing the project into the venv ({mode})")
            r = subprocess.run(cmd, capture_output=True, text=True, env=self.build_env())
            if r.returncode != 0:
                log(r.stdout + r.stderr)
                raise SystemExit(f"pip install into {venv} failed")
            script = venv / "bin" / "in.qpsmtpd"
            if not script.exists():
                # No console script declared: install bin/in.qpsmtpd as pip's `scripts=` would.
                text = (ROOT / "bin" / "in.qpsmtpd").read_text()
                script.write_text("#!" + str(py) + "\n" + text.split("\n", 1)[1])
                script.chmod(0o755)
                self.notes.append("pyproject declares no `in.qpsmtpd` script: the bench copied bin/in.qpsmtpd into "
                                  "the venv (shebang = venv python).")
            self.server_argv = [str(script)]
        else:
            self.server_argv = [str(py), str(ROOT / "bin" / "in.qpsmtpd")]
        self.install_mode = mode
        site = list(venv.glob("lib/python*/site-packages"))
        pth = sorted(p.name for s in site for p in s.glob("*.pth"))
        self.results["meta"].update(install_mode=mode, venv=str(venv), base_python=base, pth_files=pth,
                                    python_version=subprocess.run([str(py), "-c", "import sys;print(sys.version.split()[0])"],
                                                                  capture_output=True, text=True).stdout.strip())
        if pth:
            self.notes.append(f"The venv's site-packages has .pth files, run at every start: {', '.join(pth)}.")

    def build_env(self) -> dict:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    # Config dirs --------------------------------------------------------------------------------
    def make_config(self, name: str, server: str, plugin_lines: list[str], extra_plugin_dir: Path | None = None,
                    copy_from: Path | None = None) -> Path:
        cfg = self.work / "config" / f"{name}-{server}"
        if cfg.exists():
            shutil.rmtree(cfg)
        if copy_from:
            shutil.copytree(copy_from, cfg)
        else:
            cfg.mkdir(parents=True)
        if copy_from:
            # Keep the sample's own files (loglevel, databytes, ...); only make our recipients local.
            with open(cfg / "rcpthosts", "a") as fh:
                fh.write("\nexample.test\n")
            shutil.copy(CONFIGS / "common" / "me", cfg / "me")
        else:
            for f in (CONFIGS / "common").iterdir():
                shutil.copy(f, cfg / f.name)
        spool = self.work / f"spool-{server}"
        spool.mkdir(mode=0o700, exist_ok=True)
        spool.chmod(0o700)  # qpsmtpd warns (a log line per session) about any other mode
        (cfg / "spool_dir").write_text(f"{spool}\n")
        dirs = []
        if extra_plugin_dir:
            dirs.append(str(extra_plugin_dir))
        if server == "qp":
            dirs.append(str(QP_PLUGINS))
        if dirs:
            (cfg / "plugin_dirs").write_text("\n".join(dirs) + "\n")
        elif (cfg / "plugin_dirs").exists():
            (cfg / "plugin_dirs").unlink()
        (cfg / "plugins").write_text("\n".join(plugin_lines) + "\n")
        return cfg

    def maildir(self, name: str, server: str) -> Path:
        return self.work / "maildirs" / f"{name}-{server}"

    def plugin_set_lines(self, template: str, name: str, server: str, trivial: int = 0) -> list[str]:
        text = (CONFIGS / "sets" / template).read_text()
        lines = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line == "{TRIVIAL}":
                lines += [f"bench_trivial_{i:02d}" for i in range(1, trivial + 1)]
                continue
            line = line.replace("{SPF}", "spf" if server == "py" else "sender_permitted_from")
            lines.append(line.replace("{MAILDIR}", str(self.maildir(name, server))))
        return lines

    def py_plugin_exists(self, name: str) -> bool:
        return (ROOT / "plugins" / f"{name}.py").is_file()

    def prepare_plugin_dirs(self) -> None:
        """Trivial plugins for (d), and stubs for plugins of the 8-plugin set not written yet."""
        self.pdir_py = self.work / "plugins-py"
        self.pdir_qp = self.work / "plugins-qp"
        self.pdir_py.mkdir()
        self.pdir_qp.mkdir()
        tpy = (CONFIGS / "trivial_plugin.py").read_text()
        tpl = (CONFIGS / "trivial_plugin.pl").read_text()
        for i in range(1, max(self.p["plugin_counts"]) + 1):
            (self.pdir_py / f"bench_trivial_{i:02d}.py").write_text(tpy)
            (self.pdir_qp / f"bench_trivial_{i:02d}").write_text(tpl)
        self.substituted = []
        stub = (CONFIGS / "stub_plugin.py").read_text()
        for line in self.plugin_set_lines("sample8.plugins", "x", "py"):
            name = line.split()[0]
            if not self.py_plugin_exists(name):
                hooks = STUB_HOOKS.get(name)
                if hooks is None:
                    raise SystemExit(f"plugin {name} of the 8-plugin set is missing and has no stub")
                target = self.pdir_py / f"{name}.py"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(stub.replace("__HOOKS__", repr(hooks)))
                self.substituted.append(name)
        if self.substituted:
            self.notes.append("Not written yet, replaced in (b) by a stub that declines the same hooks: "
                              + ", ".join(self.substituted) + ". The bench uses the real plugin as soon as "
                              "plugins/<name>.py exists.")

    def build_configs(self) -> None:
        self.cfg: dict[tuple[str, str], Path] = {}
        servers = ["py"] + (["qp"] if self.qp_available else [])
        for server in servers:
            pdir = self.pdir_py if server == "py" else self.pdir_qp
            lines = self.plugin_set_lines("sample8.plugins", "b", server)
            self.cfg["b", server] = self.make_config("b", server, lines, pdir if server == "py" and self.substituted else None)
            for n in self.p["plugin_counts"]:
                lines = self.plugin_set_lines("trivial.plugins", f"d{n}", server, trivial=n)
                self.cfg[f"d{n}", server] = self.make_config(f"d{n}", server, lines, pdir)
        self.config_sample_lines = self.build_config_sample()

    def build_config_sample(self) -> list[str] | None:
        """(a): config.sample's own plugins file, with its queue pointed at a bench Maildir and DNS plugins left out."""
        sample = ROOT / "config.sample"
        if not (sample / "plugins").is_file():
            self.notes.append("(a) config.sample/plugins does not exist yet: (a) is not measured; (b) stands in for it.")
            return None
        lines, dropped, missing = [], [], []
        for raw in (sample / "plugins").read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name = line.split()[0]
            if asks_dns(line):
                dropped.append(line)
                continue
            if name.startswith("queue/"):
                line = f"queue/maildir {self.maildir('a', 'py')}"
            elif not self.py_plugin_exists(name):
                missing.append(name)
                continue
            lines.append(line)
        if not any(l.startswith("queue/") for l in lines):
            lines.append(f"queue/maildir {self.maildir('a', 'py')}")
        self.cfg["a", "py"] = self.make_config("a", "py", lines, copy_from=sample)
        if self.qp_available:
            qlines = [f"queue/maildir {self.maildir('a', 'qp')}" if l.startswith("queue/") else l for l in lines]
            if all((QP_PLUGINS / l.split()[0]).is_file() for l in qlines):
                self.cfg["a", "qp"] = self.make_config("a", "qp", qlines, copy_from=sample)
            else:
                self.notes.append("(a) has no qpsmtpd column: qpsmtpd 0.94 lacks some of its plugins.")
        note = ("(a) is config.sample as shipped (its loglevel, databytes...; `me` set and example.test added to "
                "rcpthosts) with its queue line pointed at a bench Maildir")
        if dropped:
            note += f"; DNS plugins left out (no DNS traffic may leave this machine; see (c)): {', '.join(dropped)}"
        if missing:
            note += f"; listed but not written yet, left out: {', '.join(missing)}"
        self.notes.append(note + ".")
        self.results["meta"]["config_sample_plugins"] = lines
        lv = [l.strip() for l in (sample / "loglevel").read_text().splitlines() if l.strip() and not l.startswith("#")] \
            if (sample / "loglevel").is_file() else []
        self.results["meta"]["config_sample_loglevel"] = lv[0] if lv else None
        return lines

    # (c): the DNS set against a local dnsmasq ----------------------------------------------------
    def setup_dns(self) -> None:
        """Start tests/support/dnsserver.py's dnsmasq with DNS_RECORDS on a free high port of 127.0.0.1 for qpsmtpd-stdio
        (config file dns_servers), and, for qpsmtpd, a second identical one on 127.0.0.1:53 (Net::DNS takes its
        nameservers from RES_NAMESERVERS, with no port). Each server's first (c) session runs under strace: (c)
        is only measured for a server whose every connect/send went to its local dnsmasq, which logged the
        expected queries."""
        try:
            mod = load_dnsserver()
        except Exception as exc:  # noqa: BLE001 - any failure only leaves (c) unmeasured
            self.c_why = f"tests/support/dnsserver.py could not be loaded: {exc}"
            return
        if mod.dnsmasq_path() is None:
            self.c_why = mod.SKIP_REASON
            return
        self.strace = shutil.which("strace")
        self.results["meta"]["dns_check"] = {}
        self.c_why = self.start_c_dns(mod, "py", "dns")
        if self.c_why or not self.qp_available:
            return
        # Net::DNS (qpsmtpd, Mail::SPF) takes its nameservers from /etc/resolv.conf, whose nameserver is off this
        # machine, and asks port 53 only. RES_NAMESERVERS cannot replace it: the oracle launcher runs under
        # perl -T, where that tainted value makes every plugin's query die ("Insecure dependency"). So each (c)
        # qpsmtpd process runs in a private mount namespace where /etc/resolv.conf is a bind mount of a file
        # naming 127.0.0.1 only (the helper that times it starts inside, so the set-up is not timed).
        resolv = self.work / "resolv.conf-qp"
        resolv.write_text("nameserver 127.0.0.1\n")
        ns = [shutil.which("unshare") or "unshare", "-m", "sh", "-c",
              'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]
        if os.getuid() != 0:
            self.c_qp_why = "not run: Net::DNS asks port 53 only, and binding 127.0.0.1:53 needs root"
        elif not port53_free():
            self.c_qp_why = "not run: 127.0.0.1:53 is in use here, and Net::DNS asks port 53 only"
        elif not self.strace:
            self.c_qp_why = "not run: without strace the bench cannot verify that no query leaves this machine"
        elif subprocess.run(ns + ["cat", "/etc/resolv.conf"], capture_output=True, text=True).stdout != resolv.read_text():
            self.c_qp_why = "not run: could not give qpsmtpd a private /etc/resolv.conf (unshare -m, mount --bind)"
        else:
            self.qp_netns = ns
            why = self.start_c_dns(mod, "qp", "dns_qp", port=53)
            if why:
                self.c_qp_why = "not run: " + why

    def start_c_dns(self, mod, server: str, attr: str, **kwargs) -> str | None:
        """(c)'s dnsmasq for `server` (kept in self.<attr>, stopped by run()), its config, and the check that
        the server asks it: None, or why (c) is not measured for that server."""
        try:
            setattr(self, attr, mod.DNSServer(self.work / f"dns-{server}", DNS_RECORDS, log_queries=True,
                                              **kwargs).start())
        except Exception as exc:  # noqa: BLE001 - any failure only leaves (c) unmeasured
            where = " on 127.0.0.1:53" if kwargs.get("port") == 53 else ""
            return f"dnsmasq{where} did not start: {str(exc)[:200]}"
        self.build_c_config(server)
        ok, why = self.verify_dns(server, getattr(self, attr))
        if not ok:
            del self.cfg["c", server]
            return why
        return None

    def build_c_config(self, server: str) -> None:
        pdir = self.pdir_py if server == "py" and self.substituted else None
        cfg = self.make_config("c", server, self.plugin_set_lines("dns.plugins", "c", server), pdir)
        (cfg / "dnsbl_zones").write_text(DNSBL_ZONE + "\n")
        (cfg / "rhsbl_zones").write_text(RHSBL_ZONE + "\n")
        if server == "py":
            (cfg / "dns_servers").write_text(self.dns.servers_line + "\n")
        self.cfg["c", server] = cfg

    def verify_dns(self, server: str, dnsserver) -> tuple[bool, str]:
        """One (c) session, traced: did every DNS query reach `dnsserver`, and nothing go anywhere else?"""
        want = f"127.0.0.1:{dnsserver.port}"
        qlog = dnsserver.directory / "dnsmasq-main.log"  # the server asked (log_text() adds its helpers' logs)
        log_before = qlog.stat().st_size
        trace = self.work / f"strace-c-{server}.txt"
        prefix = [self.strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace)] \
            if self.strace else None
        res = self.one_session(server, self.cfg["c", server], ["bob@example.test"], make_message(2048), prefix=prefix)
        self.clean_maildirs()
        expected = {f"10.2.0.192.{DNSBL_ZONE}", f"example.org.{RHSBL_ZONE}", "10.2.0.192.in-addr.arpa", "example.org",
                    "client.example.test"}
        deadline = time.monotonic() + 3  # dnsmasq writes its log a moment after it answers
        while True:
            queries = re.findall(r"query\[(\w+)\] (\S+) from 127\.0\.0\.1",
                                 qlog.read_bytes()[log_before:].decode(errors="replace"))
            names = {n.lower() for _, n in queries}
            if expected <= names or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        dests = strace_destinations(trace) if self.strace else []
        elsewhere = sorted({d for d in dests if d != want})
        check = {"dnsmasq": want, "queries_logged": len(queries), "names": sorted(names),
                 "missing": sorted(expected - names), "strace": bool(self.strace),
                 "destinations": sorted(set(dests)), "elsewhere": elsewhere, "session_error": res["error"]}
        self.results["meta"]["dns_check"][server] = check
        if res["error"]:
            return False, f"the traced (c) session failed: {res['error']}"
        if elsewhere:
            return False, f"the traced (c) session sent to {', '.join(elsewhere)}, not only to {want}"
        if expected - names:
            return False, f"dnsmasq on {want} did not log queries for {', '.join(sorted(expected - names))}"
        how = (f"strace of its first session: every connect/send went to {want} ({len(dests)} calls)"
               if self.strace else "no strace here: only dns_servers and the dnsmasq log vouch for it")
        self.notes.append(f"(c) {'qpsmtpd-stdio' if server == 'py' else 'qpsmtpd 0.94'}: DNS answered by a local dnsmasq "
                          f"on {want} (tests/support/dnsserver.py), which logged {len(queries)} queries in the checked session; "
                          f"{how}.")
        return True, ""

    # Spawning -----------------------------------------------------------------------------------
