"""bytecode.py: the package's modules run from their current standard cache; anything else goes the ordinary way."""

import importlib
import inspect
import os
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from qpsmtpd_stdio import bytecode
from qpsmtpd_stdio.bytecode import ModuleFinder, cached_code

MODES = py_compile.PycInvalidationMode


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `pkgx` on sys.path with a ModuleFinder first on sys.meta_path; all forgotten after."""
    (tmp_path / "pkgx").mkdir()
    (tmp_path / "pkgx" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = ModuleFinder("pkgx", str(tmp_path / "pkgx"))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the ordinary way must not write a cache here
    yield tmp_path / "pkgx"
    for name in [n for n in sys.modules if n == "pkgx" or n.startswith("pkgx.")]:
        del sys.modules[name]


def module(directory: Path, name: str, text: str, mode=MODES.TIMESTAMP, cfile: str | None = None) -> Path:
    path = directory / f"{name}.py"
    path.write_text(text)
    py_compile.compile(str(path), cfile=cfile, invalidation_mode=mode, doraise=True)
    return path


def cached(mod) -> bool:
    return isinstance(mod.__loader__, bytecode._CachedLoader)


@pytest.mark.parametrize("mode", list(MODES))
def test_a_current_cache_is_run_and_the_module_looks_as_importlib_makes_it(package, mode):
    path = module(package, "m", "def f():\n    return 1\n", mode)
    import pkgx.m

    assert pkgx.m.f() == 1 and cached(pkgx.m)
    assert pkgx.m.__file__ == str(path) and pkgx.m.__spec__.origin == str(path)
    assert pkgx.m.__cached__ == importlib.util.cache_from_source(str(path))
    assert inspect.getsource(pkgx.m.f).startswith("def f():")


@pytest.mark.parametrize("edit", ["def f():\n    return 22\n",  # another size
                                  "def f():\n    return 2\n"])   # the same size: a timestamp cache may not see it
def test_a_stale_cache_is_not_run(package, edit):
    path = module(package, "m", "def f():\n    return 1\n", MODES.CHECKED_HASH)
    module(package, "t", "def f():\n    return 1\n", MODES.TIMESTAMP)
    path.write_text(edit)
    (package / "t.py").write_text(edit)
    if len(edit) == len("def f():\n    return 1\n"):
        st = os.stat(package / "t.py")
        os.utime(package / "t.py", ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a later second
    import pkgx.m
    import pkgx.t

    assert pkgx.m.f() == pkgx.t.f() == int(edit.split()[-1])
    assert not cached(pkgx.m) and not cached(pkgx.t)


def test_no_cache_a_foreign_cache_and_a_subpackage_go_the_ordinary_way(package):
    (package / "plain.py").write_text("X = 1\n")
    path = module(package, "foreign", "X = 2\n")
    cache = Path(importlib.util.cache_from_source(str(path)))
    cache.write_bytes(b"\0\0\0\0" + cache.read_bytes()[4:])  # another Python's magic number
    (package / "sub").mkdir()
    module(package / "sub", "__init__", "X = 3\n")
    import pkgx.foreign
    import pkgx.plain
    import pkgx.sub

    assert (pkgx.plain.X, pkgx.foreign.X, pkgx.sub.X) == (1, 2, 3)
    assert not any(cached(m) for m in (pkgx.plain, pkgx.foreign, pkgx.sub))


def test_an_unchecked_hash_cache_is_trusted_as_importlib_trusts_it(package):
    path = module(package, "m", "X = 1\n", MODES.UNCHECKED_HASH)
    path.write_text("X = 2\n")
    import pkgx.m

    assert pkgx.m.X == 1 and cached(pkgx.m)  # what importlib does too: the cache says not to check
    assert cached_code(str(path), source=path.read_bytes()) is None  # plugins always check


def test_a_cache_made_elsewhere_reports_this_source_in_tracebacks(package, tmp_path):
    (tmp_path / "build").mkdir()
    built = module(tmp_path / "build", "m", "def f():\n    raise ValueError\n")
    path = package / "m.py"
    path.write_text(built.read_text())
    os.utime(path, ns=(built.stat().st_atime_ns, built.stat().st_mtime_ns))
    cache = Path(importlib.util.cache_from_source(str(path)))
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(Path(importlib.util.cache_from_source(str(built))).read_bytes())
    import pkgx.m

    assert cached(pkgx.m) and pkgx.m.f.__code__.co_filename == str(path)


def test_a_reload_reads_the_source_again(package):
    path = module(package, "m", "X = 1\n")
    import pkgx.m

    path.write_text("X = 22\n")
    assert importlib.reload(pkgx.m).X == 22


def test_the_package_loads_its_modules_so_in_a_fresh_interpreter(tmp_path):
    # The installed layout: the package's caches written (compileall), then a new interpreter imports it.
    import shutil

    target = tmp_path / "site"
    shutil.copytree(Path(bytecode.__file__).parent, target / "qpsmtpd_stdio", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(target / "qpsmtpd_stdio")], check=True)
    code = ("import sys; import qpsmtpd_stdio.session, qpsmtpd_stdio.bytecode as b;"
            "mods = [m for n, m in sys.modules.items() if n.startswith('qpsmtpd_stdio.') and n != 'qpsmtpd_stdio.bytecode'];"
            "print(len(mods) > 10, [m.__name__ for m in mods if not isinstance(m.__loader__, b._CachedLoader)])")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=target,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert out.stdout.split() == ["True", "[]"], out.stderr
