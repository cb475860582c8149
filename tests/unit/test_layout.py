"""The layout docs/architecture.md promises: small modules, no import circles, README's map true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "qpsmtpd_stdio"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def imports(module: str) -> set[str]:
    """Package modules that `module` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qpsmtpd_stdio."):
            found.add(node.module.split(".")[1])
    return found & set(MODULES) - {module}


def test_no_import_circles():
    graph = {m: imports(m) for m in MODULES}

    def reaches(start: str, goal: str, seen: set) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])

    assert [m for m in MODULES if reaches(m, m, set())] == []


def test_the_core_imports_no_plugin():
    for module in MODULES:
        text = (PACKAGE / f"{module}.py").read_text()
        assert "qpsmtpd_plugin" not in text.replace('"qpsmtpd_plugin." + name', ""), module


def test_the_core_does_not_load_future():
    """`from __future__ import annotations` imports the __future__ module: 0.72 M instructions a connection."""
    import subprocess
    import sys

    assert [m for m in MODULES if "from __future__" in (PACKAGE / f"{m}.py").read_text()] == []
    # An editable install's finder may have loaded it at start-up: forget it, then import every core module.
    code = ("import sys\nsys.modules.pop('__future__', None)\n" + "".join(f"import qpsmtpd_stdio.{m}\n" for m in MODULES)
            + "print('__future__' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stdout + done.stderr  # and every module imports: no annotation fails


def test_modules_stay_small():
    sizes = {m: len((PACKAGE / f"{m}.py").read_text().splitlines()) for m in MODULES}
    assert {m: n for m, n in sizes.items() if n > 500} == {}


def test_readme_map_names_every_module_once():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## How it fits together"):text.index("## Deploying it")]
    entries = []
    for line in block.splitlines():
        first = re.split(r"\s{2,}", line.strip())[0]
        entries += [name[:-3] for name in first.split(", ") if name.endswith(".py") and " " not in name]
    modules = [m for m in MODULES if m != "__init__"]
    assert sorted(entries) == modules
