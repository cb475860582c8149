"""milter: real milters from Debian's packages, started here. opendkim signs an internal client's mail (simple
canonicalization: our header handling must be byte for byte) and our dkim plugin verifies the signature from
a real DNS server; opendkim adds its Authentication-Results for others; a milter down, or hanging, follows
default_action."""

import pytest
from dnsserver import dns_server
from engines import Opendkim, Silent, engine, free_port

from qpsmtpd_stdio.testing import Harness

MSG = ("From: alice@example.org\nTo: bob@example.test\nSubject: signed\n   folded, with three spaces\n"
       "Date: Mon, 1 Jan 2024 00:00:00 +0000\n\nHello.\n.a line that starts with a dot\n\n")


@pytest.fixture(scope="module")
def opendkim():
    yield from engine(Opendkim)


@pytest.fixture(scope="module")
def dns(tmp_path_factory, opendkim):
    key = opendkim.public_key()
    yield from dns_server(tmp_path_factory, [f'txt-record=test._domainkey.example.org,"{key[:200]}","{key[200:]}"'])


def harness(tmp_path, *plugins):
    h = Harness(tmp_path, plugins=["relay", *plugins, "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    return h


def send(h, body=MSG, **kw):
    return h.run("EHLO c.example", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=body, **kw)


def verified(tmp_path, dns, message: bytes) -> str:
    """Our dkim plugin's verdict on `message`, received from outside."""
    h = harness(tmp_path / "verify", "dkim")
    h.config("dns_servers", dns.servers_line)
    r = send(h, message.decode().replace("\r\n", "\n").rstrip("\n") + "\n")
    assert r.codes[5] == 250, r.log_text
    return r.queued[0].header.get("Authentication-Results")


def test_opendkim_signs_and_our_dkim_plugin_verifies(tmp_path, opendkim, dns):
    pytest.importorskip("dkim", reason="dkimpy (pip install 'qpsmtpd-stdio[dkim]') verifies the signature")
    r = send(harness(tmp_path, f"milter opendkim 127.0.0.1:{opendkim.port}"))  # 192.0.2.10: an internal host
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.log_text
    message = r.queued[0].data
    assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.org; s=test;\r\n\t")
    assert b"\r\nSubject: signed\r\n   folded, with three spaces\r\n" in message  # untouched, byte for byte
    result = verified(tmp_path, dns, message)
    assert "dkim=pass header.d=example.org" in result, result
    tampered = message.replace(b"three spaces", b"two spaces")
    assert "dkim=fail" in verified(tmp_path / "t", dns, tampered)


def test_opendkim_adds_its_results_for_an_outside_client(tmp_path, opendkim):
    r = send(harness(tmp_path, f"milter opendkim {opendkim.port}"), remote_ip="198.51.100.7")
    assert r.codes[5] == 250
    fields = r.queued[0].header.get_all("Authentication-Results")
    assert any(f.startswith("mx.example.test; dkim=none") for f in fields), fields
    assert r.queued[0].header.get("DKIM-Signature") is None  # not an internal host: verified, not signed


@pytest.mark.parametrize("action, codes", [
    ("tempfail", [220, 250, 450, 503, 503, 221]),
    ("reject", [220, 250, 550, 503, 503, 221]),
    ("accept", [220, 250, 250, 250, 354, 250, 221]),
])
def test_a_milter_that_is_down_follows_default_action(tmp_path, action, codes):
    port = free_port()  # nothing listens there
    h = harness(tmp_path, f"milter gone 127.0.0.1:{port} default_action {action}")
    r = h.run("EHLO c.example", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
              body=MSG)
    assert r.codes == codes, r.log_text
    assert f"milter gone (127.0.0.1:{port}): connect:" in r.log_text
    assert len(r.queued) == (1 if action == "accept" else 0)


def test_a_hanging_milter_times_out(tmp_path):
    silent = Silent()
    try:
        h = harness(tmp_path, f"milter hangs 127.0.0.1:{silent.port} connect_timeout 1")
        r = send(h)
        assert r.codes[2] == 450 and "timed out" in r.log_text and not r.queued
    finally:
        silent.close()


def test_two_milters_in_order(tmp_path, opendkim):
    """The same opendkim twice, as `milter:1` and `milter:2`: the second signs what the first signed."""
    h = harness(tmp_path, f"milter:1 first {opendkim.port}", f"milter:2 second {opendkim.port}")
    r = send(h)
    assert r.codes[5] == 250, r.log_text
    assert r.queued[0].data.count(b"DKIM-Signature: ") == 2


# Replies no installed milter gives on demand: a scripted milter (tests/support/scriptedmilter.py).

from scriptedmilter import ScriptedMilter, addheader, chgheader, insheader, reply  # noqa: E402

from qpsmtpd_stdio import milter  # noqa: E402


def scripted(tmp_path, m, extra=""):
    return harness(tmp_path, f"milter scripted 127.0.0.1:{m.port}{extra}")


@pytest.mark.parametrize("stage, answer, codes", [
    (b"M", reply(b"r"), [220, 250, 550, 503, 503, 221]),
    (b"M", reply(b"t"), [220, 250, 450, 503, 503, 221]),
    (b"R", reply(b"r"), [220, 250, 250, 550, 503, 221]),
    (b"R", reply(b"y", b"551 5.1.6 User has moved\0"), [220, 250, 250, 551, 503, 221]),
    (b"M", reply(b"y", b"452 4.3.1 Insufficient system storage\0"), [220, 250, 452, 503, 503, 221]),
    (b"E", reply(b"r"), [220, 250, 250, 250, 354, 554, 221]),
    (b"E", reply(b"y", b"452 4.3.1 Insufficient system storage\0"), [220, 250, 250, 250, 354, 451, 221]),
    (b"C", reply(b"t"), [421]),  # tempfail at connect: the greeting says so
])
def test_refusals_at_each_stage(tmp_path, stage, answer, codes):
    with ScriptedMilter({stage: [answer]}) as m:
        r = send(scripted(tmp_path, m))
    assert r.codes == codes, r.log_text
    assert not r.queued
    if answer[4:5] == b"y":  # its code (at end of data, the stage's of the same class), enhanced code and text
        at = {b"E": 5, b"R": 3, b"M": 2}[stage]
        assert r.replies[at].text.split(" ", 1)[0] in ("5.1.6", "4.3.1"), r.replies[at]


def test_header_changes_byte_for_byte(tmp_path):
    eob = [insheader(0, "X-Top", " first\n\tfolded"), addheader("X-End", "last"),
           chgheader(1, "Subject", "changed"), chgheader(1, "To", ""), reply(b"c")]
    with ScriptedMilter({b"E": eob}, protocol=milter.P_HDR_LEADSPC) as m:
        r = send(scripted(tmp_path, m))
    data = r.queued[0].data
    assert data.startswith(b"X-Top: first\r\n\tfolded\r\nReceived: ")
    assert b"\r\nSubject:changed\r\n" in data  # LEADSPC: the value exactly as sent, no space added
    assert b"\r\nTo:" not in data and b"X-End:last\r\n\r\nHello." in data


def test_envelope_and_body_changes(tmp_path):
    eob = [reply(b"+", b"<carol@example.test>\0"), reply(b"-", b"<bob@example.test>\0"),
           reply(b"e", b"<bounces@example.org>\0"), reply(b"b", b"New body.\r\n"), reply(b"a")]
    with ScriptedMilter({b"E": eob}) as m:
        r = send(scripted(tmp_path, m))
    q = r.queued[0]
    assert (q.sender, q.recipients, q.body) == ("bounces@example.org", ["carol@example.test"], b"New body.\r\n")


def test_discard_and_quarantine(tmp_path, smtp):
    from conftest import dialogue

    with ScriptedMilter({b"E": [reply(b"d")]}) as m:
        smtp.plugins("relay", f"milter scripted 127.0.0.1:{m.port}", "rcpt_ok", f"queue/maildir {smtp.maildir}")
        r = smtp.run(dialogue("EHLO c.example", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.test>",
                              "DATA", "QUIT", body="From: alice@example.org\r\nSubject: x\r\n\r\nHello."))
    assert r.codes[-2:] == [250, 221] and smtp.messages() == [], r.log
    assert "discarded, as milter scripted asked" in r.log
    with ScriptedMilter({b"E": [reply(b"q", b"looks odd\0"), reply(b"c")]}) as m:
        r = send(scripted(tmp_path / "q", m))
    assert r.codes[5] == 250 and r.queued[0].header.get("X-Quarantine") == "scripted: looks odd"


@pytest.mark.parametrize("bad", [
    addheader("X-Evil", "one\nInjected: yes"),  # a new field smuggled in as a second line
    addheader("Bad Name", "x"),
    addheader("X-Ctl", "a\x01b"),
    reply(b"+", b"<x@example.test>\0"),  # an action it did not negotiate (actions below: headers only)
])
def test_a_malformed_change_is_a_broken_milter(tmp_path, bad):
    with ScriptedMilter({b"E": [bad, reply(b"c")]}, actions=milter.ADDHDRS) as m:
        r = send(scripted(tmp_path, m))
    assert r.codes[5] == 451 and not r.queued, r.log_text
    assert "milter scripted" in r.log_text and "default_action tempfail" in r.log_text


def test_what_the_milter_is_told(tmp_path):
    with ScriptedMilter({}) as m:
        r = send(scripted(tmp_path, m), remote_ip="198.51.100.7")
    commands = [c for c, _ in m.seen]
    assert commands[:2] == [b"O", b"D"] and b"C" in commands and commands[-1] == b"Q"
    assert commands.index(b"H") < commands.index(b"M") < commands.index(b"R") < commands.index(b"T") \
        < commands.index(b"N") < commands.index(b"E")
    connect = next(d for c, d in m.seen if c == b"C")
    assert connect == b"unknown\x004" + (40000).to_bytes(2, "big") + b"198.51.100.7\x00"
    macros = b"".join(d for c, d in m.seen if c == b"D")
    for name in (b"{client_addr}\x00198.51.100.7", b"j\x00mx.example.test", b"{mail_addr}\x00alice@example.org",
                 b"{rcpt_addr}\x00bob@example.test", b"{daemon_name}", b"{if_addr}", b"\x00i\x00"):
        assert name in macros, name
    headers = [d for c, d in m.seen if c == b"L"]
    assert b"Subject\x00signed\n   folded, with three spaces\x00" in headers  # no LEADSPC: the space is dropped
    body = b"".join(d for c, d in m.seen if c == b"B")
    assert body == r.queued[0].body and b"\r\n.a line that starts with a dot\r\n" in body  # unstuffed


def test_clamav_milter_refuses_a_virus(tmp_path):
    """clamav-milter in front of a real clamd with a test signature (no freshclam here)."""
    from engines import EICAR, Clamd, ClamavMilter, program

    if program("clamav-milter") is None or program("clamd") is None:
        pytest.skip("clamav-milter and clamd not installed (Debian: apt-get install clamav-milter clamav-daemon)")
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="qpsmtpd-test-clamav-milter-"))
    directory.chmod(0o755)
    clamd = Clamd(directory / "clamd").start()
    try:
        cm = ClamavMilter(directory / "milter", clamd).start()
        try:
            h = harness(tmp_path, f"milter clamav 127.0.0.1:{cm.port}")
            r = send(h, MSG.replace("Hello.", EICAR.decode()))
            assert r.codes[5] == 554 and not r.queued, r.log_text
            r = send(h)
            assert r.codes[5] == 250 and r.queued[0].header.get("X-Virus-Status") == "Clean", r.log_text
        finally:
            cm.stop()
    finally:
        clamd.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_flood_of_changes_is_bounded(tmp_path):
    flood = [addheader(f"X-F{i}", "v") for i in range(1001)] + [reply(b"c")]
    with ScriptedMilter({b"E": flood}) as m:
        r = send(scripted(tmp_path, m))
    assert r.codes[5] == 451 and not r.queued and "more than 1000 changes" in r.log_text


def test_listed_after_rcpt_ok_it_still_hears_every_stage(tmp_path, opendkim):
    """rcpt_ok answers OK at RCPT, so a milter listed after it never ran there: it hears of the recipients
    before DATA (opendkim would otherwise wait for them and time out), and a refusal then covers the message."""
    with ScriptedMilter({}) as m:
        h = Harness(tmp_path, plugins=["relay", "rcpt_ok", f"milter scripted 127.0.0.1:{m.port}"])
        h.config("rcpthosts", "example.test")
        r = h.run("EHLO c.example", "MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.test>",
                  "RCPT TO:<carol@example.test>", "DATA", "QUIT", body=MSG)
    assert r.codes[-2] == 250, r.log_text
    commands = [c for c, _ in m.seen]
    assert commands.count(b"R") == 2 and commands.index(b"M") < commands.index(b"R") < commands.index(b"T")
    h = Harness(tmp_path / "o", plugins=["relay", "rcpt_ok", f"milter opendkim 127.0.0.1:{opendkim.port} timeout 5"])
    h.config("rcpthosts", "example.test")
    r = send(h)
    assert r.codes[5] == 250 and r.queued[0].data.startswith(b"DKIM-Signature: "), r.log_text
    with ScriptedMilter({b"R": [reply(b"r")]}) as m:
        h = Harness(tmp_path / "r", plugins=["relay", "rcpt_ok", f"milter scripted 127.0.0.1:{m.port}"])
        h.config("rcpthosts", "example.test")
        r = send(h)
    assert r.codes[3:6] == [250, 354, 554] and not r.queued
