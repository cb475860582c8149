"""bogus_bounce: a bounce (null sender) to more than one recipient, or with a Return-Path, is bogus."""

from __future__ import annotations

import pytest

from qpsmtpd_stdio.testing import Harness

BODY = "From: MAILER-DAEMON@example.org\nSubject: failure notice\n\nsorry"


def run(tmp_path, line, sender="<>", rcpts=("a@example.test",), body=BODY):
    h = Harness(tmp_path, plugins=[line, "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h.run("EHLO c", f"MAIL FROM:{sender}", *(f"RCPT TO:<{r}>" for r in rcpts), "DATA", "QUIT", body=body)


@pytest.mark.parametrize("line, code", [
    ("bogus_bounce", 250), ("bogus_bounce log", 250), ("bogus_bounce deny", 554), ("bogus_bounce denysoft", 451),
    ("bogus_bounce reject 1", 554), ("bogus_bounce reject 1 reject_type temp", 451),
])
def test_a_bounce_to_two_recipients(tmp_path, line, code):
    r = run(tmp_path, line, rcpts=("a@example.test", "b@example.test"))
    assert r.codes[-2] == code, r.output
    if code != 250:
        assert "This bounce message does not have 1 recipient" in r.replies[-2].text
        assert not r.queued
    else:
        assert "fail, tolerated: bogus bounce to 2 recipients" in r.log_text


@pytest.mark.parametrize("return_path, code", [("<x@y.example>", 554), ("<>", 250), (None, 250)])
def test_a_bounce_with_a_return_path(tmp_path, return_path, code):
    body = (f"Return-Path: {return_path}\n" if return_path else "") + BODY
    r = run(tmp_path, "bogus_bounce deny", body=body)
    assert r.codes[-2] == code
    if code == 554:
        assert "A bounce return path must be empty (RFC 3834)" in r.replies[-2].text


def test_ordinary_mail_is_not_a_bounce(tmp_path):
    r = run(tmp_path, "bogus_bounce deny", sender="<a@example.org>", rcpts=("a@example.test", "b@example.test"))
    assert r.codes[-2] == 250 and len(r.queued) == 1
