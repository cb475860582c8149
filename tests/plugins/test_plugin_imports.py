"""Each plugin's docstring says what loading it imports beyond the core (`Imports at load:`), and that is true.

bench/plugincost.py loads every shipped plugin through the real plugin host in
a fresh process that has imported only the core, and compares the modules that
appear with the docstring's line. Its load times are the benchmark's; no time
is asserted here.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import plugincost  # noqa: E402


def test_every_plugin_states_exactly_what_it_imports_at_load():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "plugincost.py"), "--rounds", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(plugincost.plugin_files()) > 40
    assert all("| agrees |" in row for row in rows)


def test_a_plugin_that_imports_more_at_load_is_measured_so(tmp_path):
    # The measurement itself: what a plugin's top level and register() import shows, and nothing of the core.
    path = tmp_path / "zz_imports.py"
    path.write_text('"""zz - a site plugin"""\nimport sqlite3\n\n\ndef register(plugin):\n    import fractions\n')
    modules, seconds = plugincost.measure(path, tmp_path)
    assert "sqlite3" in modules and "fractions" in modules
    assert not any(m.startswith("qpsmtpd_stdio.") for m in modules)
    assert seconds > 0


def test_the_stated_line_is_parsed(tmp_path):
    f = tmp_path / "p.py"
    f.write_text('"""p - x\n\nImports at load: sqlite3, qpsmtpd_stdio.store.\n"""\n')
    assert plugincost.stated(f) == ["qpsmtpd_stdio.store", "sqlite3"]
    f.write_text('"""p - x\n\nImports at load: none beyond the core.\n"""\n')
    assert plugincost.stated(f) == []
    f.write_text('"""p - x\n"""\n')
    assert plugincost.stated(f) is None
