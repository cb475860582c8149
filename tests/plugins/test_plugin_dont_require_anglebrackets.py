"""plugins/dont_require_anglebrackets.py: MAIL FROM:user@dom and RCPT TO:user@dom are read as <user@dom>."""

from conftest import dialogue


def session(smtp, *lines):
    return smtp.run(dialogue("EHLO client.example", *lines, "QUIT"))


def test_without_the_plugin_brackets_are_required(smtp):
    r = session(smtp, "MAIL FROM:a@example.org")
    assert r.codes == [220, 250, 501, 221]


def test_mail_and_rcpt_without_brackets_delivered(smtp):
    smtp.plugins("dont_require_anglebrackets", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO client.example", "MAIL FROM:a@example.org", "RCPT TO:bob@example.test", "DATA",
                          "QUIT", body="Subject: x\r\n\r\nhi"))
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert b"250 2.1.0 <a@example.org>, sender OK - how exciting to get mail from you!\r\n" in r.stdout
    assert b"250 2.1.5 <bob@example.test>, recipient ok\r\n" in r.stdout
    [msg] = smtp.messages()
    assert msg.startswith(b"Return-Path: <a@example.org>\nDelivered-To: bob@example.test\n")
    assert "added MAIL angle brackets" in r.log and "added RCPT angle brackets" in r.log


def test_parameters_after_a_bare_path(smtp):
    smtp.plugins("dont_require_anglebrackets", "relay", "rcpt_ok")
    r = session(smtp, "MAIL FROM: a@example.org SIZE=100 BODY=8BITMIME", "RCPT TO:bob@example.test")
    assert r.codes == [220, 250, 250, 250, 221]


def test_bracketed_paths_untouched(smtp):
    smtp.plugins("dont_require_anglebrackets", "relay", "rcpt_ok")
    r = session(smtp, "MAIL FROM:<>", "RCPT TO:<bob@example.test>")
    assert r.codes == [220, 250, 250, 250, 221]
    assert "angle brackets" not in r.log


def test_still_validated_after_bracketing(smtp):
    smtp.plugins("dont_require_anglebrackets", "relay", "rcpt_ok")
    r = session(smtp, "MAIL FROM:a@b@example.org", "MAIL FROM:<a@example.org", "MAIL FROM:a@example.org>")
    assert r.codes == [220, 250, 501, 501, 501, 221]
    r = session(smtp, "MAIL FROM:a@example.org", "RCPT TO:bob@elsewhere.example")
    assert r.codes == [220, 250, 250, 550, 221]  # rcpt_ok still judges the bracketed path
