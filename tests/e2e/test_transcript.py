"""Session transcripts: --transcript FILE or config/transcript; every line in and out, timestamped, AUTH masked."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from conftest import BIN, simple_session
from qpsmtpd_stdio.transcript import Transcript

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d{4} (\d+) ([<>*]) (.*)$")

# Answers AUTH the way an auth plugin will: 334 challenges for LOGIN, then 235; PLAIN is refused with 535.
FAKE_AUTH = '''from qpsmtpd_stdio import DECLINED, DONE
def hook_unrecognized_command(plugin, txn, verb, arg):
    notes = plugin.connection.notes
    if verb == "auth":
        if arg.upper().startswith("PLAIN"):
            return DONE, "535 5.7.8 authentication failed"
        notes["step"] = 1
        return DONE, "334 VXNlcm5hbWU6"
    if notes.get("step") == 1:
        notes["step"] = 2
        return DONE, "334 UGFzc3dvcmQ6"
    if notes.get("step") == 2:
        notes["step"] = 0
        return DONE, "235 2.7.0 authentication successful"
    return DECLINED
'''


def parse(path) -> list[tuple[str, str, str]]:
    entries = []
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        assert m, f"not a transcript line: {line!r}"
        entries.append(m.groups())
    return entries


def lockstep(smtp, lines: list[bytes], args: tuple = ()) -> bytes:
    """Run bin/in.qpsmtpd on a socket, as a client that waits for each reply before the next line."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, str(BIN), *args], stdin=theirs, stdout=theirs,
                            stderr=subprocess.DEVNULL, env=smtp.env())
    theirs.close()
    ours.settimeout(30)
    received = b""

    def reply() -> None:
        nonlocal received
        while True:
            received += ours.recv(65536)
            last = received.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
            if received.endswith(b"\r\n") and last[3:4] == b" ":
                return

    reply()
    for line in lines:
        ours.sendall(line)
        reply()
    ours.close()
    assert proc.wait(30) == 0
    return received


def test_transcript_option_records_every_line_with_auth_masked(smtp):
    path = smtp.root / "transcript.log"
    smtp.plugin("fake_auth", FAKE_AUTH)
    smtp.plugins("fake_auth", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    wire = lockstep(smtp, [
        b"EHLO c.example\r\n",
        b"AUTH PLAIN AGJvYgBzM2NyZXQ=\r\n",
        b"AUTH LOGIN\r\n", b"Ym9i\r\n", b"czNjcmV0\r\n",
        b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<bob@example.test>\r\n", b"DATA\r\n",
        b"Subject: AUTH in a body is only text\r\n\r\nAUTH LOGIN\r\nbare\nline\r\n.\r\n",
        b"QUIT\r\n",
    ], args=("--transcript", str(path)))
    assert wire.endswith(b"221 2.0.0 mx.example.test closing connection. Have a wonderful day.\r\n")
    entries = parse(path)
    assert {pid for pid, _, _ in entries} == {entries[0][0]} and entries[0][0] != str(os.getpid())
    assert entries[0][1:] == ("*", "connect from unknown[192.0.2.10]:40000 to 192.0.2.1:25")
    client = [text for _, d, text in entries if d == "<"]
    server = [text for _, d, text in entries if d == ">"]
    assert client == [
        "EHLO c.example",
        "AUTH PLAIN ***",
        "AUTH LOGIN", "***", "***",
        "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "DATA",
        "Subject: AUTH in a body is only text", "", "AUTH LOGIN", "bare\\n", "line", ".",
        "QUIT",
    ]
    assert "535 5.7.8 authentication failed" in server and "235 2.7.0 authentication successful" in server
    assert server[0].startswith("220 ") and server[-1].startswith("221 ")
    # Exactly what went over the wire, in order.
    assert "".join(text + "\r\n" for text in server).encode() == wire
    text = path.read_text()
    for secret in ("AGJvYgBzM2NyZXQ=", "Ym9i", "czNjcmV0"):
        assert secret not in text
    assert entries[-1][1:] == ("*", "end of session")


def test_config_file_names_the_transcript_and_sessions_append(smtp):
    smtp.write("transcript", "transcript.log")  # relative: in the config dir
    first = smtp.run(simple_session())
    second = smtp.run(simple_session(), via="socketpair")
    assert first.codes[-2:] == second.codes[-2:] == [250, 221]
    entries = parse(smtp.dir / "transcript.log")
    pids = [pid for pid, direction, text in entries if direction == "*" and text.startswith("connect")]
    assert len(pids) == 2 and pids[0] != pids[1]
    for pid in pids:
        assert [text for p, d, text in entries if p == pid and d == "<"][-1] == "QUIT"
        assert [text for p, d, text in entries if p == pid][-1] == "end of session"
    assert (smtp.dir / "transcript.log").stat().st_mode & 0o777 == 0o600


def test_unwritable_transcript_does_not_stop_mail(smtp):
    r = smtp.run(simple_session(), args=("--transcript", str(smtp.root / "no" / "such" / "dir" / "t.log")))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert "no transcript for this session" in r.log
    assert len(smtp.messages()) == 1


def test_rendering_of_odd_lines_and_unfinished_input(tmp_path):
    path = tmp_path / "t.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    transcript = Transcript(fd)
    transcript.received(b"EHLO a\\b\tc\x00\xff\r\n")
    transcript.received(b"NOOP \xc3\xa9 split ")
    transcript.received(b"here\r\nsmuggle\n.\r\nno end")
    transcript.sent(b"250-first\r\n250 last\r\n")
    transcript.close()
    texts = [(d, text) for _, d, text in parse(path)]
    assert texts == [
        ("<", "EHLO a\\\\b\\tc\\x00\\xff"),
        ("<", "NOOP \u00e9 split here"),
        ("<", "smuggle\\n"),
        ("<", "."),
        (">", "250-first"),
        (">", "250 last"),
        ("<", "no end [...]"),
        ("*", "end of session"),
    ]


def test_auth_masking_ends_at_the_final_reply_only(tmp_path):
    path = tmp_path / "t.log"
    transcript = Transcript(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    transcript.received(b"auth login\r\n")
    transcript.sent(b"334 VXNlcm5hbWU6\r\n")
    transcript.received(b"dXNlcg==\r\n")
    transcript.sent(b"535-5.7.8 no\r\n")
    transcript.received(b"c2VjcmV0\r\n")  # still before the reply's last line: masked
    transcript.sent(b"535 5.7.8 really no\r\n")
    transcript.received(b"AUTHOR is not AUTH\r\n")
    transcript.close()
    client = [text for _, d, text in parse(path) if d == "<"]
    assert client == ["auth login", "***", "***", "AUTHOR is not AUTH"]


def test_auth_masked_however_the_octets_are_split(tmp_path):
    secret = b"AGJvYgBzM2NyZXQtUGFzc3cwcmQ="
    wire = b"AUTH PLAIN " + secret + b"\r\n"
    for cut in range(1, len(wire)):
        path = tmp_path / f"t{cut}.log"
        transcript = Transcript(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        transcript.received(wire[:cut])
        transcript.received(wire[cut:])
        transcript.sent(b"235 2.7.0 ok\r\n")
        transcript.close()
        text = path.read_text()
        assert secret[:6].decode() not in text and secret[-8:].decode() not in text, (cut, text)
        assert [t for _, d, t in parse(path) if d == "<"] == ["AUTH PLAIN ***"], cut
