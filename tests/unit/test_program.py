"""program.py: a real program gets the message on stdin (and an envelope on fd 1), within a time limit."""

from __future__ import annotations

import os
import signal

import pytest

from qpsmtpd_stdio.program import SAID, run


def test_message_reaches_stdin_and_output_is_kept(tmp_path):
    out = tmp_path / "out"
    done = run(["/bin/sh", "-c", f"cat > {out}; echo stored >&2"], [b"one\n", b"two\n"], 10)
    assert done.ok and done.status == 0 and done.complete
    assert out.read_bytes() == b"one\ntwo\n"
    assert done.said == "stored"
    assert done.pid > 0


def test_envelope_goes_to_fd_1_after_the_whole_message(tmp_path):
    # As qmail-queue: the message on fd 0, then the envelope on fd 1, read once fd 0 is at its end.
    out = tmp_path / "out"
    done = run(["/bin/sh", "-c", f"cat > {out}.msg; cat <&1 > {out}.env"], [b"body\n"], 10, envelope=b"Fa@b\0Tc@d\0\0")
    assert done.ok
    assert (tmp_path / "out.msg").read_bytes() == b"body\n"
    assert (tmp_path / "out.env").read_bytes() == b"Fa@b\0Tc@d\0\0"


def test_exit_status_and_early_exit():
    done = run(["/bin/sh", "-c", "exit 75"], [b"x" * (1 << 20)] * 4, 10)
    assert done.status == 75 and not done.ok and done.describe() == "exit 75"
    assert not done.complete and done.write_error  # it never read the 4 MiB: EPIPE


def test_exit_0_without_reading_is_not_ok():
    done = run(["/bin/true"], [b"x" * (1 << 20)] * 4, 10)
    assert done.status == 0 and not done.complete and not done.ok
    assert done.describe() == "exited 0 without reading all of its input"


def test_timeout_kills_it():
    done = run(["/bin/sleep", "30"], [], 0.2)
    assert done.status is None and not done.ok and done.describe() == "timed out"


def test_killed_by_a_signal():
    done = run(["/bin/sh", "-c", "cat >/dev/null; kill -TERM $$"], [b"x"], 10)
    assert done.status == -signal.SIGTERM and done.describe() == f"killed by signal {int(signal.SIGTERM)}"


def test_output_kept_is_bounded():
    done = run(["/bin/sh", "-c", "cat >/dev/null; head -c 100000 /dev/zero | tr '\\0' a >&2; exit 1"], [b"x"], 10)
    assert len(done.said) == SAID and done.status == 1


def test_a_missing_program_raises_and_leaks_no_fd(tmp_path):
    before = len(os.listdir("/proc/self/fd"))
    for envelope in (None, b"F\0\0"):
        with pytest.raises(OSError):
            run([str(tmp_path / "missing")], [b"x"], 10, envelope=envelope)
    assert len(os.listdir("/proc/self/fd")) == before
