"""SMTPUTF8 to the downstream (RFC 6531): passed on only when offered; else 553 5.6.7 (3.7.5), nothing sent."""

from __future__ import annotations

import shutil
import socketserver
import threading

import pytest
from conftest import dialogue
from downstream import SmtpSink, short_tmpdir

BODY = "From: a@example.org\r\nSubject: utf8\r\n\r\nhello"


class Recorder:
    """A tiny SMTP/LMTP server on loopback that advertises what it is told and records every command."""

    def __init__(self, extensions=("PIPELINING", "8BITMIME", "SMTPUTF8", "DSN"), lmtp=False):
        self.commands: list[str] = []
        self.messages = 0
        recorder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                out = self.wfile
                out.write(b"220 recorder ESMTP\r\n")
                rcpts = 0
                while line := self.rfile.readline():
                    cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
                    recorder.commands.append(cmd)
                    verb = cmd.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "LHLO"):
                        out.write(b"".join(f"250-{e}\r\n".encode() for e in ("recorder", *extensions[:-1]))
                                  + f"250 {extensions[-1] if extensions else 'ok'}\r\n".encode())
                    elif verb == "MAIL" or verb == "RSET":
                        rcpts = 0
                        out.write(b"250 2.1.0 ok\r\n")
                    elif verb == "RCPT":
                        rcpts += 1
                        out.write(b"250 2.1.5 ok\r\n")
                    elif verb == "DATA":
                        out.write(b"354 go\r\n")
                        out.flush()
                        while (body := self.rfile.readline()) and body != b".\r\n":
                            pass
                        recorder.messages += 1
                        out.write(b"250 2.0.0 queued\r\n" * (rcpts if lmtp else 1))
                    elif verb == "QUIT":
                        out.write(b"221 bye\r\n")
                        return
                    else:
                        out.write(b"500 what\r\n")
                    out.flush()

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def mail(self) -> list[str]:
        return [c for c in self.commands if c.upper().startswith("MAIL ")]

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def send(smtp, plugin, sender="a@example.org", rcpt="bob@example.test", utf8=True):
    smtp.plugins("relay", "rcpt_ok", plugin)
    mail = f"MAIL FROM:<{sender}>" + (" SMTPUTF8" if utf8 else "")
    r = smtp.run(dialogue("EHLO c", mail, f"RCPT TO:<{rcpt}>", "DATA", "QUIT", body=BODY))
    assert r.codes[:5] == [220, 250, 250, 250, 354], r.stdout
    return r.codes[5], r.lines[-2].decode()


def test_forward_passes_smtputf8_to_a_host_that_offers_it(smtp):
    with Recorder() as rec:
        code, text = send(smtp, f"queue/smtp-forward {rec.address}", sender="jösé@example.org", rcpt="bøb@example.test")
        assert code == 250, text
        assert rec.mail() == ["MAIL FROM:<jösé@example.org> SMTPUTF8"]
        assert "RCPT TO:<bøb@example.test>" in rec.commands


def test_forward_does_not_send_smtputf8_unless_needed(smtp):
    with Recorder() as rec:
        code, text = send(smtp, f"queue/smtp-forward {rec.address}", utf8=False)
        assert code == 250 and rec.mail() == ["MAIL FROM:<a@example.org>"]


def test_forward_non_ascii_addresses_to_a_host_without_smtputf8_get_553(smtp):
    with SmtpSink() as sink:  # smtp-sink does not advertise SMTPUTF8
        code, text = send(smtp, f"queue/smtp-forward {sink.address}", rcpt="bøb@example.test")
        assert code == 553 and "5.6.7 non-ASCII addresses not permitted" in text, text
        assert sink.dumps() == []


def test_forward_smtputf8_with_ascii_envelope_to_a_host_without_it_gets_553(smtp):
    with Recorder(extensions=("8BITMIME",)) as rec:
        code, text = send(smtp, f"queue/smtp-forward {rec.address}")
        assert code == 553 and "5.6.7 SMTPUTF8 is required" in text, text
        assert rec.mail() == [] and rec.messages == 0


def test_forward_tries_the_next_host_for_smtputf8(smtp):
    with SmtpSink() as sink, Recorder() as rec:
        code, text = send(smtp, f"queue/smtp-forward {sink.address},{rec.address}", rcpt="bøb@example.test")
        assert code == 250 and f"Queued by {rec.address}" in text, text
        assert sink.dumps() == [] and rec.mail() == ["MAIL FROM:<a@example.org> SMTPUTF8"]


def test_forward_temporary_failure_elsewhere_is_not_553(smtp):
    with SmtpSink() as sink, SmtpSink("-Q", "connect") as closing:
        code, text = send(smtp, f"queue/smtp-forward {sink.address},{closing.address}", rcpt="bøb@example.test")
        assert code == 451, text  # the host that failed might have offered SMTPUTF8: try again later
        assert sink.dumps() == [] and closing.dumps() == []


def test_lmtp_passes_smtputf8_when_offered(smtp):
    with Recorder(lmtp=True) as rec:
        code, text = send(smtp, f"queue/lmtp {rec.address}", rcpt="bøb@example.test")
        assert code == 250, text
        assert rec.mail() == ["MAIL FROM:<a@example.org> SMTPUTF8"] and rec.messages == 1


@pytest.mark.parametrize("rcpt,words", [("bøb@example.test", "non-ASCII addresses not permitted"),
                                        ("bob@example.test", "SMTPUTF8 is required")])
def test_lmtp_without_smtputf8_gets_553(smtp, rcpt, words):
    where = short_tmpdir("lmtp")
    try:
        with SmtpSink(lmtp=True, unix=str(where / "lmtp.sock")) as sink:
            code, text = send(smtp, f"queue/lmtp unix:{where / 'lmtp.sock'}", rcpt=rcpt)
            assert code == 553 and f"5.6.7 {words}" in text, text
            assert sink.dumps() == []
    finally:
        shutil.rmtree(where, ignore_errors=True)
