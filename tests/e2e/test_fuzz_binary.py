"""Property tests of whole dialogues through the real bin/in.qpsmtpd, with the default plugin set.

Fewer examples than the core suite (each is a process start): every output
line is a well-formed reply, nothing follows 221/421, no more messages are
stored than <CRLF>.<CRLF> terminators were sent, nothing is left in tmp/, the
process exits 0, and the same bytes written in pieces give the same replies
and the same stored message. FUZZ_EXAMPLES=N raises the number of examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st


from conftest import BIN, Result, SMTPConfig  # noqa: E402
from smtpdriver import TERMINATOR, overlapping_count  # noqa: E402
from test_fuzz_protocol import OPENING, SMUGGLING, bodies, command_lines, dialogues  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def binary_settings(ci_examples: int):
    return settings(
        max_examples=max(EXAMPLES // 20, ci_examples) if EXAMPLES else ci_examples,
        deadline=None,
        derandomize=os.environ.get("CI") == "true" and not EXAMPLES,
        suppress_health_check=list(HealthCheck),
    )


def fresh_config(tmp_path_factory) -> SMTPConfig:
    smtp = SMTPConfig(tmp_path_factory.mktemp("fuzz"))
    smtp.write("spool_dir", str(smtp.root / "spool"))
    smtp.write("loglevel", "6")
    return smtp


def assert_sane(smtp: SMTPConfig, r: Result, raw: bytes) -> None:
    r.assert_wellformed()
    assert r.returncode == 0, r.log
    for i, line in enumerate(r.lines):
        if line[:4] in (b"221 ", b"421 "):
            assert i == len(r.lines) - 1, f"reply after {line!r}"
    assert b"Traceback" not in r.stdout
    assert "Traceback" not in r.log, r.log
    assert len(smtp.messages()) <= overlapping_count(raw, TERMINATOR)
    assert smtp.leftovers() == []
    spool = smtp.root / "spool"
    assert not spool.exists() or os.listdir(spool) == []


@binary_settings(25)
@given(dialogues())
@example(OPENING + b"x\r\n\n.\r\nMAIL FROM:<s@evil.example>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nS\r\n.\r\nQUIT\r\n")
@example(b"MAIL FROM:<" + b"a-" * 32000 + b"!>\r\nQUIT\r\n")
def test_hostile_dialogues_through_the_binary(tmp_path_factory, raw):
    smtp = fresh_config(tmp_path_factory)
    assert_sane(smtp, smtp.run(raw, timeout=30), raw)


@binary_settings(15)
@given(st.lists(st.one_of(command_lines(), bodies, st.sampled_from(SMUGGLING)), max_size=10).map(b"".join))
def test_hostile_dialogues_over_a_socket(tmp_path_factory, raw):
    """As under inetd: one socket on fd 0, 1 and 2, so a stray write to stderr would show up as a malformed line."""
    smtp = fresh_config(tmp_path_factory)
    r = smtp.run(raw, via="socketpair", timeout=30)
    r.assert_wellformed()
    assert b"Traceback" not in r.stdout
    assert len(smtp.messages()) <= overlapping_count(raw, TERMINATOR)


# The same bytes in pieces -----------------------------------------------------

RECEIVED = re.compile(rb"^Received: .*?\n(?=\S)", re.S | re.M)


def run_in_pieces(smtp: SMTPConfig, chunks: list[bytes]) -> Result:
    log = smtp.root / "pieces.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, env=smtp.env())
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
                proc.stdin.flush()
                time.sleep(0.003)  # let the server read this piece on its own
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out = proc.stdout.read()
        proc.wait(timeout=30)
    return Result(out, log.read_bytes(), proc.returncode)


def normalised_messages(smtp: SMTPConfig) -> list[bytes]:
    return [RECEIVED.sub(b"", m, count=1) for m in smtp.messages()]


@binary_settings(5)
@given(st.lists(st.one_of(st.sampled_from([b".", b"..", b"\r\n", b".\r\n", b"x", b"\r", b"\n"]), st.binary(max_size=6)),
                max_size=20).map(b"".join),
       st.lists(st.integers(1, 400), min_size=1, max_size=6))
@example(b"..x\r\n.\r\n", [len(OPENING) + 1, len(OPENING) + 2])
@example(b"\x00", [1])
def test_pieces_give_same_replies_and_message(tmp_path_factory, body, cuts):
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
    raw = (b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
           b"Message-Id: <fixed@example.org>\r\n\r\n" + stuffed + b"\r\n.\r\nQUIT\r\n")
    one, two = fresh_config(tmp_path_factory), fresh_config(tmp_path_factory)
    one.write("bare_newline", "keep")
    two.write("bare_newline", "keep")
    whole = one.run(raw)
    cuts = sorted({c % len(raw) for c in cuts} - {0})
    pieces = run_in_pieces(two, [raw[a:b] for a, b in zip([0] + cuts, cuts + [len(raw)])])
    assert whole.stdout == pieces.stdout
    assert normalised_messages(one) == normalised_messages(two)
    if b"\x00" in body:  # a message holding a NUL is refused whole, however it arrives
        assert len(one.messages()) == 0 and b"554 5.6.0" in whole.stdout
    else:
        assert len(one.messages()) == 1
