"""Every limit in constants.DEFAULTS is enforced, and configurable by the config file of its name.

`test_every_limit_is_tested` fails when a limit is added to DEFAULTS without
a test here. Time-based limits are set to a second or two; the only timing
assertions are very generous upper bounds.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from conftest import BIN, Result, dialogue

from qpsmtpd_stdio.constants import DEFAULTS

EHLO = b"EHLO client.example\r\n"
MAIL = b"MAIL FROM:<a@example.org>\r\n"
RCPT = b"RCPT TO:<bob@example.test>\r\n"
OPENING = EHLO + MAIL + RCPT + b"DATA\r\n"

TESTED: dict[str, str] = {}


def covers(*names: str):
    def mark(function):
        for name in names:
            TESTED[name] = function.__name__
        return function
    return mark


def run_held_open(smtp, data: bytes, limit: float = 30, trickle: bytes = b"", every: float = 0.0) -> tuple[Result, float]:
    """Send `data` and keep stdin open (optionally writing `trickle` every `every` s) until the server hangs up."""
    start = time.monotonic()
    err = open(smtp.root / "held.log", "wb")
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                            env=smtp.env())
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
        while proc.poll() is None and time.monotonic() - start < limit:
            if trickle:
                try:
                    proc.stdin.write(trickle)
                    proc.stdin.flush()
                except BrokenPipeError:
                    break
            time.sleep(every or 0.05)
        proc.wait(timeout=max(1.0, limit - (time.monotonic() - start)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err.close()
    out = proc.stdout.read()
    proc.stdout.close()
    return Result(out, (smtp.root / "held.log").read_bytes(), proc.returncode), time.monotonic() - start


def test_every_limit_is_tested():
    assert set(DEFAULTS) <= set(TESTED), f"limits without a test: {sorted(set(DEFAULTS) - set(TESTED))}"


# Errors, recipients, sizes -------------------------------------------------------

@covers("max_errors")
@pytest.mark.parametrize("limit", [None, "3"])
def test_max_errors_ends_with_421(smtp, limit):
    if limit:
        smtp.write("max_errors", limit)
    n = int(limit or DEFAULTS["max_errors"])
    r = smtp.run(EHLO + b"BOGUS\r\n" * (n + 5) + b"NOOP\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250] + [500] * (n - 1) + [421], r.stdout
    assert "errors; disconnecting" in r.log


def test_max_errors_zero_means_unlimited(smtp):
    smtp.write("max_errors", "0")
    r = smtp.run(EHLO + b"BOGUS\r\n" * 50 + b"QUIT\r\n")
    assert r.codes == [220, 250] + [500] * 50 + [221]


@covers("max_recipients")
@pytest.mark.parametrize("limit", ["3", None])
def test_max_recipients_452(smtp, limit):
    if limit:
        smtp.write("max_recipients", limit)
    n = int(limit or DEFAULTS["max_recipients"])
    rcpts = [f"RCPT TO:<u{i}@example.test>" for i in range(n + 2)]
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org>", *rcpts, "DATA", "QUIT", body="Subject: n\r\n\r\nx"),
                 timeout=120)
    r.assert_wellformed()
    assert r.codes == [220, 250, 250] + [250] * n + [452, 452, 354, 250, 221]
    [msg] = smtp.messages()
    assert msg.count(b"Delivered-To: ") == n


@covers("databytes")
def test_databytes_552_after_data_and_at_mail(smtp):
    smtp.write("databytes", "100")
    r = smtp.run(EHLO + b"MAIL FROM:<a@example.org> SIZE=101\r\n" + b"MAIL FROM:<a@example.org> SIZE=100\r\n" + RCPT
                 + b"DATA\r\nSubject: big\r\n\r\n" + b"x" * 200 + b"\r\n.\r\nQUIT\r\n")
    r.assert_wellformed()
    assert b"250-SIZE 100\r\n" in r.stdout
    assert r.codes == [220, 250, 552, 250, 250, 354, 552, 221], r.stdout
    assert smtp.messages() == []
    r = smtp.run(OPENING + b"Subject: small\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert r.codes[5] == 250


def test_databytes_default_and_unlimited(smtp):
    r = smtp.run(EHLO + f"MAIL FROM:<a@example.org> SIZE={DEFAULTS['databytes'] + 1}\r\n".encode() + b"QUIT\r\n")
    assert r.codes == [220, 250, 552, 221]
    smtp.write("databytes", "0")
    r = smtp.run(EHLO + b"MAIL FROM:<a@example.org> SIZE=999999999999\r\nQUIT\r\n")
    assert r.codes == [220, 250, 250, 221]


@covers("max_header_size")
def test_max_header_size_552(smtp):
    smtp.write("max_header_size", "200")
    header = b"X-Long: " + b"a" * 250 + b"\r\n"
    r = smtp.run(OPENING + b"Subject: a\r\n" + header + b"\r\nbody\r\n.\r\n"
                 + MAIL + RCPT + b"DATA\r\nSubject: a\r\nX-Short: b\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 552, 250, 250, 354, 250, 221], r.stdout
    assert len(smtp.messages()) == 1


@covers("max_header_lines")
@pytest.mark.parametrize("limit", ["5", None])
def test_max_header_lines_552(smtp, limit):
    if limit:
        smtp.write("max_header_lines", limit)
    n = int(limit or DEFAULTS["max_header_lines"])
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(n))
    r = smtp.run(OPENING + ok + b"\r\nbody\r\n.\r\n" + MAIL + RCPT + b"DATA\r\n" + ok + b"X-More: v\r\n\r\nbody\r\n.\r\n"
                 + b"QUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 250, 250, 354, 552, 221], r.stdout


@covers("max_command_length")
def test_max_command_length(smtp):
    smtp.write("max_command_length", "64")
    ok = b"NOOP " + b"a" * 57 + b"\r\n"
    r = smtp.run(EHLO + ok + b"NOOP " + b"a" * 58 + b"\r\nQUIT\r\n")
    assert len(ok) == 64
    assert r.codes == [220, 250, 250, 500, 221]


@covers("max_line_length")
@pytest.mark.parametrize("limit, line, code", [("100", 98, 250), ("100", 99, 554), ("0", 20000, 250)])
def test_max_line_length(smtp, limit, line, code):
    smtp.write("max_line_length", limit)
    r = smtp.run(OPENING + b"Subject: l\r\n\r\n" + b"x" * line + b"\r\n.\r\nQUIT\r\n")
    assert r.codes[5] == code, r.stdout


@covers("size_threshold")
@pytest.mark.parametrize("threshold", ["0", "10", "1000000"])
def test_size_threshold_spools_to_disk_and_leaves_nothing(smtp, threshold):
    spool = smtp.root / "spool"
    smtp.write("spool_dir", str(spool))
    smtp.write("size_threshold", threshold)
    body = b"".join(b"line %06d ..........................................\r\n" % i for i in range(4000))
    stuffed = body  # no line starts with a dot
    r = smtp.run(OPENING + b"Subject: spool\r\n\r\n" + stuffed + b".\r\nQUIT\r\n")
    assert r.codes[5] == 250
    [msg] = smtp.messages()
    assert msg.endswith(body.replace(b"\r\n", b"\n"))
    assert not spool.exists() or list(spool.iterdir()) == []


@covers("loglevel")
@pytest.mark.parametrize("level, seen", [("2", False), ("LOGINFO", True), (None, False)])
def test_loglevel(smtp, level, seen):
    if level:
        smtp.write("loglevel", level)
    else:
        (smtp.dir / "loglevel").unlink()
    r = smtp.run(dialogue("EHLO x", "QUIT"))
    assert ("session from" in r.log) == seen, r.log


def test_unreadable_value_falls_back_to_default_with_a_warning(smtp):
    smtp.write("max_recipients", "lots")
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.test>", "QUIT"))
    assert r.codes == [220, 250, 250, 250, 221]
    assert "max_recipients: not a number" in r.log


# Time --------------------------------------------------------------------------------

@covers("timeout")
@pytest.mark.parametrize("name", ["timeout", "timeoutsmtpd"])
def test_read_timeout_421(smtp, name):
    smtp.write(name, "1")
    r, took = run_held_open(smtp, EHLO + MAIL)
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 421], r.stdout
    assert b"timeout" in r.lines[-1]
    assert "timeout after 1s" in r.log
    assert took < 20


def test_read_timeout_mid_data_stores_nothing(smtp):
    smtp.write("timeout", "1")
    r, _ = run_held_open(smtp, OPENING + b"Subject: half\r\n\r\nhalf a mess")
    assert r.codes == [220, 250, 250, 250, 354, 421]
    assert smtp.messages() == [] and smtp.leftovers() == []


@covers("session_timeout")
def test_session_timeout_421_even_for_a_busy_client(smtp):
    smtp.write("session_timeout", "2")
    r, took = run_held_open(smtp, EHLO, trickle=b"NOOP\r\n", every=0.2)
    r.assert_wellformed()
    assert r.codes[-1] == 421 and set(r.codes[2:-1]) == {250}, r.stdout
    assert took < 20


def test_session_timeout_says_so(smtp):
    smtp.write("session_timeout", "2")
    r, _ = run_held_open(smtp, EHLO, trickle=b"NOOP\r\n", every=0.2)
    assert r.codes[-1] == 421
    assert "session time limit" in r.log and b"session time limit" in r.lines[-1], (r.log, r.lines[-1])


@covers("pre_data_timeout")
def test_a_client_that_never_starts_a_message_is_cut_off(smtp):
    smtp.write("pre_data_timeout", "2")
    r, _ = run_held_open(smtp, EHLO, trickle=b"NOOP\r\n", every=0.2)
    r.assert_wellformed()
    assert r.codes[-1] == 421 and set(r.codes[2:-1]) == {250}, r.stdout
    assert b"421 4.4.2 mx.example.test Error: no message within 2s" in r.lines[-1], r.lines[-1]


def test_pre_data_timeout_ends_once_a_message_starts(smtp):
    smtp.write("pre_data_timeout", "1")
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=smtp.env())
    proc.stdin.write(OPENING + b"Subject: slow but fine\r\n\r\n")
    for _ in range(8):  # 2 s of message, past pre_data_timeout: it no longer applies
        proc.stdin.write(b"line\r\n")
        proc.stdin.flush()
        time.sleep(0.25)
    out, _ = proc.communicate(b".\r\nQUIT\r\n", timeout=30)
    assert Result(out, b"", proc.returncode).codes == [220, 250, 250, 250, 354, 250, 221], out
    assert len(smtp.messages()) == 1


@covers("min_data_rate")
def test_a_trickling_message_is_cut_off(smtp):
    smtp.write("timeout", "2")
    smtp.write("min_data_rate", "1000")
    # 20 octets every 0.2 s is 100 octets/s: each read is well within `timeout`, but the rate is too low.
    r, _ = run_held_open(smtp, OPENING + b"Subject: slow\r\n\r\n", trickle=b"x" * 18 + b"\r\n", every=0.2)
    r.assert_wellformed()
    assert r.codes[:5] == [220, 250, 250, 250, 354] and r.codes[-1] == 421, r.stdout
    assert b"Error: data rate too low" in r.lines[-1]
    assert smtp.messages() == [] and smtp.leftovers() == []


@covers("plugin_timeout")
@pytest.mark.parametrize("body", ["time.sleep(10**6)", "while True: pass",
                                  "while True:\n        try:\n            time.sleep(10**6)\n        except Exception:\n            pass"])
def test_plugin_timeout_4xx_and_session_survives(smtp, body):
    smtp.write("plugin_timeout", "1")
    smtp.plugin("stuck", f"import time\n\n\ndef hook_mail(plugin, txn, sender, params):\n    {body}\n")
    smtp.plugins("stuck", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    start = time.monotonic()
    r = smtp.run(EHLO + MAIL + b"NOOP\r\nRSET\r\nQUIT\r\n", timeout=60)
    r.assert_wellformed()
    assert r.codes[:2] == [220, 250] and 400 <= r.codes[2] < 500 and r.codes[3:] == [250, 250, 221], r.stdout
    assert "plugin_timeout" in r.log
    assert time.monotonic() - start < 30


def test_plugin_timeout_in_data_post_leaves_nothing(smtp):
    smtp.write("plugin_timeout", "1")
    smtp.plugin("stuck", "import time\n\n\ndef hook_data_post(plugin, txn):\n    time.sleep(10**6)\n")
    smtp.plugins("stuck", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(OPENING + b"Subject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 451, 221]
    assert smtp.messages() == [] and smtp.leftovers() == []


# The process limits SECURITY.md recommends for xinetd (rlimit_as, rlimit_cpu) -----------

AS_LIMIT = 256 << 20
CPU_LIMIT = 60


def documented_rlimits() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT, CPU_LIMIT))


def run_limited(smtp, data: bytes) -> Result:
    proc = subprocess.run([sys.executable, str(BIN)], input=data, capture_output=True, env=smtp.env(),
                          preexec_fn=documented_rlimits, timeout=120)
    return Result(proc.stdout, proc.stderr, proc.returncode)


def test_documented_rlimits_leave_room_for_a_big_message(smtp):
    smtp.write("spool_dir", str(smtp.root / "spool"))
    line = b"0123456789" * 7 + b"\r\n"
    body = line * (8 * 1024 * 1024 // len(line))
    r = run_limited(smtp, OPENING + b"Subject: big\r\n\r\n" + body + b".\r\nQUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.log
    [msg] = smtp.messages()
    assert len(msg) > len(body) * 0.9


def test_runaway_plugin_memory_is_stopped_by_rlimit_as(smtp):
    smtp.plugin("hog", "def hook_data_post(plugin, txn):\n    hog = bytearray(1 << 30)\n    return None\n")
    smtp.plugins("hog", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = run_limited(smtp, OPENING + b"Subject: x\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 451, 250, 221], r.stdout
    assert "MemoryError" in r.log
    assert smtp.messages() == []


@covers("max_messages")
@pytest.mark.parametrize("limit", ["2", None])
def test_max_messages_421_and_advertised(smtp, limit):
    if limit:
        smtp.write("max_messages", limit)
    n = int(limit or DEFAULTS["max_messages"])
    one = MAIL + RCPT + b"DATA\r\nSubject: n\r\n\r\nx\r\n.\r\n"
    r = smtp.run(EHLO + one * n + MAIL + b"NOOP\r\n", timeout=120)
    r.assert_wellformed()
    assert f"MAILMAX={n}".encode() in r.stdout
    assert r.codes == [220, 250] + [250, 250, 354, 250] * n + [421], r.stdout[-300:]
    assert len(smtp.messages()) == n


def test_max_recipients_0_means_no_limit(smtp):
    # As LIMITS advertises: 0 is no limit (it used to refuse every recipient with 452).
    smtp.write("max_recipients", "0")
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    rcpts = [f"RCPT TO:<u{i}@example.test>" for i in range(5)]
    r = smtp.run(dialogue("EHLO x", "MAIL FROM:<a@example.org>", *rcpts, "QUIT"))
    assert r.codes == [220, 250, 250] + [250] * 5 + [221], r.stdout
    assert b"RCPTMAX" not in r.stdout


# AUTH failures across connections --------------------------------------------------------------------
def auth_smtp(smtp):
    import base64

    smtp.plugins("auth/auth_flat_file", "rcpt_ok")
    smtp.write("flat_auth_pw", "alice@example.test:right")
    for name, value in (("tls_before_auth", "0"), ("disable_plaintext_auth", "0"), ("auth_failure_delay", "0"),
                        ("max_auth_failures", "0"), ("loglevel", "LOGNOTICE")):
        smtp.write(name, value)
    return lambda password: "AUTH PLAIN " + base64.b64encode(f"\0alice@example.test\0{password}".encode()).decode()


@covers("auth_failures_per_ip", "auth_failure_window")
def test_auth_failures_are_counted_per_address_across_connections(smtp):
    auth = auth_smtp(smtp)
    smtp.write("auth_failures_per_ip", "3")
    r = smtp.run(dialogue("EHLO x", auth("a"), auth("b"), "QUIT"))
    assert r.codes == [220, 250, 535, 535, 221], r.stdout
    assert "AUTH PLAIN failed from [192.0.2.10] for 'alice@example.test'" in r.log
    r = smtp.run(dialogue("EHLO x", auth("c"), auth("right"), "QUIT"))
    assert r.codes == [220, 250, 535, 421], r.stdout  # the third failure, over two connections, is the limit
    assert b"421 4.7.0 mx.example.test Too many authentication failures from your address" in r.stdout
    assert smtp.run(dialogue("EHLO x", auth("right"), "QUIT")).codes == [220, 250, 421]
    other = smtp.run(dialogue("EHLO x", auth("right"), "QUIT"), TCPREMOTEIP="192.0.2.11")
    assert other.codes == [220, 250, 235, 221]  # another address is not affected


def test_auth_failures_lapse_after_the_window(smtp):
    auth = auth_smtp(smtp)
    smtp.write("auth_failures_per_ip", "1")
    smtp.write("auth_failure_window", "1")
    assert smtp.run(dialogue("EHLO x", auth("a"), auth("right"), "QUIT")).codes == [220, 250, 535, 421]
    time.sleep(1.2)
    assert smtp.run(dialogue("EHLO x", auth("right"), "QUIT")).codes == [220, 250, 235, 221]


def test_auth_failure_count_off_with_0(smtp):
    auth = auth_smtp(smtp)
    smtp.write("auth_failures_per_ip", "0")
    for _ in range(3):
        assert smtp.run(dialogue("EHLO x", auth("a"), auth("b"), "QUIT")).codes == [220, 250, 535, 535, 221]
    assert not (smtp.dir / "qpsmtpd.sqlite").exists()  # nothing counted, nothing opened
