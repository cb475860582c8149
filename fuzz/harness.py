"""What the atheris targets share: the checkout on sys.path, imports instrumented when atheris is
installed, and the run. Without atheris (tests/unit/test_fuzz_corpus.py replays the corpora so) the
imports are plain and only main() needs it."""

import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

try:
    import atheris
except ImportError:
    atheris = None


def instrumented(*modules: str):
    """A context for the target's imports: coverage-instrumented for qpsmtpd_stdio and `modules`."""
    if atheris is None:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["qpsmtpd_stdio", *modules])


def fuzz(test_one_input) -> None:
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris (fuzz/README.md)")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
