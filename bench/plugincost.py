"""What loading each shipped plugin imports beyond the core, and what that costs.

For every file in plugins/, a fresh process imports the modules a plain
session imports (the core), then loads the plugin through the real plugin
host, as a `plugins` line would (its file's top level and its `register`,
with the arguments in ARGS for those that need some), with an empty config
directory. The modules that appear in `sys.modules` are its load imports;
the process CPU time of the load, median over rounds, is its load cost. Each plugin's docstring states
its imports on an `Imports at load:` line; this compares the two.

    python3 bench/plugincost.py [--rounds 5]

Exits 1 if a docstring's list differs from what was measured. The test
tests/plugins/test_plugin_imports.py runs the same comparison (modules only,
no times).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"

# What every session imports before its plugins load (qpsmtpd_stdio.main's path to the end of a message).
CORE = ("qpsmtpd_stdio.main", "qpsmtpd_stdio.log", "qpsmtpd_stdio.config", "qpsmtpd_stdio.connection",
        "qpsmtpd_stdio.signals", "qpsmtpd_stdio.transport", "qpsmtpd_stdio.session",
        "qpsmtpd_stdio.delivery", "qpsmtpd_stdio.patterns", "qpsmtpd_stdio.localdomains")

# Plugins that refuse to load without arguments, given the least that loads them (nothing is contacted at load).
ARGS = {
    "queue/maildir": ["{tmp}/Maildir"],
    "queue/lmtp": ["127.0.0.1:24"],
    "queue/smtp-forward": ["127.0.0.1:25"],
    "milter": ["opendkim", "unix:{tmp}/milter.sock"],
    "rcpt_verify": ["smtp:127.0.0.1:25"],
    "rcpt_map": ["domain", "example.test", "file", "{tmp}/map"],
    "queue/exim-bsmtp": ["/bin/true"],
    "logging/file": ["{tmp}/log"],
}

_CHILD = r"""
import json, sys, time
for name in sys.argv[3].split(","):
    __import__(name)
from qpsmtpd_stdio.config import Config
from qpsmtpd_stdio.log import Log
from qpsmtpd_stdio.pluginhost import PluginHost, load_code
name, args, tmp = sys.argv[1], json.loads(sys.argv[2]), sys.argv[4]
host = PluginHost(Config(tmp, fallback=None), Log())
path = host.resolve(name, [])[0]
load_code(path, write=False)  # the bytecode cache's work is not the plugin's
before = set(sys.modules)
t0 = time.process_time()
host.load(name, [a.replace("{tmp}", tmp) for a in args])
spent = time.process_time() - t0
new = sorted(set(sys.modules) - before)
ours = [getattr(sys.modules[m], "__file__", None) for m in new if m.startswith("qpsmtpd_stdio.")]
print(json.dumps({"modules": new, "files": [path] + [f for f in ours if f], "seconds": spent}))
"""

STATED = re.compile(r"^Imports at load: (.+?)\.?$", re.M)


def plugin_files(directory: Path = PLUGINS) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def named_imports(files: list[str]) -> set[str]:
    """The top-level names the import statements of `files` name (absolute imports only)."""
    import ast

    names = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def visible(modules: list[str], files: list[str]) -> list[str]:
    """What a reader of the plugin cares about: our modules that loaded in full, and the other packages that
    loaded because the plugin or one of those modules names them (a package's own dependencies, which differ
    between install routes, are its cost but not listed)."""
    named = named_imports(files)
    names = set()
    for name in modules:
        top = name.split(".")[0]
        if name.startswith("qpsmtpd_stdio."):
            names.add(name)
        elif top in named and not top.startswith("_") and top != "qpsmtpd_stdio":
            names.add(top)
    return sorted(names)


def plugin_name(path: Path, directory: Path = PLUGINS) -> str:
    return path.relative_to(directory).with_suffix("").as_posix()


def measure(path: Path, directory: Path = PLUGINS, python: str = sys.executable) -> tuple[list[str], float]:
    """(the visible modules loading the plugin at `path` imports beyond the core, the CPU seconds it took).

    `directory` is the plugin directory `path` is in (a site's, through `plugin_dirs`, or the shipped one).
    """
    name = plugin_name(path, directory)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:  # made here: tempfile would add its own imports to the child's
        Path(tmp, "map").write_text("postmaster@example.test OK\n")
        if directory != PLUGINS:
            Path(tmp, "plugin_dirs").write_text(f"{directory}\n")
        done = subprocess.run([python, "-c", _CHILD, name, json.dumps(ARGS.get(name, [])), ",".join(CORE), tmp],
                              capture_output=True, text=True, env=env, timeout=120)
    if done.returncode:
        raise RuntimeError(f"loading {name} failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return visible(result["modules"], result["files"]), result["seconds"]


def stated(path: Path) -> list[str] | None:
    """The docstring's `Imports at load:` list ([] for "none beyond the core"), or None if it has none."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    found = STATED.search(doc)
    if not found:
        return None
    text = found.group(1).strip()
    if text.startswith("none"):
        return []
    return sorted(word.strip() for word in text.split(",") if word.strip())


def report(rounds: int = 5, python: str = sys.executable) -> tuple[list[str], int]:
    """The markdown table of every shipped plugin's load, and how many docstrings differ from the measurement."""
    files = plugin_files()
    samples: dict[Path, list[float]] = {p: [] for p in files}
    modules: dict[Path, list[str]] = {}
    for _ in range(rounds):  # round-robin, so drift spreads over every plugin alike
        for path in files:
            modules[path], seconds = measure(path, python=python)
            samples[path].append(seconds * 1000)
    bad = 0
    out = [f"| plugin | imports at load (measured) | docstring | load CPU ms median (min-max), {rounds} rounds |",
           "|---|---|---|---|"]
    for path in files:
        want, got = stated(path), modules[path]
        verdict = "agrees" if want == got else ("**missing**" if want is None else f"**says {', '.join(want) or 'none'}**")
        bad += want != got
        ms = samples[path]
        out.append(f"| {plugin_name(path)} | {', '.join(got) or 'none beyond the core'} | {verdict} | "
                   f"{statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f}) |")
    out += ["", f"{python} (Python {sys.version.split()[0]}), load average {os.getloadavg()[0]:.2f} at the end; "
                f"{bad} docstring(s) differ from what was measured."]
    return out, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--python", default=sys.executable, help="the interpreter of the install to measure")
    args = ap.parse_args()
    lines, bad = report(args.rounds, args.python)
    print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
