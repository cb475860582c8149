"""The benchmark runs end to end (`bench/run.py --quick`) and writes its table. No timing is asserted.

Takes about two minutes: a clean venv with the project, a few sessions of every
kind (socketpair, big message, xinetd), real qpsmtpd beside it when installed;
then section 1e (the MX set, which --quick leaves out) alone, in the same venv.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results"
    cmd = [sys.executable, str(RUN), "--quick", "--out", str(out), "--work", str(tmp), "--venv", str(tmp / "venv"),
           "--keep-work"]
    if not have_matplotlib():
        cmd.append("--no-plot")  # bench/.venv-plot would download matplotlib: not in a unit test's time
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(tmp))
    assert proc.returncode == 0, f"bench/run.py --quick failed:\n{proc.stdout}\n{proc.stderr}"
    return out, proc


def test_table_has_every_row(quick_run):
    out, _ = quick_run
    table = (out / "results.md").read_text()
    for row in [
        "## Targets (issue 3)",
        "(b) session latency <= 2.5x `python3 -c pass`",
        "(b) session latency <= 0.25x qpsmtpd",
        "(b) peak RSS <= 16 MB",
        "marginal cost per simple plugin",
        "DATA throughput >= 0.4x `cat`",
        "peak RSS for 1 GiB within 5 MB of 1 MiB",
        "under xinetd at concurrency 16",
        "| `python3 -c pass` (same venv)",
        "| (a) config.sample set",
        "| (b) qpsmtpd's 8-plugin sample set",
        "| (c) DNS set (dnsbl, rhsbl, spf, fcrdns)",
        "| (d) 0 plugins",
        "| (d) 10 plugins",
        "| (d) 30 plugins",
        "| (b) with 10 recipients",
        "| 1 MiB |",
        "| 10 MiB |",
    ]:
        assert row in table, f"missing row {row!r} in:\n{table}"
    if shutil.which("xinetd") or Path("/usr/sbin/xinetd").exists():
        for conc in (1, 4, 16):
            assert f"| {conc} | sessions/s" in table
            assert f"| {conc} | messages/s" in table
    else:
        assert "xinetd not installed" in table
    # Every session the bench drove must have worked (a failure is printed as FAILED in the table).
    assert "FAILED" not in table and "failed:" not in table, table


@pytest.fixture(scope="module")
def mx_run(quick_run, tmp_path_factory):
    """Section 1e alone (--quick leaves it out), in quick_run's venv, when its daemons are installed."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    try:
        import dnsserver
        import engines
    finally:
        sys.path.pop(0)
    missing = [name for name, found in (("dnsmasq", dnsserver.dnsmasq_path()), ("spamd", engines.program("spamd")),
                                        ("clamd", engines.program("clamd"))) if not found]
    if missing:
        pytest.skip(f"the MX set needs {', '.join(missing)}")
    out = tmp_path_factory.mktemp("bench-mx") / "results"
    venv = quick_run[0].parent / "venv"  # quick_run's --venv
    cmd = [sys.executable, str(RUN), "--quick", "--sets", "e", "--no-plot", "--out", str(out), "--work",
           str(out.parent), "--venv", str(venv)]
    for section in ("latency", "plugins", "messages", "shapes", "xinetd", "daemons", "profiles"):
        cmd += ["--skip", section]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=str(out.parent))
    assert proc.returncode == 0, f"bench/run.py --sets e failed:\n{proc.stdout}\n{proc.stderr}"
    return (out / "results.md").read_text().split("## 1e.")[1].split("\n## ")[0]


def test_mx_set_rows(mx_run):
    section = mx_run
    for label in ("`python3 -c pass`", "(b) the 8-plugin set", "MX set, unsigned message", "MX set, DKIM-signed message"):
        assert f"| {label} | " in section, section
    assert "FAILED" not in section and "failed:" not in section, section


def test_mx_set_instructions(mx_run):
    """Each goal row's instructions are counted under cachegrind, or the table says why not."""
    section = mx_run
    if not shutil.which("valgrind"):
        assert "Instructions not counted: valgrind is not installed." in section
        return
    counts = {}
    for label in ("`python3 -c pass`", "(b) the 8-plugin set", "MX set, unsigned message", "MX set, DKIM-signed message"):
        row = next((line for line in section.splitlines() if line.startswith(f"| {label} | ") and line.endswith("x |")), None)
        assert row is not None, f"no instruction count for {label}:\n{section}"
        counts[label] = float(row.split(" | ")[1])
    # Each set does all that the one before it does and more; even `python3 -c pass` runs tens of millions.
    assert 10 < counts["`python3 -c pass`"] < counts["(b) the 8-plugin set"] < counts["MX set, unsigned message"] \
        < counts["MX set, DKIM-signed message"], counts


def test_sections_leave_the_configs_alone(quick_run):
    """A section that needs another limit works on a copy: (b)'s own databytes is what the later sections get."""
    out, _ = quick_run
    configs = list(out.parent.glob("qpsmtpd-bench-*/config/b-py"))
    assert len(configs) == 1, configs
    expected = (ROOT / "bench" / "configs" / "common" / "databytes").read_text()
    assert (configs[0] / "databytes").read_text() == expected


def test_results_json_and_profiles(quick_run):
    out, _ = quick_run
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["mode"] == "quick"
    assert res["latency"]["b-r1-py"]["n"] >= 1
    assert res["latency"]["pass"]["n"] >= 1
    for name in res["profiles"]:
        assert (out / name).stat().st_size > 0
    assert (out / "importtime-b.txt").exists()
    assert (out / "cprofile-b.txt").exists()
    if have_matplotlib():
        assert (out / "plot.png").stat().st_size > 0
