"""The benchmark's shared settings and small helpers: paths, run sizes, statistics, DNS test zones."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the project's own reply parser, from this checkout
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
SETS = ("a", "b", "c", "d", "e")  # e (the MX set, bench/mxset.py) is left out of --quick unless named


def load_support(name: str):
    """tests/support/NAME.py (the tests' dnsmasq fixture, the message shapes), loaded from its file: no copy here."""
    spec = importlib.util.spec_from_file_location(f"qpsmtpd_bench_{name}", ROOT / "tests" / "support" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_dnsserver():
    return load_support("dnsserver")


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

QUICK = dict(reps=3, rcpt_counts=[1, 10], plugin_counts=[0, 10, 30], sizes_mib=[1, 10], tput_reps=2, shape_mib=1,
             qp_sizes_mib=[1, 10], xinetd_conc=[1, 4, 16], xinetd_secs=0.5, xinetd_reps=1, big_msgs=5)
FULL = dict(reps=20, rcpt_counts=[1, 10, 100], plugin_counts=[0, 10, 30], sizes_mib=[1, 100, 1024], tput_reps=5, shape_mib=10,
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
