#!/usr/bin/env python3
"""What a per-connection qpsmtpd-stdio costs, measured side by side with its comparisons in one run.

    python3 bench/run.py            # full run (several minutes; needs ~4 GB of free disk for 1 GiB messages)
    python3 bench/run.py --quick    # proves the benchmark works (well under a minute; used by CI)

Writes bench/results/results.md (the table), results.json (every sample),
plot.png, and the profiles (importtime-*.txt, cprofile-*.txt). See bench/README.md.

Only the standard library is used here; the plot is drawn by bench/plot.py
with matplotlib (from this interpreter when it has it, else from a small
venv at bench/.venv-plot that this script makes).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = HERE / "configs"

# qpsmtpd 0.94 (Debian's package), driven one session per process by the oracle launcher.
ORACLE = Path(os.environ.get("QPSMTPD_ORACLE", ROOT.parent / "shared" / "qpsmtpd-oracle"))
QP_PLUGINS = Path("/usr/share/qpsmtpd/plugins")
PERL = "/usr/bin/perl"

MiB = 1 << 20
SENDER = "sender@example.org"
# Plugins that ask DNS: never run them here (the resolver is off this machine); (c) will measure them
# against a local DNS server. `helo` asks DNS only with `dns 1` (ours) or policy rfc/strict (qpsmtpd).
DNS_PLUGINS = {"dnsbl", "rhsbl", "fcrdns", "sender_permitted_from", "spf", "resolvable_fromhost", "uribl",
               "dmarc", "dkim", "dns_whitelist_soft"}


# (c): the test zones, served by tests/support/dnsserver.py's dnsmasq on 127.0.0.1. The bench's client (TCPREMOTEIP
# 192.0.2.10, sender@example.org) is listed nowhere, so sessions deliver; SPF passes; FCrDNS passes.
CLIENT_IP = "192.0.2.10"
DNS_RECORDS = [
    "local=/example.org/",                                  # the sender's domain: answered here, never forwarded
    'txt-record=example.org,"v=spf1 ip4:192.0.2.10 -all"',  # SPF for the sender domain
    "host-record=client.example.test,192.0.2.10",           # A, and PTR 10.2.0.192.in-addr.arpa (fcrdns)
    "host-record=2.0.0.127.dnsbl.test,127.0.0.2",           # RFC 5782 test point: the list itself works
    "host-record=test.rhsbl.test,127.0.0.2",
]
DNSBL_ZONE, RHSBL_ZONE = "dnsbl.test", "rhsbl.test"
SETS = ("a", "b", "c", "d")


def load_dnsserver():
    """tests/support/dnsserver.py (the tests' real dnsmasq fixture), loaded from its file: no copy of it here."""
    spec = importlib.util.spec_from_file_location("qpsmtpd_bench_dnsserver", ROOT / "tests" / "support" / "dnsserver.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def port53_free() -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", 53))
            except OSError:
                return False
    return True


def strace_destinations(path: Path) -> list[str]:
    """Every inet address (ip:port) a traced process connected or sent to, from `strace -e trace=...` output."""
    text = path.read_text(errors="replace")
    out = []
    for m in re.finditer(r"sin6?_port=htons\((\d+)\)[^}]*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")", text):
        out.append(f"{m.group(2) or m.group(3)}:{m.group(1)}")
    return out


def asks_dns(line: str) -> bool:
    words = line.split()
    if words[0] in DNS_PLUGINS:
        return True
    if words[0] == "helo":
        opts = dict(zip(words[1::2], words[2::2]))
        return opts.get("dns", "0") != "0" or opts.get("policy", "lenient") in ("rfc", "strict")
    return False


# Hooks a stub declines for a plugin of the 8-plugin set that is not written yet.
STUB_HOOKS = {
    "count_unrecognized_commands": ["unrecognized_command"],
    "relay": ["connect", "rcpt"],
    "dont_require_anglebrackets": ["mail_pre", "rcpt_pre"],
    "badmailfrom": ["mail"],
    "badrcptto": ["rcpt"],
    "headers": ["data_post"],
}

QUICK = dict(reps=3, rcpt_counts=[1, 10], plugin_counts=[0, 10, 30], sizes_mib=[1, 10], tput_reps=2,
             qp_sizes_mib=[1, 10], xinetd_conc=[1, 4, 16], xinetd_secs=0.5, xinetd_reps=1, big_msgs=5)
FULL = dict(reps=20, rcpt_counts=[1, 10, 100], plugin_counts=[0, 10, 30], sizes_mib=[1, 100, 1024], tput_reps=5,
            qp_sizes_mib=[1, 100, 1024], xinetd_conc=[1, 4, 16], xinetd_secs=5.0, xinetd_reps=3, big_msgs=10)


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "p25": q[0], "p75": q[2]}


# ----------------------------------------------------------------------------------------------
# The SMTP client side (blocking, one session over one socket)
# ----------------------------------------------------------------------------------------------
class ReplyReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise BenchError(f"connection closed; got {b''.join(lines)!r}")
                self.buf += data
            line, self.buf = self.buf.split(b"\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                text = b"\n".join(lines).decode("utf-8", "replace").strip()
                try:
                    return int(line[:3]), text
                except ValueError:
                    raise BenchError(f"bad reply {text!r}") from None

    def expect(self, code: int) -> None:
        got, text = self.reply()
        if got != code:
            raise BenchError(f"expected {code}, got {text!r}")


def client_session(sock: socket.socket, rcpts: list[str], message: bytes | Path, n_msgs: int = 1) -> float:
    """One pipelined session (RFC 2920 groups): EHLO | MAIL RCPT.. DATA | body . QUIT.

    Returns the seconds from the first body byte sent to the 250 after the final dot (of the last message).
    """
    rd = ReplyReader(sock)
    rd.expect(220)
    sock.sendall(b"EHLO client.example\r\n")
    rd.expect(250)
    envelope = (f"MAIL FROM:<{SENDER}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n").encode()
    data_secs = 0.0
    for i in range(n_msgs):
        last = i == n_msgs - 1
        sock.sendall(envelope)
        rd.expect(250)
        for _ in rcpts:
            rd.expect(250)
        rd.expect(354)
        t0 = time.perf_counter()
        if isinstance(message, Path):
            with open(message, "rb") as fh:
                sock.sendfile(fh)
        else:
            sock.sendall(message)
        sock.sendall(b".\r\nQUIT\r\n" if last else b".\r\n")
        rd.expect(250)
        data_secs = time.perf_counter() - t0
    rd.expect(221)
    sock.settimeout(10)
    while sock.recv(65536):
        pass
    return data_secs


def make_message(size: int) -> bytes:
    """A message in wire form (CRLF, no dot-stuffing needed), about `size` octets, without the final dot."""
    head = (
        "From: Sender <sender@example.org>\r\n"
        "To: Bob <bob@example.test>\r\n"
        "Subject: benchmark message\r\n"
        f"Date: {email_date()}\r\n"
        f"Message-Id: <bench.{os.getpid()}.{time.time_ns()}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; benchmark body text for qpsmtpd.\r\n"
    n = max(1, (size - len(head)) // len(line))
    body = line * n
    pad = size - len(head) - len(body)
    if pad > 2:
        body += b"x" * (pad - 2) + b"\r\n"
    return head + body


def write_message_file(path: Path, size: int) -> None:
    """A message file of exactly `size` octets in wire form: lines of 80 octets, CRLF, no final dot."""
    head = make_message(0)
    head = head[:head.index(b"\r\n\r\n") + 4]
    line = b"The quick brown fox jumps over the lazy dog; benchmark body text for qpsmtpd.\r\n"
    block = line * (MiB // len(line))
    with open(path, "wb") as fh:
        fh.write(head)
        left = size - len(head)
        while left >= len(block):
            fh.write(block)
            left -= len(block)
        fh.write(line * (left // len(line)))
        left %= len(line)
        if left >= 2:
            fh.write(b"z" * (left - 2) + b"\r\n")


def email_date() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")


# ----------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------
class Bench:
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
        self.sets = set(opts.sets.split(",")) if opts.sets else set(SETS)
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
        try:
            self.dns = mod.DNSServer(self.work / "dns-py", DNS_RECORDS, log_queries=True).start()
        except Exception as exc:  # noqa: BLE001
            self.c_why = f"dnsmasq did not start: {str(exc)[:200]}"
            return
        self.build_c_config("py")
        ok, why = self.verify_dns("py", self.dns)
        if not ok:
            del self.cfg["c", "py"]
            self.c_why = why
            return
        if not self.qp_available:
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
            try:
                self.dns_qp = mod.DNSServer(self.work / "dns-qp", DNS_RECORDS, port=53, log_queries=True).start()
            except Exception as exc:  # noqa: BLE001
                self.c_qp_why = f"not run: dnsmasq on 127.0.0.1:53 did not start: {str(exc)[:200]}"
                return
            self.build_c_config("qp")
            ok, why = self.verify_dns("qp", self.dns_qp)
            if not ok:
                del self.cfg["c", "qp"]
                self.c_qp_why = "not run: " + why

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
    def argv_for(self, server: str, cfg: Path | None) -> tuple[list[str], dict, str]:
        # (c): TCPREMOTEHOST as tcpserver sets it when it resolved the client (qpsmtpd's fcrdns skips its DNS
        # checks when remote_host is "[IP]"); both servers still do the PTR and A lookups themselves.
        extra = {"TCPREMOTEHOST": "client.example.test"} if cfg is not None and cfg.name.startswith("c-") else {}
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
                    prefix: list[str] | None = None) -> dict:
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
                data_secs = client_session(parent, rcpts, message, n_msgs)
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
            try:
                pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else proc.pid
            except ValueError:
                pid = proc.pid
            if pid == proc.pid:
                os.kill(pid, signal.SIGTERM)
            else:
                proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

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
            steps = [("latency", self.latency), ("messages", self.messages), ("xinetd", self.xinetd),
                     ("profiles", self.profiles)]
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


def summarize(runs: list[dict], rate: bool = False) -> dict:
    ok = [r for r in runs if not r.get("error")]
    out = {"n": len(ok), "failed": len(runs) - len(ok), "errors": sorted({r["error"] for r in runs if r.get("error")})[:3],
           "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
           "wall_ms": stats([r["wall_ms"] for r in ok]), "rss_kb": stats([r["rss_kb"] for r in ok]),
           "user_ms": stats([r["user_ms"] for r in ok]), "sys_ms": stats([r["sys_ms"] for r in ok]),
           "cpu_ms": stats([r["user_ms"] + r["sys_ms"] for r in ok])}
    if rate:
        out["mib_s"] = stats([r["mib_s"] for r in ok if "mib_s" in r])
    return out


def parse_importtime(raw: str) -> list[tuple[str, int, int]]:
    rows = []
    for line in raw.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(.*)$", line)
        if m:
            rows.append((m.group(3).rstrip(), int(m.group(1)), int(m.group(2))))
    return rows


def importtime_table(raws: list[str]) -> list[dict]:
    """Per module: median self and cumulative microseconds over the runs, sorted by cumulative time."""
    per: dict[str, list[tuple[int, int]]] = {}
    order: list[str] = []
    for raw in raws:
        for name, self_us, cum_us in parse_importtime(raw):
            if name not in per:
                order.append(name)
            per.setdefault(name, []).append((self_us, cum_us))
    # -X importtime prints a module after the modules it imported, one indent level deeper: its parent is
    # the next line below with a smaller indent.
    parent: dict[str, str] = {}
    first = [r[0] for r in parse_importtime(raws[0])] if raws else []
    for i, name in enumerate(first):
        indent = len(name) - len(name.lstrip())
        for later in first[i + 1:]:
            if len(later) - len(later.lstrip()) < indent:
                parent[name] = later.strip()
                break
    rows = [{"module": name.strip(), "tree": name, "parent": parent.get(name, ""),
             "self_us": statistics.median(v[0] for v in per[name]),
             "cum_us": statistics.median(v[1] for v in per[name])} for name in order]
    return sorted(rows, key=lambda r: -r["cum_us"])


def importtime_report(raws: list[str]) -> str:
    rows = importtime_table(raws)
    total = sum(r["self_us"] for r in rows)
    head = [f"python -X importtime, one (b) session, medians of {len(raws)} runs: {len(rows)} modules imported, "
            f"{total / 1000:.1f} ms of import time in all (site and encodings included).", "",
            "By cumulative time (us); indentation = imported by the module above:",
            f"{'cumulative':>10} {'self':>8}  module"]
    head += [f"{r['cum_us']:>10.0f} {r['self_us']:>8.0f}  {r['tree']}" for r in rows[:50]]
    return "\n".join(head) + "\n\nRaw output of the first run:\n" + raws[0]


# ------------------------------------------------------------------------------------------------
# Parallel client for the xinetd runs (one thread, non-blocking sockets)
# ------------------------------------------------------------------------------------------------
class LoadConn:
    def __init__(self, sock: socket.socket, steps: list[tuple[bytes, list[int]]]) -> None:
        self.sock = sock
        self.steps = steps
        self.i = 0
        self.expect = list(steps[0][1])
        self.buf = b""
        self.out = b""
        self.error = None
        self.t0 = time.monotonic()

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.expect:
            end = _reply_end(self.buf)
            if end < 0:
                return
            reply, self.buf = self.buf[:end], self.buf[end:]
            code = int(reply[:3]) if reply[:3].isdigit() else 0
            want = self.expect.pop(0)
            if code != want:
                self.error = f"expected {want}, got {reply[:80]!r}"
                return
            if not self.expect:
                self.i += 1
                if self.i < len(self.steps):
                    self.out += self.steps[self.i][0]
                    self.expect = list(self.steps[self.i][1])

    @property
    def finished(self) -> bool:
        return self.i >= len(self.steps)


def _reply_end(buf: bytes) -> int:
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return -1
        line = buf[pos:nl]
        if len(line) < 4 or line[3:4] != b"-":
            return nl + 1
        pos = nl + 1


def load_steps(nmsg: int, message: bytes) -> list[tuple[bytes, list[int]]]:
    steps = [(b"", [220]), (b"EHLO client.example\r\n", [250])]
    env = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".encode()
    for i in range(nmsg):
        last = i == nmsg - 1
        steps.append((env, [250, 250, 354]))
        steps.append((message + (b".\r\nQUIT\r\n" if last else b".\r\n"), [250, 221] if last else [250]))
    return steps


def load_run(port: int, concurrency: int, seconds: float, nmsg: int, message: bytes) -> dict:
    """Keep `concurrency` sessions in flight for `seconds`, then let the last ones finish (bounded)."""
    steps = load_steps(nmsg, message)
    sel = selectors.DefaultSelector()
    done = failed = 0
    errors: set[str] = set()
    t0 = time.monotonic()
    stop = t0 + seconds
    hard_stop = stop + 60

    def start():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        c = LoadConn(s, steps)
        sel.register(s, selectors.EVENT_READ, c)

    def finish(c: LoadConn, ok: bool, why: str | None = None):
        nonlocal done, failed
        sel.unregister(c.sock)
        c.sock.close()
        if ok:
            done += 1
        else:
            failed += 1
            errors.add(why or "?")

    for _ in range(concurrency):
        start()
    while sel.get_map():
        now = time.monotonic()
        if now > hard_stop:
            for key in list(sel.get_map().values()):
                finish(key.data, False, "timed out")
            break
        for key, mask in sel.select(timeout=1.0):
            c: LoadConn = key.data
            if mask & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    finish(c, False, str(exc))
                    continue
            if mask & selectors.EVENT_READ:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    data = b""
                    if not c.finished:
                        finish(c, False, str(exc))
                        if time.monotonic() < stop:
                            start()
                        continue
                if not data:
                    finish(c, c.finished, None if c.finished else f"closed early: {c.buf[-80:]!r}")
                    if time.monotonic() < stop:
                        start()
                    continue
                c.feed(data)
                if c.error:
                    finish(c, False, c.error)
                    if time.monotonic() < stop:
                        start()
                    continue
                if c.out:  # try to send at once; the rest when writable
                    try:
                        n = c.sock.send(c.out)
                        c.out = c.out[n:]
                    except BlockingIOError:
                        pass
            if c.sock.fileno() >= 0:
                sel.modify(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)
    elapsed = time.monotonic() - t0
    sel.close()
    return {"done": done, "failed": failed, "elapsed": elapsed, "sessions_s": done / elapsed,
            "messages_s": done * nmsg / elapsed, "errors": sorted(errors)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"xinetd exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"xinetd is not listening on 127.0.0.1:{port}")


# ------------------------------------------------------------------------------------------------
# Targets, table, plot
# ------------------------------------------------------------------------------------------------
def med(entry, field="wall_ms"):
    if not entry or not entry.get(field):
        return None
    return entry[field]["median"]


def evaluate(b: Bench) -> list[dict]:
    R = b.results
    L = R["latency"]
    T: list[dict] = []

    def add(key, target, measured, met, note="", cpu_met=None):
        T.append({"key": key, "target": target, "measured": measured, "met": met, "note": note, "cpu_met": cpu_met})

    def cpu_r(a, b):
        x, y = med(a, "cpu_ms"), med(b, "cpu_ms")
        return x / y if x and y else None

    bpy, bqp, bpass = L.get("b-r1-py"), L.get("b-r1-qp"), L.get("pass")
    if med(bpy) and med(bpass):
        r = med(bpy) / med(bpass)
        add("b_pass", "(b) session latency <= 2.5x `python3 -c pass`",
            f"{r:.2f}x ({med(bpy):.1f} vs {med(bpass):.1f} ms; CPU time {cpu_ratio(bpy, bpass)})", r <= 2.5,
            cpu_met=None if cpu_r(bpy, bpass) is None else cpu_r(bpy, bpass) <= 2.5)
    else:
        add("b_pass", "(b) session latency <= 2.5x `python3 -c pass`", "not measured", None)
    if med(bpy) and med(bqp):
        r = med(bpy) / med(bqp)
        add("b_qp", "(b) session latency <= 0.25x qpsmtpd",
            f"{r:.2f}x ({med(bpy):.1f} vs {med(bqp):.1f} ms; CPU time {cpu_ratio(bpy, bqp)})", r <= 0.25,
            cpu_met=None if cpu_r(bpy, bqp) is None else cpu_r(bpy, bqp) <= 0.25)
    else:
        add("b_qp", "(b) session latency <= 0.25x qpsmtpd", "not measured (qpsmtpd not installed)" if not b.qp_available else "not measured", None)
    if med(bpy, "rss_kb"):
        mb = med(bpy, "rss_kb") / 1024
        add("b_rss", "(b) peak RSS <= 16 MB", f"{mb:.1f} MB", mb <= 16)
    cpy, cqp = L.get("c-py"), L.get("c-qp")
    if med(cpy) and med(cqp):
        r = med(cpy) / med(cqp)
        add("c_qp", "(c) DNS session <= 0.5x qpsmtpd with its DNS plugins",
            f"{r:.2f}x ({med(cpy):.1f} vs {med(cqp):.1f} ms; CPU time {cpu_ratio(cpy, cqp)})", r <= 0.5,
            cpu_met=None if cpu_r(cpy, cqp) is None else cpu_r(cpy, cqp) <= 0.5)
    else:
        add("c_qp", "(c) DNS session <= 0.5x qpsmtpd with its DNS plugins",
            f"not measured ({b.c_why or b.c_qp_why or 'not selected'})", None)
    if med(cpy) and med(bpy):
        d = med(cpy) - med(bpy)
        dc = med(cpy, "cpu_ms") - med(bpy, "cpu_ms")
        add("c_b", "(c) DNS session <= 40 ms over (b), DNS answering at once",
            f"{d:+.1f} ms ({med(cpy):.1f} vs {med(bpy):.1f} ms; CPU time {dc:+.1f} ms)", d <= 40, cpu_met=dc <= 40)
    else:
        add("c_b", "(c) DNS session <= 40 ms over (b), DNS answering at once",
            f"not measured ({b.c_why or 'not selected'})", None)
    if med(cpy, "rss_kb"):
        add("c_rss", "(c) peak RSS (no target; reported)", f"{med(cpy, 'rss_kb') / 1024:.1f} MB"
            + (f" (qpsmtpd {med(cqp, 'rss_kb') / 1024:.1f} MB)" if med(cqp, "rss_kb") else ""), None)
    slope = plugin_slope(L, "py", b.p["plugin_counts"])
    if slope is not None:
        cslope = plugin_slope(L, "py", b.p["plugin_counts"], "cpu_ms")
        add("plugin", "marginal cost per simple plugin <= 0.3 ms",
            f"{slope:.3f} ms/plugin (CPU time: {cslope:.3f} ms/plugin)", slope <= 0.3,
            cpu_met=None if cslope is None else cslope <= 0.3)
    M = R["messages"]
    tkey = "100" if "100" in M else (max(M, key=int) if M else None)
    if tkey and med(M[tkey].get("py"), "mib_s") and med(M[tkey].get("cat"), "mib_s"):
        py_r, cat_r = med(M[tkey]["py"], "mib_s"), med(M[tkey]["cat"], "mib_s")
        add("throughput", f"DATA throughput >= 0.4x `cat` ({tkey} MiB)",
            f"{py_r / cat_r:.2f}x ({py_r:.0f} vs {cat_r:.0f} MiB/s)", py_r / cat_r >= 0.4,
            "" if tkey == "100" else "quick mode: measured on a smaller message than the target's 100 MiB")
    else:
        add("throughput", "DATA throughput >= 0.4x `cat` (100 MiB)", "not measured", None)
    lo, hi = M.get("1"), M.get("1024")
    if lo and hi and med(lo.get("py"), "rss_kb") and med(hi.get("py"), "rss_kb"):
        d = (med(hi["py"], "rss_kb") - med(lo["py"], "rss_kb")) / 1024
        add("rss_1g", "peak RSS for 1 GiB within 5 MB of 1 MiB", f"+{d:.1f} MB", d <= 5)
    else:
        add("rss_1g", "peak RSS for 1 GiB within 5 MB of 1 MiB", "not measured (no 1 GiB run in this mode)", None)
    X = R["xinetd"]
    cmax = max(b.p["xinetd_conc"])
    py_x, qp_x = X.get(f"sessions-c{cmax}-py"), X.get(f"sessions-c{cmax}-qp")
    if py_x and qp_x and med(py_x, "sessions_s") and med(qp_x, "sessions_s"):
        r = med(py_x, "sessions_s") / med(qp_x, "sessions_s")
        add("xinetd", f"under xinetd at concurrency {cmax}: >= 3x qpsmtpd's sessions/s",
            f"{r:.2f}x ({med(py_x, 'sessions_s'):.1f} vs {med(qp_x, 'sessions_s'):.1f} /s)", r >= 3)
    else:
        add("xinetd", f"under xinetd at concurrency {cmax}: >= 3x qpsmtpd's sessions/s", "not measured", None)
    return T


def cpu_ratio(a, b) -> str:
    x, y = med(a, "cpu_ms"), med(b, "cpu_ms")
    return f"{x / y:.2f}x" if x and y else "n/a"


def plugin_slope(L: dict, server: str, counts: list[int], field: str = "wall_ms") -> float | None:
    pts = [(n, med(L.get(f"d{n}-{server}"), field)) for n in counts]
    pts = [(x, y) for x, y in pts if y is not None]
    return lin_slope(pts)


def lin_slope(pts) -> float | None:
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def fmt(entry, field="wall_ms", scale=1.0, digits=1) -> str:
    if entry is None:
        return "—"
    if entry.get("failed") and not entry.get(field):
        return "FAILED: " + "; ".join(entry.get("errors", []))[:120]
    s = entry.get(field)
    if not s:
        return "—"
    if s["n"] == 1:
        txt = f"{s['median'] * scale:.{digits}f} (1 run)"
    else:
        txt = f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"
    if entry.get("failed"):
        txt += f" ⚠ {entry['failed']} failed: " + "; ".join(entry.get("errors", []))[:80]
    return txt


def ratio(a, b, field="wall_ms") -> str:
    x, y = med(a, field), med(b, field)
    return f"{x / y:.2f}×" if x and y else "—"


def verdict(met) -> str:
    return {True: "met", False: "**MISSED**", None: "not measured"}[met]


def verdict_of(t) -> str:
    if t["met"] is None and not t["measured"].startswith("not measured"):
        return "no target (reported only)"
    return verdict(t["met"])


def render(b: Bench) -> str:
    R, L, M, X = b.results, b.results["latency"], b.results["messages"], b.results["xinetd"]
    meta = R["meta"]
    qp = b.qp_available
    out = [f"# qpsmtpd-stdio benchmark ({meta['mode']} mode)", ""]
    out.append(f"{meta['date']} on {meta['host']} ({meta['cpus']} CPUs, Linux {meta['kernel']}), git {meta['git']}; "
               f"Python {meta.get('python_version')} in a clean venv ({meta['install_mode']} install, "
               f".pth files: {', '.join(meta['pth_files']) or 'none'}); server argv `{' '.join(meta['server_argv'])} --config DIR`. "
               f"Every figure is the **median (min–max)** of the runs shown; ratios are taken against comparisons measured "
               f"in this same run, runs interleaved. Children get a superserver's environment (no PYTHON* variables, "
               f"TCPREMOTEIP etc. set); wall times are fork-to-reap of the server process, peak RSS its ru_maxrss. "
               f"Run took {meta['elapsed_s']:.0f} s; load average (1, 5, 15 min) {meta['loadavg_start']} at the start, "
               f"{meta['loadavg_end']} at the end (2 cores: a load above ~1 means other work shared the machine, "
               f"and wall times are inflated; CPU times and same-run ratios hold better).")
    out.append("")
    out.append("## Targets (issue 3)")
    out.append("")
    busy = max(meta["loadavg_start"][0], meta["loadavg_end"][0], meta["loadavg_end"][1])
    if busy > (meta["cpus"] or 1) * 0.75:
        out.append(f"**Busy machine:** the load average reached {busy:.1f} on {meta['cpus']} CPUs during this run, so other "
                   "processes competed for the cores: wall times (and the wall-time verdicts below) are inflated and "
                   "noisy. The CPU-time ratios printed beside them count only the measured process's own work and "
                   "hold better; rerun on an idle machine for the verdicts.")
        out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    for t in R["targets"]:
        v = verdict_of(t)
        if t.get("cpu_met") is not None and t["met"] is not None:
            v += " (by CPU time too)" if t["cpu_met"] == t["met"] else f" (by CPU time: {verdict(t['cpu_met'])})"
        out.append(f"| {t['target']} | {t['measured']}{(' — ' + t['note']) if t['note'] else ''} | {v} |")
    missed = [t for t in R["targets"] if t["met"] is False]
    out.append("")
    if missed:
        out.append("Missed: " + "; ".join(f"{t['target']} (got {t['measured']})" for t in missed) + ". Where the time goes: "
                   + ", ".join(f"`{p}`" for p in R["profiles"]) + " in this directory.")
    else:
        out.append("No target measured in this run was missed. Profiles: " + ", ".join(f"`{p}`" for p in R["profiles"]) + ".")
    out.append("")

    imports = R.get("imports") or []
    if imports:
        mods = [r for r in imports if r["module"].startswith("qpsmtpd_stdio")]
        ours = sum(r["self_us"] for r in mods)
        # Standard-library modules that `python3 -c pass` does not import, pulled in by the session.
        floor = {r["module"] for r in R.get("imports_pass") or []}
        pass_total = sum(r["self_us"] for r in R.get("imports_pass") or [])
        extra = [r for r in imports if not r["module"].startswith("qpsmtpd_stdio") and r["module"] not in floor]
        extra_self = sum(r["self_us"] for r in extra)
        # Sum of the medians of self times over a module's subtree: steadier on a busy machine than the median
        # of its cumulative time, which also counts the moments the process waited for a CPU.
        children: dict[str, list[str]] = {}
        for r in imports:
            children.setdefault(r["parent"], []).append(r["module"])
        self_of = {r["module"]: r["self_us"] for r in imports}

        def subtree(m, seen=()):
            return self_of.get(m, 0) + sum(subtree(c, seen + (m,)) for c in children.get(m, []) if c not in seen)

        extra_names = {r["module"] for r in extra}
        heavy = sorted(({"module": r["module"], "parent": r["parent"] or "run time: a plugin or a function-level import", "cum_us": subtree(r["module"])}
                        for r in extra if r["parent"] not in extra_names), key=lambda r: -r["cum_us"])[:6]
        out.append(f"Import time in a (b) session (medians, `-X importtime`; `python3 -c pass` imports {len(floor)} modules "
                   f"in {pass_total / 1000:.1f} ms): the project's own modules "
                   f"{ours / 1000:.1f} ms; standard-library modules beyond what `python3 -c pass` loads "
                   f"{extra_self / 1000:.1f} ms ({len(extra)} modules); the heaviest of them, with what imported them "
                   f"(self times summed over what each imports in turn): "
                   + (", ".join(f"`{r['module']}` {r['cum_us'] / 1000:.1f} ms (by `{r['parent']}`)" for r in heavy) or "none") + ".")
        out.append("")

    out.append(f"## 1. Session latency, ms (one pipelined session, 2 KB message, over a socketpair; n = {meta['reps']})")
    out.append("")
    sub = f" (stubs: {', '.join(b.substituted)})" if b.substituted else ""
    out.append("| plugin set | qpsmtpd-stdio | ×`python3 -c pass` | qpsmtpd 0.94 | ×qpsmtpd | CPU ms, user+sys (ours / qpsmtpd) | peak RSS MB (ours / qpsmtpd) |")
    out.append("|---|---|---|---|---|---|---|")
    base = L.get("pass")

    def lrow(label, key_py, key_qp, qnote=None):
        e_py, e_qp = L.get(key_py), L.get(key_qp) if key_qp else None
        if key_py not in L:
            return  # not selected (--sets)
        qcol = fmt(e_qp) if qp and key_qp else ("qpsmtpd not installed" if not qp else qnote or "n/a")
        rss = f"{fmt(e_py, 'rss_kb', 1 / 1024)} / {fmt(e_qp, 'rss_kb', 1 / 1024) if e_qp else '—'}"
        cpu = f"{fmt(e_py, 'cpu_ms')} / {fmt(e_qp, 'cpu_ms') if e_qp else '—'}"
        out.append(f"| {label} | {fmt(e_py)} | {ratio(e_py, base)} | {qcol} | {ratio(e_py, e_qp) if e_qp else '—'} | {cpu} | {rss} |")

    out.append(f"| `python3 -c pass` (same venv) / `perl -e 1` | {fmt(base)} | 1.00× | {fmt(L.get('perl'))} | — | "
               f"{fmt(base, 'cpu_ms')} / {fmt(L.get('perl'), 'cpu_ms')} | "
               f"{fmt(base, 'rss_kb', 1 / 1024)} / {fmt(L.get('perl'), 'rss_kb', 1 / 1024)} |")
    if "a-py" in L:
        lrow("(a) config.sample set (its loglevel " + (b.results["meta"].get("config_sample_loglevel") or "default") + ")",
             "a-py", "a-qp" if "a-qp" in L else None)
    else:
        out.append("| (a) config.sample set | not measured: config.sample/plugins does not exist yet | — | — | — | — | — |")
    lrow(f"(b) qpsmtpd's 8-plugin sample set{sub}", "b-r1-py", "b-r1-qp")
    if "b-r1-checkout" in L:
        lrow("(b) same, run as venv python + checkout `bin/in.qpsmtpd`", "b-r1-checkout", None)
    c_label = "(c) DNS set (dnsbl, rhsbl, spf, fcrdns)"
    if "c-py" in L:
        lrow(c_label + ", + (b)'s 8 plugins, local dnsmasq", "c-py", "c-qp" if "c-qp" in L else None,
             qnote=None if "c-qp" in L else (b.c_qp_why or "not run"))
    else:
        out.append(f"| {c_label} | not measured ({b.c_why or 'not selected: --sets'}) | — | — | — | — | — |")
    for n in b.p["plugin_counts"]:
        lrow(f"(d) {n} plugins (trivial, + rcpt_ok, queue/maildir)", f"d{n}-py", f"d{n}-qp")
    for n in b.p["rcpt_counts"]:
        if n != 1:
            lrow(f"(b) with {n} recipients", f"b-r{n}-py", f"b-r{n}-qp")
    sp, sq = plugin_slope(L, "py", b.p["plugin_counts"]), plugin_slope(L, "qp", b.p["plugin_counts"])
    rp = lin_slope([(n, med(L.get(f"b-r{n}-py"))) for n in b.p["rcpt_counts"] if med(L.get(f"b-r{n}-py"))])
    rq = lin_slope([(n, med(L.get(f"b-r{n}-qp"))) for n in b.p["rcpt_counts"] if med(L.get(f"b-r{n}-qp"))])
    out.append("")
    f3 = lambda v: "—" if v is None else f"{v:.3f}"
    out.append(f"Marginal cost (least-squares slope of the medians): per trivial plugin {f3(sp)} ms ours, {f3(sq)} ms qpsmtpd; "
               f"per recipient {f3(rp)} ms ours, {f3(rq)} ms qpsmtpd.")
    out.append("")

    out.append("## 2–3. Big messages: DATA throughput (MiB/s) and peak RSS (MB), into queue/maildir, (b) plugin set")
    out.append("")
    out.append("| message | qpsmtpd-stdio MiB/s | `cat FILE > OUT` MiB/s | ×cat | `dd conv=fsync` MiB/s | qpsmtpd MiB/s | ×qpsmtpd | peak RSS MB (ours / qpsmtpd) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for key in sorted(M, key=int):
        e = M[key]
        label = f"{int(key)} MiB" if int(key) < 1024 else f"{int(key) // 1024} GiB"
        q = e.get("qp")
        out.append(f"| {label} | {fmt(e.get('py'), 'mib_s', digits=0)} | {fmt(e.get('cat'), 'mib_s', digits=0)} | "
                   f"{ratio(e.get('py'), e.get('cat'), 'mib_s')} | {fmt(e.get('dd'), 'mib_s', digits=0)} | "
                   f"{fmt(q, 'mib_s', digits=0) if q and q.get('n') else 'not run'} | "
                   f"{ratio(e.get('py'), q, 'mib_s') if q else '—'} | "
                   f"{fmt(e.get('py'), 'rss_kb', 1 / 1024)} / {fmt(q, 'rss_kb', 1 / 1024) if q and q.get('n') else '—'} |")
    if not M:
        out.append("| — | not measured in this run | | | | | | |")
    out.append("")
    out.append("Throughput is timed by the client from the first body byte to the 250 after the final dot (the server "
               "spools, then queue/maildir writes, fsyncs the file and the new/ directory). `cat` is the plain copy "
               "limit (page cache, no fsync); `dd conv=fsync` is the same copy made durable, as a Maildir delivery is. "
               "At 1 MiB the rates mostly measure fixed costs (the fsyncs; for cat and dd, their own start-up), "
               "so only the RSS of that row is meant for comparison.")
    out.append("")

    out.append("## 4. Under xinetd (loopback, 2 KB messages; median (min–max) of "
               f"{b.p['xinetd_reps']} runs of {b.p['xinetd_secs']:g} s)")
    out.append("")
    if X.get("skipped"):
        out.append(f"Skipped: {X['skipped']}.")
    elif not X:
        out.append("Not measured in this run.")
    else:
        out.append("| concurrency | workload | qpsmtpd-stdio | qpsmtpd 0.94 | ratio |")
        out.append("|---|---|---|---|---|")
        for conc in b.p["xinetd_conc"]:
            for wname, field, label in (("sessions", "sessions_s", "sessions/s (1 message each)"),
                                        ("messages", "messages_s", f"messages/s ({b.p['big_msgs']} per session)")):
                e_py, e_qp = X.get(f"{wname}-c{conc}-py"), X.get(f"{wname}-c{conc}-qp")
                out.append(f"| {conc} | {label} | {fmt_x(e_py, field)} | {fmt_x(e_qp, field) if qp else 'qpsmtpd not installed'} | "
                           f"{ratio(e_py, e_qp, field) if e_qp else '—'} |")
        out.append("")
        out.append("Client: bench/run.py's own single-threaded parallel client (Postfix's smtp-source is not used), on "
                   "the same 2 cores as xinetd and the servers. qpsmtpd runs through a /bin/sh wrapper that sends its "
                   "stderr to a log file (as Debian's in.qpsmtpd does); ours runs directly. xinetd passes "
                   "TCPREMOTEIP=192.0.2.10 to both (env attribute), so neither does a PTR lookup.")
    out.append("")
    out.append("## 5. Scaling")
    out.append("")
    out.append("`plot.png`: latency vs plugin count, latency vs recipient count, peak RSS vs message size." if (b.out / "plot.png").exists()
               else "No plot in this run (see notes).")
    out.append("")
    if b.notes:
        out.append("## Notes")
        out.append("")
        out += [f"- {n}" for n in b.notes]
        out.append("")
    return "\n".join(out)


def fmt_x(e, field) -> str:
    if not e:
        return "—"
    txt = fmt(e, field, digits=1)
    if e.get("failed"):
        txt += f" ⚠ {e['failed']} sessions failed: {'; '.join(e.get('errors', []))[:100]}"
    return txt


def make_plot(out: Path) -> str | None:
    """Draw plot.png with matplotlib: this interpreter's if it has it, else bench/.venv-plot's."""
    script = HERE / "plot.py"
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        import matplotlib  # noqa: F401

        py = sys.executable
    except ImportError:
        venv = HERE / ".venv-plot"
        py = str(venv / "bin" / "python")
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode != 0 if os.path.exists(py) else True:
            log("matplotlib not found: installing it into bench/.venv-plot")
            r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, env=env)
            if r.returncode == 0:
                r = subprocess.run([py, "-m", "pip", "install", "-q", "matplotlib"], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                return "No plot: matplotlib could not be installed (pip install matplotlib): " + (r.stderr or r.stdout)[-200:]
    r = subprocess.run([py, str(script), str(out / "results.json"), str(out / "plot.png")], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return "No plot: bench/plot.py failed: " + r.stderr[-300:]
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repetitions, small messages, no 1 GiB: proves it works")
    ap.add_argument("--out", default=str(HERE / "results"), help="where results.md, plot.png... go (default bench/results)")
    ap.add_argument("--work", default=None, help="parent of the scratch dir (default: the system temp dir)")
    ap.add_argument("--venv", default=None, help="the clean venv to (re)use (default bench/.venv)")
    ap.add_argument("--python", default=None, help="interpreter the venv is made from (default python3 on PATH)")
    ap.add_argument("--install", choices=("auto", "wheel", "editable", "checkout"), default="auto",
                    help="wheel: pip install . (non-editable); editable: pip install -e .; checkout: venv python runs "
                         "bin/in.qpsmtpd from the checkout; auto: wheel if pyproject.toml exists, else checkout")
    ap.add_argument("--reps", type=int, default=0, help="session latency repetitions (default 20, quick 3)")
    ap.add_argument("--no-1g", action="store_true", help="skip the 1 GiB message")
    ap.add_argument("--sizes", default="", help="message sizes in MiB for (2)-(3), comma-separated (default 1,100,1024; quick 1,10)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--skip", action="append", default=[], choices=("latency", "messages", "xinetd", "profiles"))
    ap.add_argument("--sets", default="", help="session-latency rows to measure, comma-separated from a,b,c,d "
                    "(default all; c also measures (b) with one recipient, its baseline)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch dir (configs, logs, maildirs)")
    opts = ap.parse_args(argv)
    return Bench(opts).run()


if __name__ == "__main__":
    sys.exit(main())
