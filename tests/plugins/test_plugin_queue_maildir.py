"""plugins/queue/maildir.py: tmp/ -> new/, LF line ends, Return-Path/Delivered-To, %d/%l templates, MODE, failures."""

import os
import re
import stat

import pytest
from conftest import dialogue, simple_session

BODY = ("From: a@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-Id: <m1@example.org>\r\n\r\n"
        "Hello.\r\n..dot")


def send(smtp, *rcpts, body=BODY, sender="a@example.org"):
    lines = ["EHLO c.example", f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA", "QUIT"]
    return smtp.run(dialogue(*lines, body=body))


def test_creates_maildir_and_delivers_with_lf_line_ends(smtp):
    assert not smtp.maildir.exists()
    r = send(smtp, "bob@example.test", "carol@example.test")
    assert r.codes == [220, 250, 250, 250, 250, 354, 250, 221]
    assert b"250 2.0.0 Queued! <m1@example.org>\r\n" in r.stdout
    assert sorted(os.listdir(smtp.maildir)) == ["cur", "new", "tmp"]
    [msg] = smtp.messages()
    assert b"\r" not in msg
    assert msg.startswith(b"Return-Path: <a@example.org>\nDelivered-To: bob@example.test\n"
                          b"Delivered-To: carol@example.test\nReceived: from c.example")
    assert msg.endswith(b"\n\nHello.\n.dot\n")
    assert smtp.leftovers() == []
    [name] = os.listdir(smtp.maildir / "new")
    assert re.fullmatch(r"\d+\.M\d+P\d+Q1\.[^/:]+", name), name
    assert stat.S_IMODE((smtp.maildir / "new" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((smtp.maildir / "new").stat().st_mode) == 0o700


def test_null_sender_and_no_message_id(smtp):
    r = send(smtp, "bob@example.test", sender="", body="Subject: bounce\r\n\r\nx")
    assert r.lines[-2] == b"250 2.0.0 Queued!"
    assert smtp.messages()[0].startswith(b"Return-Path: <>\n")


def test_each_message_its_own_file(smtp):
    for _ in range(3):
        send(smtp, "bob@example.test")
    assert len(smtp.messages()) == 3 and len(set(os.listdir(smtp.maildir / "new"))) == 3


def test_template_one_copy_per_recipient(smtp):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir} %d/%l")
    r = send(smtp, "Bob@Example.TEST", "carol@example.test", "bob@example.test")
    assert r.codes[-2:] == [250, 221]
    bob = smtp.maildir / "example.test" / "bob"
    carol = smtp.maildir / "example.test" / "carol"
    # Two copies in one Maildir; file names do not order them (Maildir names are unique, not sorted).
    assert sorted(m.split(b"\n")[1] for m in smtp.messages(bob)) == [b"Delivered-To: Bob@Example.TEST",
                                                                     b"Delivered-To: bob@example.test"]
    [msg] = smtp.messages(carol)
    assert msg.startswith(b"Return-Path: <a@example.org>\nDelivered-To: carol@example.test\nReceived: ")
    assert not (smtp.maildir / "new").exists()


def test_template_characters_made_safe(smtp):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir} %u")
    r = send(smtp, '"a/../b c"@example.test', "x+tag@example.test")
    assert r.codes[-2:] == [250, 221]
    assert sorted(os.listdir(smtp.maildir)) == ["_a_.._b_c_@example.test", "x+tag@example.test"]


@pytest.mark.parametrize("template", ["%d/%l", "%d", "x/%d/%l"])
def test_bare_postmaster_goes_to_the_main_maildir(smtp, template):
    # <postmaster> has no domain: %d/%l would be "/postmaster". It is delivered, with the others.
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir} {template}")
    r = send(smtp, "postmaster", "bob@example.test")
    assert r.codes == [220, 250, 250, 250, 250, 354, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert b"Delivered-To: postmaster\n" in msg
    assert "FATAL PLUGIN ERROR" not in r.log


def test_mode_argument(smtp):
    # Group-writable, exactly, even under the usual umask 022.
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir} %l 770")
    old = os.umask(0o022)
    try:
        smtp.run(simple_session())
    finally:
        os.umask(old)
    new = smtp.maildir / "bob" / "new"
    assert stat.S_IMODE(new.stat().st_mode) == 0o770
    assert stat.S_IMODE(next(new.iterdir()).stat().st_mode) == 0o660


@pytest.mark.parametrize("args, error", [("", "needs a Maildir path"), ("{m} fixed", "holds none of"),
                                         ("{m} %l rwx", "not an octal number")])
def test_bad_arguments_refuse_the_session(smtp, args, error):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {args.format(m=smtp.maildir)}".strip())
    r = smtp.run(simple_session())
    assert r.codes == [421] and error in r.log
    assert smtp.messages() == []


def test_read_only_maildir_answers_451_and_leaves_nothing(smtp):
    for sub in ("tmp", "new", "cur"):
        (smtp.maildir / sub).mkdir(parents=True)
    (smtp.maildir / "new").chmod(0o500)
    try:
        if os.access(smtp.maildir / "new", os.W_OK):
            pytest.skip("running as a user that ignores directory permissions")
        r = send(smtp, "bob@example.test")
    finally:
        (smtp.maildir / "new").chmod(0o700)
    assert r.codes[-2:] == [451, 221]
    assert smtp.messages() == [] and smtp.leftovers() == []


def test_unwritable_path_answers_451(smtp):
    (smtp.root / "file").write_text("not a dir")
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.root / 'file' / 'Maildir'}")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2:] == [451, 221] and "cannot deliver" in r.log


def test_link_failure_answers_451_and_cleans_tmp(smtp):
    # new/ is a file: the link fails after the message was written to tmp/.
    smtp.maildir.mkdir()
    for sub in ("tmp", "cur"):
        (smtp.maildir / sub).mkdir()
    (smtp.maildir / "new").write_text("")
    r = send(smtp, "bob@example.test")
    assert r.codes[-2:] == [451, 221]
    assert smtp.leftovers() == []
