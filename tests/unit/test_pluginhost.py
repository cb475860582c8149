"""pluginhost.load_code: our hash-keyed cache, else the standard __pycache__ file pip or compileall wrote."""

from __future__ import annotations

import builtins
import py_compile

import pytest

from qpsmtpd_stdio import pluginhost


@pytest.fixture
def no_compiling(monkeypatch):
    """load_code must not compile: the code has to come from a cache file."""
    real = builtins.compile
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("filename"))
        return real(*args, **kwargs)

    monkeypatch.setattr(builtins, "compile", counting)
    monkeypatch.setattr(pluginhost.sys, "dont_write_bytecode", True)  # as the service user: our cache unwritable
    return calls


@pytest.mark.parametrize("mode", [py_compile.PycInvalidationMode.TIMESTAMP, py_compile.PycInvalidationMode.CHECKED_HASH,
                                  py_compile.PycInvalidationMode.UNCHECKED_HASH])
def test_the_standard_pyc_is_used_when_current(tmp_path, no_compiling, mode):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("VALUE = 1\n")
    py_compile.compile(str(plugin), invalidation_mode=mode, doraise=True)
    no_compiling.clear()  # py_compile's own compile
    namespace: dict = {}
    exec(pluginhost.load_code(str(plugin)), namespace)
    assert namespace["VALUE"] == 1 and no_compiling == []


def test_a_stale_standard_pyc_is_not(tmp_path, no_compiling):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("VALUE = 1\n")
    py_compile.compile(str(plugin), invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH, doraise=True)
    no_compiling.clear()
    plugin.write_text("VALUE = 2\n")  # an edit of the same size in the same second: only a hash tells
    namespace: dict = {}
    exec(pluginhost.load_code(str(plugin)), namespace)
    assert namespace["VALUE"] == 2 and no_compiling == [str(plugin)]


def test_a_timestamp_pyc_of_another_size_is_not(tmp_path, no_compiling):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("VALUE = 1\n")
    py_compile.compile(str(plugin), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP, doraise=True)
    no_compiling.clear()
    plugin.write_text("VALUE = 22\n")
    namespace: dict = {}
    exec(pluginhost.load_code(str(plugin)), namespace)
    assert namespace["VALUE"] == 22 and no_compiling == [str(plugin)]
