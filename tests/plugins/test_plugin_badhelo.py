"""plugins/badhelo.py: only the config/badhelo list (qpsmtpd's old check_spamhelo); 550 without hanging up."""

import pytest
from conftest import dialogue


@pytest.fixture
def bh(smtp):
    smtp.write("badhelo", "aol.com\n^friend\\d+\\.\n")
    smtp.plugins("badhelo", "relay", "rcpt_ok")
    return smtp


def session(smtp, name, **env):
    return smtp.run(dialogue(f"EHLO {name}", "EHLO mail.example.org", "QUIT"), **env)


def test_listed_name_refused_session_goes_on(bh):
    r = session(bh, "AOL.com")
    assert r.codes == [220, 550, 250, 221]
    assert b"550 5.7.1 I do not believe you are aol.com.\r\n" in r.stdout


def test_pattern_refused(bh):
    r = session(bh, "friend7.example")
    assert b"550 5.7.1 Your HELO hostname is not allowed\r\n" in r.stdout


def test_no_other_helo_checks(bh):
    # `localhost` from a remote address and plain IPs are the helo plugin's business, not this one's.
    assert session(bh, "localhost").codes == [220, 250, 250, 221]
    assert session(bh, "192.0.2.10").codes == [220, 250, 250, 221]


def test_reject_type_disconnect(bh):
    bh.plugins("badhelo reject_type disconnect", "rcpt_ok")
    assert session(bh, "aol.com").codes == [220, 550]


def test_reject_0(bh):
    bh.plugins("badhelo reject 0", "rcpt_ok")
    r = session(bh, "aol.com")
    assert r.codes == [220, 250, 250, 221] and "fail, tolerated: in badhelo" in r.log


def test_relay_client_not_checked(bh):
    assert session(bh, "aol.com", RELAYCLIENT="").codes == [220, 250, 250, 221]
