"""(e) A real MX plugin set: the whole set's CPU per session, and each plugin's marginal cost.

The set (bench/configs/sets/mx.plugins): dnsbl, rhsbl, fcrdns, spf, karma,
greylisting, dkim, dmarc, headers, spamassassin and virus/clamdscan, with
relay, rcpt_ok and queue/maildir. DNS comes from the tests' dnsmasq
(tests/support/dnsserver.py) with the sender domain's SPF, DKIM key and
DMARC policy; spamd and clamd are real ones started by
tests/support/engines.py. Every session delivers: SPF and DKIM pass, DMARC
passes, the client is listed nowhere.

Each round runs, interleaved: `python3 -c pass`, the 8-plugin set (b), the
whole set, and the whole set less one plugin for each plugin, on an unsigned
message and on the same message DKIM-signed. A plugin's marginal cost is
the median over rounds of (whole set - whole set less it) in the same
round: paired differences, so drift between rounds cancels. When rspamd or
opendkim is installed, one more variant each adds to the whole set the
`rspamd` plugin, or the `milter` plugin talking to opendkim (real daemons with
the tests' private configs): its row is what that filter adds to our
session's CPU (the daemon's own CPU is its own process's).

CPU time on a shared machine drifts by tens of percent within minutes. With
valgrind installed, `python3 -c pass`, (b) and the whole set also run once
each under cachegrind, whose count of instructions executed does not drift:
a second figure for the same ratio. A full run counts every variant too,
which gives each plugin's marginal cost in instructions.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from client import make_message
from common import CONFIGS, DNS_RECORDS, ROOT, load_support, log, stats, summarize

MX_EXTRAS = ["dkimpy", "publicsuffixlist"]
GOALS = {"unsigned": 2.5, "signed": 3.5}  # the whole set, x `python3 -c pass` per session


def mx_plugins(template: Path) -> list[str]:
    return [line.strip() for line in template.read_text().splitlines() if line.strip() and not line.startswith("#")]


class MXSet:
    """Set up and measure (e) for one Bench."""

    def __init__(self, bench) -> None:
        self.b = bench
        self.work = bench.work / "mx"
        self.work.mkdir()
        self.engines: list = []
        self.dirs: list[Path] = []
        self.dns = None

    def why_not(self) -> str | None:
        dnsserver = load_support("dnsserver")
        engines = load_support("engines")
        for name, found in (("dnsmasq", dnsserver.dnsmasq_path()), ("spamd", engines.program("spamd")),
                            ("clamd", engines.program("clamd")), ("openssl", shutil.which("openssl"))):
            if not found:
                return f"{name} is not installed"
        return None

    def setup(self) -> None:
        b = self.b
        log("(e) installing dkimpy and publicsuffixlist into the bench venv")
        r = subprocess.run([b.opts.python or shutil.which("python3"), "-m", "pip", "--python", b.py, "install", "-q",
                            "--no-warn-script-location", *MX_EXTRAS], capture_output=True, text=True, env=b.build_env())
        if r.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(MX_EXTRAS)} failed: {r.stderr.strip()[-300:]}")
        key = self.work / "dkim.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                             capture_output=True).stdout
        public = base64.b64encode(der).decode()
        # (6) runs the set over real TCP from 127.0.0.1: SPF and FCrDNS must pass for that client too.
        spf = 'txt-record=example.org,"v=spf1 ip4:192.0.2.10 ip4:127.0.0.0/8 -all"'
        records = [spf if r.startswith("txt-record=example.org,") else r for r in DNS_RECORDS] + [
            "host-record=loopback-client.example.test,127.0.0.1",
            f'txt-record=sel._domainkey.example.org,"v=DKIM1; k=rsa; p={public[:200]}","{public[200:]}"',
            'txt-record=_dmarc.example.org,"v=DMARC1; p=reject"']
        self.dns = load_support("dnsserver").DNSServer(self.work / "dns", records).start()
        engines = load_support("engines")
        for kind in (engines.Spamd, engines.Clamd):
            directory = Path(tempfile.mkdtemp(prefix=f"qpsmtpd-bench-{kind.name}-"))
            directory.chmod(0o755)  # spamd's children run as nobody and read its site config after the fork
            self.dirs.append(directory)
            self.engines.append(kind(directory).start())
        spamd, clamd = self.engines
        self.added: dict[str, str] = {}  # variant -> the plugin line it adds
        # opendkim signs only here: verifying, it would ask the system's resolver (not dnsmasq) for the key.
        for kind, line, args in ((engines.Rspamd, "rspamd 127.0.0.1:{port}", ()),
                                 (engines.Opendkim, "milter opendkim 127.0.0.1:{port}", ("s",))):
            if engines.program(kind.name):
                directory = Path(tempfile.mkdtemp(prefix=f"qpsmtpd-bench-{kind.name}-"))
                directory.chmod(0o755)
                self.dirs.append(directory)
                daemon = kind(directory, *args).start()
                self.engines.append(daemon)
                self.added[f"+{line.split()[0]}"] = line.format(port=daemon.port)
        self.unsigned = make_message(2048)
        signer = ("import sys, dkim; m = sys.stdin.buffer.read(); "
                  "sys.stdout.buffer.write(dkim.sign(m, b'sel', b'example.org', open(sys.argv[1], 'rb').read()) + m)")
        self.signed = subprocess.run([b.py, "-c", signer, str(key)], input=self.unsigned, capture_output=True,
                                     check=True).stdout
        lines = [line.replace("{SPAMD}", f"127.0.0.1:{spamd.port}").replace("{CLAMD}", clamd.socket)
                 for line in mx_plugins(CONFIGS / "sets" / "mx.plugins")]
        self.measured = [line.split()[0] for line in lines if line.split()[0] not in ("relay", "rcpt_ok", "queue/maildir")]
        self.cfg = {"all": self.config("all", lines)}
        for name in self.measured:
            self.cfg[f"-{name}"] = self.config(f"no-{name.replace('/', '_')}", [l for l in lines if l.split()[0] != name])
        at = next(i for i, l in enumerate(lines) if l.startswith("queue/"))
        for key, line in self.added.items():
            self.cfg[key] = self.config(f"plus-{key[1:]}", lines[:at] + [line] + lines[at:])

    def config(self, name: str, lines: list[str]) -> Path:
        b = self.b
        lines = [f"queue/maildir {b.maildir('e-' + name, 'py')}" if l == "queue/maildir {MAILDIR}" else l for l in lines]
        cfg = b.make_config(f"e-{name}", "py", lines)
        (cfg / "dnsbl_zones").write_text("dnsbl.test\n")
        (cfg / "rhsbl_zones").write_text("rhsbl.test\n")
        (cfg / "dns_servers").write_text(self.dns.servers_line + "\n")
        (cfg / "store_dir").write_text(f"{self.work}\n")  # one store: greylisting's triplet is known to every variant
        return cfg

    def session(self, key: str, message: bytes) -> dict:
        if key == "pass":
            return self.b.one_session("pass", None, [], message)
        cfg = self.b.cfg["b", "py"] if key == "b" else self.cfg[key]
        return self.b.one_session("py", cfg, ["bob@example.test"], message)

    def measure(self) -> dict:
        reps = self.b.p["reps"]
        # greylisting meets the triplet once (deferred, black_timeout 0); every later session passes.
        self.session("all", self.unsigned)
        keys = ["pass", "b", "all"] + [f"-{n}" for n in self.measured] + list(self.added)
        runs: dict[tuple[str, str], list[dict]] = {}
        log(f"(e) MX set: {len(keys) * 2 - 2} variants x {reps} rounds (+1 warm-up), interleaved")
        for rep in range(reps + 1):
            for kind, message in (("unsigned", self.unsigned), ("signed", self.signed)):
                for key in keys:
                    if kind == "signed" and key in ("pass", "b"):
                        continue
                    res = self.session(key, message)
                    if rep > 0 or res["error"]:
                        runs.setdefault((kind, key), []).append(res)
            self.b.clean_maildirs()
        out: dict = {"plugins": self.measured, "rows": {}, "marginal": {}, "goals": GOALS}
        for (kind, key), rs in runs.items():
            out["rows"][f"{kind} {key}"] = summarize(rs)
        for kind in ("unsigned", "signed"):
            whole = runs[kind, "all"]
            for name in self.measured:
                less = runs[kind, f"-{name}"]
                diffs = [w["user_ms"] + w["sys_ms"] - (l["user_ms"] + l["sys_ms"])
                         for w, l in zip(whole, less) if not w.get("error") and not l.get("error")]
                out["marginal"][f"{kind} {name}"] = stats(diffs)
            for key in self.added:
                diffs = [p["user_ms"] + p["sys_ms"] - (w["user_ms"] + w["sys_ms"])
                         for w, p in zip(whole, runs[kind, key]) if not w.get("error") and not p.get("error")]
                out["marginal"][f"{kind} {key[1:]} (added)"] = stats(diffs)
        out["plugins"] = self.measured + [f"{key[1:]} (added)" for key in self.added]
        return out

    def instructions(self) -> dict:
        """Instructions executed by one session of each goal row and its baseline (cachegrind); in a full run,
        also of each variant less or plus one plugin, for the marginal costs."""
        valgrind = shutil.which("valgrind")
        if not valgrind:
            return {"skipped": "valgrind is not installed"}
        rows = [("unsigned", "pass"), ("unsigned", "b"), ("unsigned", "all"), ("signed", "all")]
        if not self.b.opts.quick:
            rows += [(kind, key) for kind in ("unsigned", "signed") for key in self.cfg if key != "all"]
        out: dict = {}
        t = time.monotonic()
        for kind, key in rows:
            log_file = self.work / f"cachegrind-{kind}-{key.replace('/', '_')}.log"
            prefix = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                      f"--log-file={log_file}"]
            if key == "pass":
                res = self.b.one_session("pass", None, [], b"", prefix=prefix)
            else:
                cfg = self.b.cfg["b", "py"] if key == "b" else self.cfg[key]
                res = self.b.one_session("py", cfg, ["bob@example.test"], self.signed if kind == "signed" else self.unsigned,
                                         timeout=600, prefix=prefix)
            found = re.search(r"I\s+refs:\s+([\d,]+)", log_file.read_text()) if log_file.exists() else None
            if res["error"] or not found:
                out[f"{kind} {key}"] = {"error": res["error"] or "no instruction count in cachegrind's log"}
            else:
                out[f"{kind} {key}"] = {"instructions": int(found.group(1).replace(",", ""))}
        self.b.clean_maildirs()
        log(f"(e) {len(rows)} sessions counted under cachegrind in {time.monotonic() - t:.1f}s")
        return out

    def stop(self) -> None:
        for engine in self.engines:
            engine.stop()  # spamd, clamd, and rspamd and opendkim when they ran
        if self.dns is not None:
            self.dns.stop()
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)


def measure_mx(bench) -> None:
    """(e); its DNS server and engines keep running for (6), and bench.run() stops them (bench.mx_set)."""
    mx = MXSet(bench)
    why = mx.why_not()
    if why:
        bench.notes.append(f"(e) MX set not measured: {why}.")
        return
    bench.mx_set = mx
    mx.setup()
    t = time.monotonic()
    bench.results["mx"] = mx.measure()
    bench.results["mx"]["instructions"] = mx.instructions()
    bench.mx_cfg = mx.cfg["all"]
    log(f"(e) done in {time.monotonic() - t:.1f}s")


def render_mx(R: dict, fmt, cpu_ratio) -> list[str]:
    """The (e) section of results.md."""
    out = ["## 1e. A real MX plugin set: CPU per session (ms), and each plugin's marginal cost", ""]
    M = R.get("mx")
    if not M:
        return out + ["Not measured in this run (see the notes).", ""]
    rows = M["rows"]
    base = rows.get("unsigned pass")
    out += ["| session | CPU ms | ×`python3 -c pass` | goal | peak RSS MB |", "|---|---|---|---|---|"]
    for label, key, goal in (("`python3 -c pass`", "unsigned pass", None), ("(b) the 8-plugin set", "unsigned b", None),
                             ("MX set, unsigned message", "unsigned all", M["goals"]["unsigned"]),
                             ("MX set, DKIM-signed message", "signed all", M["goals"]["signed"])):
        e = rows.get(key)
        if not e:
            continue
        shown = "—"
        if goal and e.get("cpu_ms") and base and base.get("cpu_ms"):
            ratio = e["cpu_ms"]["median"] / base["cpu_ms"]["median"]
            shown = f"≤ {goal}x: {'met' if ratio <= goal else '**MISSED**'}"
        out.append(f"| {label} | {fmt(e, 'cpu_ms')} | {cpu_ratio(e, base)} | {shown} | {fmt(e, 'rss_kb', 1 / 1024)} |")
    out += render_instructions(M)
    counts = M.get("instructions") or {}
    out += ["", "Marginal CPU of each plugin (ms): the median, over rounds, of the whole set's session less the session "
            "without that plugin in the same round (p25–p75); and, when counted, the same difference in instructions "
            "(M, one session each under cachegrind).", "",
            "| plugin | unsigned message | DKIM-signed message | instructions, unsigned | instructions, signed |",
            "|---|---|---|---|---|"]
    for name in M["plugins"]:
        cells = []
        for kind in ("unsigned", "signed"):
            s = M["marginal"].get(f"{kind} {name}")
            cells.append(f"{s['median']:.1f} ({s['p25']:.1f}–{s['p75']:.1f})" if s else "—")
        for kind in ("unsigned", "signed"):
            cells.append(marginal_instructions(counts, kind, name))
        out.append(f"| {name} | {' | '.join(cells)} |")
    out.append("")
    return out


def render_instructions(M: dict) -> list[str]:
    """The cachegrind rows of (e): one session each, instructions against `python3 -c pass`'s."""
    counts = M.get("instructions")
    if not counts:
        return []
    if "skipped" in counts:
        return ["", f"Instructions not counted: {counts['skipped']}."]
    base = counts.get("unsigned pass", {}).get("instructions")
    out = ["", "Instructions executed, one session each under cachegrind (deterministic up to hash seeds and "
           "addresses; the CPU ratios above drift with the machine's load):", "",
           "| session | instructions (M) | ×`python3 -c pass` |", "|---|---|---|"]
    for label, key in (("`python3 -c pass`", "unsigned pass"), ("(b) the 8-plugin set", "unsigned b"),
                       ("MX set, unsigned message", "unsigned all"), ("MX set, DKIM-signed message", "signed all")):
        e = counts.get(key, {})
        if "instructions" not in e:
            out.append(f"| {label} | {e.get('error', 'not run')} | — |")
            continue
        ratio = f"{e['instructions'] / base:.2f}x" if base else "—"
        out.append(f"| {label} | {e['instructions'] / 1e6:.1f} | {ratio} |")
    return out


def marginal_instructions(counts: dict, kind: str, name: str) -> str:
    """What plugin `name` adds to the whole set's session, in millions of instructions ("—" when not counted)."""
    whole = counts.get(f"{kind} all", {}).get("instructions")
    if name.endswith(" (added)"):
        other = counts.get(f"{kind} +{name[:-len(' (added)')]}", {}).get("instructions")
        diff = None if whole is None or other is None else other - whole
    else:
        other = counts.get(f"{kind} -{name}", {}).get("instructions")
        diff = None if whole is None or other is None else whole - other
    return "—" if diff is None else f"{diff / 1e6:.2f}"
