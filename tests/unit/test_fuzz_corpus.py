"""Replay the atheris corpora (fuzz/corpus/*) through the fuzz targets, without atheris.

A crash found by a long campaign is saved into fuzz/corpus/<target>/ with
the fix, and from then on runs here in every CI run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))
_saved = sys.modules.get("atheris")
sys.modules["atheris"] = None  # the targets fall back to plain imports
try:
    import fuzz_address  # noqa: E402
    import fuzz_dnswire  # noqa: E402
    import fuzz_protocol  # noqa: E402
finally:
    if _saved is None:
        del sys.modules["atheris"]
    else:
        sys.modules["atheris"] = _saved

TARGETS = {"protocol": fuzz_protocol.test_one_input, "address": fuzz_address.test_one_input,
           "dnswire": fuzz_dnswire.test_one_input}


def corpus():
    for target in TARGETS:
        for path in sorted((FUZZ / "corpus" / target).iterdir()):
            yield pytest.param(target, path, id=f"{target}/{path.name}")


@pytest.mark.parametrize("target, path", list(corpus()))
def test_corpus_entry(target, path):
    TARGETS[target](path.read_bytes())


def test_corpus_is_not_empty():
    assert len(list(corpus())) >= 15
