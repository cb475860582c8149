"""queue/postfix-queue: into a real private Postfix's cleanup service, as Postfix's pickup does it."""

from __future__ import annotations

import pytest
from conftest import dialogue
from downstream import Postfix

# as sent: the first body line is stuffed, so the message line is ".leading dot"
BODY = "From: <a@example.org>\r\nSubject: via cleanup\r\n\r\n..leading dot\r\n" + "x" * 1500 + "\r\nlast line"


@pytest.fixture(scope="module")
def postfix():
    pf = Postfix({"ok": ""}, users=("bob", "carol"))
    pf.start()
    yield pf
    pf.stop()


def send(smtp, *rcpts, body=BODY):
    lines = ["EHLO client.example", "MAIL FROM:<a@example.org>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body))


def test_queued_by_cleanup_and_delivered(smtp, postfix):
    smtp.plugins("rcpt_ok", f"queue/postfix-queue {postfix.spool / 'public' / 'cleanup'}")
    smtp.write("max_line_length", "4000")  # so that a line longer than one cleanup record gets through
    r = send(smtp, "bob@example.test", "carol@example.test")
    assert r.codes[-2] == 250, r.log
    assert b"250 2.0.0 Queued! (Queue-Id: " in r.stdout
    [bob] = postfix.messages("bob")
    [carol] = postfix.messages("carol")
    assert bob.endswith(b"\n.leading dot\n" + b"x" * 1500 + b"\nlast line\n")  # over one record: joined back
    assert b"Subject: via cleanup" in bob and b"Received: from client.example" in bob and carol.endswith(b"last line\n")


def test_no_cleanup_to_reach_is_451(smtp, tmp_path):
    smtp.plugins("rcpt_ok", f"queue/postfix-queue {tmp_path / 'no-cleanup'}")
    r = send(smtp, "bob@example.test", body="Subject: s\r\n\r\nx")
    assert r.codes[-2] == 451 and "cannot reach cleanup at" in r.log
