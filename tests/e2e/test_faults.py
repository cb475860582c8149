"""Fault injection: broken queue, full disk, broken and stuck plugins, signals, vanishing and slow clients.

Whatever happens, a session ends in a 4xx or a clean exit, with no partial
message in new/, nothing left in tmp/, no traceback on the wire, and a log
line that says what happened. A message that got a 250 is in new/.

Tests run as root, where chmod does not stop writes: a read-only queue is a
read-only bind mount in a private mount namespace (skipped where unshare
cannot do that), `new` made a file, or a path under /proc; a full disk is
RLIMIT_FSIZE. Children under RLIMIT_FSIZE run with PYTHONDONTWRITEBYTECODE=1:
CPython writes .pyc files with one unchecked write(), and a short write under
the limit leaves a truncated .pyc that breaks every later start.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, Result, dialogue

EHLO = b"EHLO client.example\r\n"
MAIL = b"MAIL FROM:<a@example.org>\r\n"
RCPT = b"RCPT TO:<bob@example.test>\r\n"
OPENING = EHLO + MAIL + RCPT + b"DATA\r\n"
BODY = b"Subject: fault\r\n\r\n" + b"".join(b"line %04d of the message\r\n" % i for i in range(200)) + b"THE END\r\n"
MESSAGE = OPENING + BODY + b".\r\n"


def assert_clean_end(smtp, r: Result, queued: int = 0) -> None:
    """The common verdict: well-formed wire, no traceback on it, nothing partial, nothing left over."""
    r.assert_wellformed()
    assert b"Traceback" not in r.stdout and b"File \"" not in r.stdout
    assert r.returncode in (0, None), (r.returncode, r.log)
    messages = smtp.messages()
    assert len(messages) == queued, r.log
    for msg in messages:
        assert msg.endswith(b"THE END\n"), msg[-200:]
    assert smtp.leftovers() == []
    spool = smtp.root / "spool"
    assert not spool.exists() or list(spool.iterdir()) == []


class Live:
    """bin/in.qpsmtpd on pipes, driven a step at a time."""

    def __init__(self, smtp, prefix: tuple = (), preexec_fn=None, **env: str) -> None:
        self.smtp = smtp
        self.err_path = smtp.root / f"live{time.monotonic_ns()}.log"
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([*prefix, sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=smtp.env(**env), preexec_fn=preexec_fn)
        self.out = b""

    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def replies(self) -> int:
        return sum(1 for line in self.out.split(b"\r\n") if line[3:4] == b" ")

    def wait_replies(self, n: int, timeout: float = 20) -> None:
        """Read until n complete replies have arrived."""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while self.replies() < n:
            left = end - time.monotonic()
            assert left > 0, f"waited for {n} replies, got {self.out!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"server closed before {n} replies: {self.out!r} {self.log()}"
                self.out += chunk

    def close_stdin(self) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def finish(self, timeout: float = 30) -> Result:
        self.close_stdin()
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if select.select([fd], [], [], end - time.monotonic())[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self.out += chunk
        try:
            self.proc.wait(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server hung: {self.out!r} {self.log()}") from None
        self.proc.stdout.close()
        self._err.close()
        return Result(self.out, self.err_path.read_bytes(), self.proc.returncode)

    def log(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")


def run_with(smtp, data: bytes, preexec_fn=None, prefix: tuple = (), **env: str) -> Result:
    live = Live(smtp, prefix=prefix, preexec_fn=preexec_fn, **env)
    live.send(data)
    return live.finish()


# The queue cannot be written ------------------------------------------------------

def file_size_limit(octets: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (octets, octets))
    return limit


def test_queue_new_is_a_file(smtp):
    for sub in ("tmp", "cur"):
        (smtp.maildir / sub).mkdir(parents=True, exist_ok=True)
    (smtp.maildir / "new").write_text("not a directory")
    r = smtp.run(MESSAGE + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 451, 221], r.stdout
    assert (smtp.maildir / "new").read_text() == "not a directory"
    assert os.listdir(smtp.maildir / "tmp") == []
    assert "cannot deliver" in r.log


def test_queue_under_proc_cannot_be_created(smtp):
    smtp.plugins("relay", "rcpt_ok", "queue/maildir /proc/self/Maildir")
    r = smtp.run(MESSAGE + b"QUIT\r\n")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 451, 221], r.stdout
    assert "cannot deliver" in r.log


def _read_only_prefix(path: Path) -> tuple:
    """Run the child in a private mount namespace where `path` is a read-only bind mount, if this host allows it."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private read-only mount")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path), "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private read-only bind mount here: {probe.stderr.decode(errors='replace').strip()}")
    return ("unshare", "-m", "--propagation", "private", "sh", "-c", script, str(path))


def test_queue_read_only_file_system(smtp):
    for sub in ("tmp", "new", "cur"):
        (smtp.maildir / sub).mkdir(parents=True, exist_ok=True)
    r = run_with(smtp, MESSAGE + b"QUIT\r\n", prefix=_read_only_prefix(smtp.maildir))
    assert r.codes == [220, 250, 250, 250, 354, 451, 221], r.stdout
    assert "Read-only file system" in r.log
    assert_clean_end(smtp, r)


def test_disk_full_in_the_queue(smtp):
    r = run_with(smtp, MESSAGE + b"QUIT\r\n", preexec_fn=file_size_limit(2048), PYTHONDONTWRITEBYTECODE="1")
    assert r.codes == [220, 250, 250, 250, 354, 451, 221], r.stdout
    assert "File too large" in r.log
    assert_clean_end(smtp, r)


def test_disk_full_in_the_spool_ends_in_4xx(smtp):
    smtp.write("spool_dir", str(smtp.root / "spool"))
    smtp.write("size_threshold", "0")
    r = run_with(smtp, MESSAGE + b"QUIT\r\n", preexec_fn=file_size_limit(2048), PYTHONDONTWRITEBYTECODE="1")
    assert r.codes[:5] == [220, 250, 250, 250, 354] and 400 <= r.codes[5] < 500, r.stdout
    assert "File too large" in r.log
    assert_clean_end(smtp, r)


def test_disk_full_in_the_spool_fails_only_that_message(smtp):
    smtp.write("spool_dir", str(smtp.root / "spool"))
    smtp.write("size_threshold", "0")
    r = run_with(smtp, MESSAGE + b"NOOP\r\nQUIT\r\n", preexec_fn=file_size_limit(2048), PYTHONDONTWRITEBYTECODE="1")
    assert r.codes == [220, 250, 250, 250, 354, 451, 250, 221], r.stdout
    assert "internal error" not in r.log


# Broken plugins ----------------------------------------------------------------------

ALL_HOOKS = ["connect", "helo", "ehlo", "mail_pre", "mail", "rcpt_pre", "rcpt", "data", "data_headers_end", "data_post",
             "received_line", "queue_pre", "queue", "queue_post", "vrfy", "noop", "help", "quit", "reset_transaction",
             "unrecognized_command", "deny", "ok", "disconnect", "post_connection"]


def raising_plugin(hooks) -> str:
    lines = ["def _fail(plugin, txn, *args):", "    raise RuntimeError('boom in a hook')", "", "",
             "def register(plugin, *args):"]
    lines += [f"    plugin.register_hook({h!r}, _fail)" for h in hooks]
    return "\n".join(lines) + "\n"


def test_plugin_raising_in_every_hook_refuses_the_connection(smtp):
    smtp.plugin("boom", raising_plugin(ALL_HOOKS))
    smtp.plugins("boom", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(MESSAGE + b"QUIT\r\n")
    assert r.codes == [421], r.stdout
    assert "FATAL PLUGIN ERROR" in r.log and "boom in a hook" in r.log
    assert_clean_end(smtp, r)


@pytest.mark.parametrize("order", ["first", "last"])
def test_plugin_raising_in_every_hook_but_connect_fails_closed(smtp, order):
    smtp.plugin("boom", raising_plugin([h for h in ALL_HOOKS if h != "connect"]))
    others = ["relay", "rcpt_ok", f"queue/maildir {smtp.maildir}"]
    smtp.plugins(*(["boom"] + others if order == "first" else others + ["boom"]))
    data = (EHLO + b"HELO client.example\r\n" + MESSAGE + b"VRFY bob\r\nNOOP\r\nHELP\r\nBOGUS\r\nRSET\r\nQUIT\r\n")
    r = smtp.run(data)
    r.assert_wellformed()
    assert r.codes[0] == 220 and r.codes[-1] == 221, r.stdout
    assert 354 not in r.codes and r.codes[1] == 450, r.stdout  # no hello accepted, so no mail either
    assert "FATAL PLUGIN ERROR" in r.log
    assert_clean_end(smtp, r)


def test_plugin_raising_in_queue_451(smtp):
    smtp.plugin("boom", raising_plugin(["queue"]))
    smtp.plugins("relay", "rcpt_ok", "boom")
    r = smtp.run(MESSAGE + b"QUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 451, 221], r.stdout
    assert "FATAL PLUGIN ERROR in hook queue" in r.log
    assert_clean_end(smtp, r)


@pytest.mark.parametrize("hook", ["rcpt", "data_post", "queue"])
def test_plugin_sleeping_forever_4xx(smtp, hook):
    smtp.write("plugin_timeout", "1")
    args = {"rcpt": "txn, rcpt, params", "data_post": "txn", "queue": "txn"}[hook]
    smtp.plugin("sleepy", f"import time\n\n\ndef hook_{hook}(plugin, {args}):\n    time.sleep(10**6)\n")
    smtp.plugins("sleepy", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(MESSAGE + b"QUIT\r\n", timeout=60)
    r.assert_wellformed()
    assert r.codes[-1] in (221, 421) and any(400 <= c < 500 for c in r.codes[:-1]), r.stdout
    assert "plugin_timeout" in r.log
    assert_clean_end(smtp, r)


# Signals at each stage -------------------------------------------------------------------

STAGES = {
    # stage: (bytes sent, replies to wait for, messages that got a 250)
    "connect": (b"", 1, 0),
    "after MAIL": (EHLO + MAIL, 3, 0),
    "mid-DATA": (OPENING + BODY[:300], 5, 0),
    "after end of DATA": (MESSAGE, 6, 1),
}


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_terminating_signal_at_each_stage(smtp, stage, sig):
    data, replies, queued = STAGES[stage]
    live = Live(smtp)
    live.send(data)
    live.wait_replies(replies)
    time.sleep(0.1)  # let the server read what was sent
    live.proc.send_signal(sig)
    r = live.finish()
    assert r.lines[-1].startswith(b"421 4.3.2"), r.stdout
    assert r.codes.count(421) == 1
    assert f"terminated by {sig.name}" in r.log
    assert_clean_end(smtp, r, queued)


def test_sigterm_inside_a_hook_queues_nothing(smtp):
    marker = smtp.root / "in-hook"
    smtp.plugin("slow", f"import time\n\n\ndef hook_data_post(plugin, txn):\n    open({str(marker)!r}, 'w').close()\n"
                        "    time.sleep(30)\n")
    smtp.plugins("slow", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    live = Live(smtp)
    live.send(MESSAGE)
    end = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.02)
    live.proc.send_signal(signal.SIGTERM)
    r = live.finish()
    assert r.lines[-1].startswith(b"421 4.3.2"), r.stdout
    assert "terminated by SIGTERM" in r.log
    assert_clean_end(smtp, r, 0)


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigpipe_signal_is_ignored_at_each_stage(smtp, stage):
    data, replies, _ = STAGES[stage]
    live = Live(smtp)
    live.send(data)
    live.wait_replies(replies)
    live.proc.send_signal(signal.SIGPIPE)
    time.sleep(0.05)
    rest = MESSAGE[len(data):] if stage != "after end of DATA" else b""
    live.send(rest + b"QUIT\r\n")
    r = live.finish()
    assert r.codes[-2:] == [250, 221], r.stdout
    assert_clean_end(smtp, r, 1)


@pytest.mark.parametrize("stage", list(STAGES))
def test_client_stops_reading_at_each_stage(smtp, stage):
    """The client closes its read side: the next reply gets EPIPE, and the server leaves quietly."""
    data, replies, queued = STAGES[stage]
    live = Live(smtp)
    live.send(data)
    live.wait_replies(replies)
    live.proc.stdout.close()
    live.out = b""
    live.send(MESSAGE[len(data):] if stage != "after end of DATA" else b"NOOP\r\n")
    live.close_stdin()
    live.proc.wait(timeout=30)
    live._err.close()
    log = live.err_path.read_text()
    assert live.proc.returncode == 0, log
    assert "client went away" in log or "client disconnected" in log, log
    assert "Traceback" not in log
    assert smtp.leftovers() == []
    for msg in smtp.messages():
        assert msg.endswith(b"THE END\n")  # whole or absent, never partial


# Clients that vanish or crawl -------------------------------------------------------------

@pytest.mark.parametrize("cut", [len(OPENING), len(OPENING) + 1, len(OPENING) + 100, len(MESSAGE) - 3,
                                 len(MESSAGE) - 2, len(MESSAGE) - 1])
@pytest.mark.parametrize("via", ["pipe", "socketpair"])
def test_client_vanishing_mid_data(smtp, cut, via):
    r = smtp.run(MESSAGE[:cut], via=via)
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354], r.stdout
    assert_clean_end(smtp, r, 0)
    if via == "pipe":
        assert "client disconnected during DATA; nothing queued" in r.log


def test_slow_client_one_byte_at_a_time(smtp):
    data = dialogue("EHLO slow.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                    body="Subject: slow\r\n\r\n..dot\r\nTHE END")
    smtp.write("timeout", "2")
    live = Live(smtp)
    for i in range(len(data)):
        live.send(data[i:i + 1])
        time.sleep(0.004)
    r = live.finish()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert msg.endswith(b"\n.dot\nTHE END\n")


def test_slow_client_cut_off_by_session_timeout(smtp):
    smtp.write("session_timeout", "1")
    live = Live(smtp)
    data = OPENING + BODY
    end = time.monotonic() + 20
    i = 0
    while live.proc.poll() is None and time.monotonic() < end and i < len(data):
        live.send(data[i:i + 1])
        i += 1
        time.sleep(0.01)
    r = live.finish()
    assert r.lines[-1].startswith(b"421"), r.stdout
    assert "time limit" in r.log or "timeout" in r.log
    assert_clean_end(smtp, r, 0)


def test_plugin_cache_write_failure_leaves_no_temp_file(smtp):
    smtp.plugin("fine", "def hook_noop(plugin, txn):\n    return None\n")
    smtp.plugins("fine", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    cache = smtp.plugin_dir / "__pycache__"
    (cache / "fine.qpsmtpd.pyc").mkdir(parents=True)  # os.replace() onto it fails
    r = smtp.run(b"NOOP\r\nQUIT\r\n", PYTHONDONTWRITEBYTECODE="")
    assert r.codes == [220, 250, 221], r.stdout
    assert sorted(p.name for p in cache.iterdir()) == ["fine.qpsmtpd.pyc"]
