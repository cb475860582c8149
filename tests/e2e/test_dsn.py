"""DSN (RFC 3461): RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT are checked, kept, and passed on downstream."""

from __future__ import annotations

import shutil

import pytest
from conftest import dialogue
from downstream import SmtpSink, short_tmpdir

from qpsmtpd_stdio.esmtp import check_dsn_param, is_xtext

BODY = "From: a@example.org\r\nSubject: dsn\r\n\r\nhello"
MAIL = "MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ+2B314"
RCPTS = ["RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test",
         "RCPT TO:<carol@example.test> NOTIFY=NEVER",
         "RCPT TO:<dave@example.test>"]
SHOW_PARAMS = """from qpsmtpd_stdio import LOGWARN
def hook_data_post(plugin, txn):
    plugin.log(LOGWARN, f"mail_params={sorted(txn.mail_params.items())} rcpt_params={txn.rcpt_params}")
"""


def codes_of(smtp, *lines):
    return smtp.run(dialogue("EHLO c", *lines, "QUIT")).codes[2:-1]


@pytest.mark.parametrize("value,ok", [("", True), ("abc", True), ("a+2Bb+3D", True), ("a+2bb", False),
                                      ("a+2", False), ("a=b", False), ("a b", False), ("é", False)])
def test_xtext(value, ok):
    assert is_xtext(value) is ok


def test_ehlo_advertises_dsn(smtp):
    r = smtp.run(dialogue("EHLO c", "QUIT"))
    assert b"250-DSN" in r.stdout or b"250 DSN" in r.stdout


def test_good_parameters_are_kept_on_the_transaction(smtp):
    smtp.plugin("show", SHOW_PARAMS)
    smtp.plugins("show", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", MAIL, *RCPTS, "DATA", "QUIT", body=BODY))
    assert r.codes == [220, 250, 250, 250, 250, 250, 354, 250, 221], r.stdout
    assert "mail_params=[('ENVID', 'QQ+2B314'), ('RET', 'HDRS')]" in r.log
    assert ("rcpt_params=[{'NOTIFY': 'SUCCESS,FAILURE', 'ORCPT': 'rfc822;bob@example.test'}, "
            "{'NOTIFY': 'NEVER'}, {}]") in r.log


@pytest.mark.parametrize("params", ["RET=ALL", "RET", "ENVID=", "ENVID=a+zz", "ENVID=" + "x" * 101, "RET=FULL RET=HDRS"])
def test_bad_mail_parameters_get_501(smtp, params):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", f"MAIL FROM:<a@example.org> {params}", "QUIT"))
    assert r.codes[2] == 501 and b"5.5.4" in r.lines[-2], r.stdout


@pytest.mark.parametrize("params", ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "NOTIFY=", "NOTIFY=DELAY,DELAY",
                                    "ORCPT=bob@example.test", "ORCPT=rfc822;", "ORCPT=;bob@x", "ORCPT=rfc822;a+4",
                                    "ORCPT=rfc+822;bob@x"])
def test_bad_rcpt_parameters_get_501(smtp, params):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@example.org>", f"RCPT TO:<bob@example.test> {params}", "QUIT"))
    assert r.codes[2:4] == [250, 501] and b"5.5.4" in r.lines[-2], r.stdout


def test_other_parameters_are_still_refused(smtp):
    smtp.plugins("relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    assert codes_of(smtp, "MAIL FROM:<a@example.org> FOO=1") == [555]
    assert codes_of(smtp, "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test> FOO=1") == [250, 555]
    assert codes_of(smtp, "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test> notify=delay") == [250, 250]
    r = smtp.run(dialogue("HELO c", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test> NOTIFY=NEVER", "QUIT"))
    assert r.codes[2:4] == [250, 555]  # no parameters without EHLO


def test_check_dsn_param_values():
    assert check_dsn_param("RET", "full") is None and check_dsn_param("NOTIFY", "delay,failure") is None
    assert check_dsn_param("ORCPT", "utf-8;bob@example.test") is None
    assert check_dsn_param("ORCPT", "-x;bob@example.test") is not None


# End to end: smtp-sink records the MAIL and RCPT arguments it got ---------------------------
def relay(smtp, plugin: str):
    smtp.plugins("relay", "rcpt_ok", plugin)
    return smtp.run(dialogue("EHLO c", MAIL, *RCPTS, "DATA", "QUIT", body=BODY))


PASSED_RCPTS = ["<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test",
                "<carol@example.test> NOTIFY=NEVER", "<dave@example.test>"]
DROPPED_RCPTS = ["<bob@example.test>", "<carol@example.test>", "<dave@example.test>"]


def test_smtp_forward_passes_dsn_to_a_dsn_host(smtp):
    with SmtpSink() as sink:
        r = relay(smtp, f"queue/smtp-forward {sink.address}")
        assert r.codes[-2:] == [250, 221], r.stdout
        [dump] = sink.dumps()
        assert dump["mail"] == "<a@example.org> RET=HDRS ENVID=QQ+2B314"
        assert dump["rcpts"] == PASSED_RCPTS


def test_smtp_forward_drops_dsn_for_a_host_without_it(smtp):
    with SmtpSink("-N") as sink:
        r = relay(smtp, f"queue/smtp-forward {sink.address}")
        assert r.codes[-2:] == [250, 221], r.stdout
        [dump] = sink.dumps()
        assert dump["mail"] == "<a@example.org>" and dump["rcpts"] == DROPPED_RCPTS


@pytest.mark.parametrize("options,mail,rcpts", [((), "<a@example.org> RET=HDRS ENVID=QQ+2B314", PASSED_RCPTS),
                                                (("-N",), "<a@example.org>", DROPPED_RCPTS)])
def test_lmtp_passes_dsn_only_to_a_dsn_server(smtp, options, mail, rcpts):
    where = short_tmpdir("lmtp")
    try:
        with SmtpSink(*options, lmtp=True, unix=str(where / "lmtp.sock")) as sink:
            r = relay(smtp, f"queue/lmtp unix:{where / 'lmtp.sock'}")
            assert r.codes[-2:] == [250, 221], r.stdout
            [dump] = sink.dumps()
            assert dump["mail"] == mail and dump["rcpts"] == rcpts
    finally:
        shutil.rmtree(where, ignore_errors=True)
