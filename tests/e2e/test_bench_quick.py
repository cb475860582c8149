"""The benchmark runs end to end (`bench/run.py --quick`) and writes its table. No timing is asserted.

Takes under a minute: a clean venv with the project, a few sessions of every
kind (socketpair, big message, xinetd), real qpsmtpd beside it when installed.
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
    cmd = [sys.executable, str(RUN), "--quick", "--out", str(out), "--work", str(tmp), "--venv", str(tmp / "venv")]
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
