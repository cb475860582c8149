"""standins.py: a library imported with stand-ins keeps what it took, the real modules come back after."""

import sys
import textwrap

import pytest

from qpsmtpd_stdio.standins import import_with, stand_in

NAMES = ("helper_y", "lib_x", "pkg_z", "pkg_z.util")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """helper_y (counts its imports in sys), lib_x and pkg_z that use it, on sys.path; all forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "helper_y_imports", 0, raising=False)

    def write(path: str, text: str) -> None:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))

    write("helper_y.py", "import sys\nsys.helper_y_imports += 1\nA = 'real A'\nB = 'real B'\nC = 'real C'\n")
    write("lib_x.py", "import helper_y\nfrom helper_y import A\n\ndef b():\n    return helper_y.B\n")
    yield write
    for name in NAMES:
        sys.modules.pop(name, None)


def test_the_library_keeps_what_it_took_and_the_rest_comes_from_the_real_module(tree):
    lib = import_with("lib_x", stand_in("helper_y", A="lent A"))
    assert lib.A == "lent A"
    assert "helper_y" not in sys.modules and sys.helper_y_imports == 0  # not imported during the import
    assert lib.b() == "real B" and sys.helper_y_imports == 1  # imported on first use of anything not lent
    import helper_y

    assert helper_y.A == "real A" and sys.helper_y_imports == 1


def test_a_library_wanting_more_at_import_is_imported_the_ordinary_way(tree):
    tree("pkg_z/__init__.py", "from . import util\nfrom helper_y import C\n")
    tree("pkg_z/util.py", "from helper_y import A\n")
    pkg = import_with("pkg_z", stand_in("helper_y", A="lent A"))
    assert pkg.C == "real C"
    assert pkg.util.A == "real A"  # the submodule that took from the stand-in was imported again
    assert sys.modules["helper_y"].A == "real A"


def test_nothing_is_lent_when_the_module_is_already_imported(tree):
    import helper_y

    lib = import_with("lib_x", stand_in("helper_y", A="lent A"))
    assert lib.A == "real A" and sys.modules["helper_y"] is helper_y


def test_an_imported_library_is_returned_as_it_is(tree):
    first = import_with("lib_x", stand_in("helper_y", A="lent A"))
    assert import_with("lib_x", stand_in("helper_y", A="other")) is first and first.A == "lent A"


def test_a_missing_library_raises_and_leaves_no_stand_in(tree):
    with pytest.raises(ImportError):
        import_with("no_such_module_here", stand_in("helper_y", A="lent A"))
    assert "helper_y" not in sys.modules


def test_a_stand_in_tells_the_import_system_it_is_no_package(tree):
    module = stand_in("helper_y", A=1)
    sys.modules["helper_y"] = module
    try:
        assert not hasattr(module, "__path__") and not hasattr(module, "B")  # no recursion into itself
    finally:
        del sys.modules["helper_y"]


def test_re_imported_with_the_lent_functools_works_and_leaves_functools_unloaded():
    # dkimpy's import of re goes this way (dkimcheck.load). 600 distinct templates pass re's template cache of 512,
    # so entries are evicted; flags combine through enum, which took reduce.
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys; from qpsmtpd_stdio.standins import import_with, lent_functools;"
            "re = import_with('re', lent_functools());"
            "ok = all(re.sub('(a)', rf'\\g<1>{i}', 'xa') == f'xa{i}' for i in list(range(600)) * 2);"
            "ok = ok and bool(re.match('A.B', 'a\\nb', re.I | re.S)) and str(re.I | re.S) == 're.IGNORECASE|re.DOTALL';"
            "re.purge(); loaded = [m in sys.modules for m in ('functools', 'collections')];"
            "import functools; print(ok, *loaded, functools.reduce(int.__add__, [1, 2]), re.functools.partial is"
            " functools.partial)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["True", "False", "False", "3", "True"], out.stderr
