"""AUTH (RFC 4954): the SASL core, the policy, the auth plugins, and real clients (swaks, smtplib) over TLS.

Policy and plugin behaviour run in-process (qpsmtpd_stdio.testing) with
tls_before_auth and disable_plaintext_auth off, since that harness has no
TLS; everything about TLS before AUTH runs the real binary with the
throw-away certificate of test_tls.py, over pipes, a socketpair and xinetd.
"""

from __future__ import annotations

import base64
import hmac
import re
import shutil
import smtplib
import subprocess
import sys
import time

import pytest

from conftest import BIN, REPO, dialogue
from qpsmtpd_stdio import auth as auth_module
from qpsmtpd_stdio import protocol as p
from qpsmtpd_stdio.auth import Credentials, Exchange, check_password
from qpsmtpd_stdio.esmtp import decode_xtext
from qpsmtpd_stdio.testing import Harness
from superserver import STARTUP_TIMEOUT, Server, clean_env, free_port, listening, log_to_file, need, python_path, \
    set_value, user_and_group
from test_tls import ME, MSG, VIAS, Replies, Running, SocketSMTP, certs, client_context, received, tls_line  # noqa: F401

USER, PASSWORD = "alice@example.test", "s3cret pass"
ELSEWHERE = "someone@elsewhere.example"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str = USER, password: str = PASSWORD, authzid: str = "") -> str:
    return b64(f"{authzid}\0{user}\0{password}")


def cram(challenge_line: str, user: str = USER, password: str = PASSWORD) -> str:
    ticket = base64.b64decode(challenge_line.split()[-1])
    return b64(f"{user} {hmac.new(password.encode(), ticket, 'md5').hexdigest()}")


TICKET = f"<0123456789abcdef.1700000000@{ME}>"


@pytest.fixture
def harness(tmp_path, monkeypatch) -> Harness:
    """auth/auth_flat_file with alice, rcpt_ok for example.test; AUTH allowed in plaintext, no failure delay.

    The harness sends every line up front, so CRAM-MD5's challenge is fixed (TICKET) to be answerable.
    """
    monkeypatch.setattr(auth_module, "new_ticket", lambda me: TICKET)
    h = Harness(tmp_path, plugins=["auth/auth_flat_file", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    h.config("flat_auth_pw", f"{USER}:{PASSWORD}", "bob@example.test:pw:with:colons")
    h.config("tls_before_auth", "0")
    h.config("disable_plaintext_auth", "0")
    h.config("auth_failure_delay", "0")
    return h


MAIL_ELSEWHERE = ("MAIL FROM:<alice@example.test>", f"RCPT TO:<{ELSEWHERE}>", "DATA")


# The protocol core: a SASL exchange is a state of its own -----------------------------------
def test_sasl_exchange_lines_are_responses_not_commands():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(b"EHLO x\r\nAUTH LOGIN\r\nQUIT\r\nRSET\r\n*\r\nNOOP\r\n")
    conn.next_event()
    conn.send(p.Reply(250, "ok"))
    assert conn.next_event().verb == "AUTH"
    conn.send(p.Reply(334, "VXNlcm5hbWU6"))
    assert conn.state == p.SASL
    event = conn.next_event()
    assert isinstance(event, p.AuthResponse) and event.line == "QUIT" and "QUIT" not in repr(event)
    conn.send(p.Reply(334, "UGFzc3dvcmQ6"))
    assert conn.next_event().line == "RSET"
    conn.send(p.Reply(334, ""))
    assert conn.next_event().line == "*"
    conn.send(p.Reply(501, "Authentication canceled", "5.0.0"))
    assert conn.state == p.READY and not conn.authenticated
    assert conn.next_event().verb == "NOOP"


def test_auth_lines_may_be_12288_octets_and_no_more():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(b"EHLO x\r\n")
    conn.next_event()
    conn.send(p.Reply(250, "ok"))
    initial = b"A" * (p.SASL_LINE_LIMIT - len(b"AUTH PLAIN \r\n"))
    conn.receive_data(b"AUTH PLAIN " + initial + b"\r\n" + b"NOOP " + b"x" * 600 + b"\r\n")
    assert conn.next_event().arg == "PLAIN " + initial.decode()
    conn.send(p.Reply(334, ""))
    conn.receive_data(b"B" * p.SASL_LINE_LIMIT + b"\r\n")
    assert conn.next_event().line == "NOOP " + "x" * 600  # inside the exchange the bound is 12288 too
    conn.send(p.Reply(334, ""))
    event = conn.next_event()
    assert isinstance(event, p.BadLine) and event.reply.code == 500 and event.reply.enhanced == "5.5.6"
    conn.send(event.reply)
    assert conn.state == p.READY
    conn.receive_data(b"NOOP " + b"x" * 600 + b"\r\n")  # outside AUTH, commands keep their 512
    assert isinstance(conn.next_event(), p.BadLine)


def test_after_235_no_second_auth_and_no_starttls():
    conn = p.ServerConnection()
    conn.send(p.Reply(220, "hi"))
    conn.receive_data(b"EHLO x\r\nAUTH PLAIN AGEAYg==\r\nAUTH PLAIN AGEAYg==\r\nSTARTTLS\r\n")
    conn.next_event()
    conn.send(p.Reply(250, "ok"))
    conn.next_event()
    conn.send(p.Reply(235, "ok", "2.7.0"))
    assert conn.authenticated and conn.state == p.READY
    for text in (b"already authenticated", b"STARTTLS is not permitted after AUTH"):
        event = conn.next_event()
        assert isinstance(event, p.OutOfSequence) and event.reply.code == 503
        assert text in conn.send(event.reply)


# SASL mechanisms, sans I/O ------------------------------------------------------------------
def test_cram_md5_rfc2195_example():
    ticket = "<1896.697170952@postoffice.reston.mci.net>"
    assert check_password("tanstaaftanstaaf", hash="b913a602c7eda7a495b4e6e7334d3890", ticket=ticket)
    assert not check_password("tanstaaftanstaaX", hash="b913a602c7eda7a495b4e6e7334d3890", ticket=ticket)
    assert check_password("pw", password="pw") and not check_password("pw", password="pW")


def test_exchange_results():
    creds = Exchange("PLAIN", ME).start(plain())
    assert isinstance(creds, Credentials) and creds.hook_args() == ("plain", USER, PASSWORD, None, None)
    assert PASSWORD not in repr(creds)
    assert Exchange("PLAIN", ME).start(plain(authzid="root@example.test")).code == 535
    assert Exchange("PLAIN", ME).start(None).code == 334
    assert Exchange("PLAIN", ME).start("not base64!").code == 501
    assert Exchange("PLAIN", ME).start(b64("only\0two")).code == 501
    login = Exchange("LOGIN", ME)
    assert login.start(None).lines == ["VXNlcm5hbWU6"]
    assert login.respond(b64(USER)).lines == ["UGFzc3dvcmQ6"]
    assert login.respond(b64(PASSWORD)).hook_args() == ("login", USER, PASSWORD, None, None)
    assert Exchange("LOGIN", ME).start(b64(USER)).code == 334  # the user as initial response
    nul = Exchange("LOGIN", ME)
    nul.start(b64("a@b\0c"))
    assert nul.respond(b64("x")).code == 501  # a NUL would split checkpassword's input
    assert Exchange("LOGIN", ME).respond("*").code == 501
    cm = Exchange("CRAM-MD5", ME)
    challenge = cm.start(None)
    ticket = base64.b64decode(challenge.lines[0]).decode()
    assert re.fullmatch(rf"<[0-9a-f]{{16}}\.\d+@{ME}>", ticket)
    creds = cm.respond(cram(challenge.lines[0]))
    assert creds.hook_args()[:3] == ("cram-md5", USER, None) and creds.ticket == ticket
    assert check_password(PASSWORD, hash=creds.hash, ticket=creds.ticket)
    assert Exchange("CRAM-MD5", ME).start(b64("x")).code == 501  # no initial response allowed


def test_xtext():
    assert decode_xtext("<>") == "<>"
    assert decode_xtext("alice+2Bext@example.test") == "alice+ext@example.test"
    for bad in ("a+4", "a+zz", "a=b", "a+0Ab"):
        with pytest.raises(ValueError):
            decode_xtext(bad)


# Policy and plugins, in-process -----------------------------------------------------------------
def test_mechanisms_advertised_by_the_plugins_loaded(harness):
    r = harness.run("EHLO c.example", "QUIT")
    assert r.replies[1].lines[-1] == "AUTH PLAIN LOGIN CRAM-MD5"
    harness.config("plugins", "auth/auth_checkpassword checkpw /bin/true true /bin/true", "rcpt_ok")
    assert harness.run("EHLO c.example", "QUIT").replies[1].lines[-1] == "AUTH PLAIN LOGIN"
    harness.config("plugins", "rcpt_ok")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", "QUIT")
    assert not any(line.startswith("AUTH") for line in r.replies[1].lines)
    assert r.codes == [220, 250, 500, 221]


def test_default_policy_no_auth_without_tls(harness):
    (harness.dir / "tls_before_auth").unlink()
    (harness.dir / "disable_plaintext_auth").unlink()
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", *MAIL_ELSEWHERE[:2], "QUIT")
    assert not any(line.startswith("AUTH") for line in r.replies[1].lines)
    # No tls plugin here, so no STARTTLS to ask for: RFC 4954's 538 (with one it is 530: test_smtplib_starttls_login_relays).
    assert r.replies[2].text == "5.7.11 Encryption required for requested authentication mechanism"
    assert r.codes[2:] == [538, 250, 550, 221]  # and no relaying
    # tls_before_auth 0 alone: only CRAM-MD5, which does not send the password.
    harness.config("tls_before_auth", "0")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", "AUTH LOGIN", "QUIT")
    assert r.replies[1].lines[-1] == "AUTH CRAM-MD5"
    assert r.codes == [220, 250, 538, 538, 221]
    assert r.replies[2].text == "5.7.11 Encryption required for requested authentication mechanism"


def steps(mechanism: str, password: str = PASSWORD, user: str = USER) -> list[str]:
    """A client's lines for one AUTH exchange (CRAM-MD5 answers the fixed TICKET)."""
    if mechanism == "PLAIN":
        return [f"AUTH PLAIN {plain(user, password)}"]
    if mechanism == "LOGIN":
        return ["AUTH LOGIN", b64(user), b64(password)]
    return ["AUTH CRAM-MD5", cram(b64(TICKET), user, password)]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_relay_only_after_successful_auth(harness, mechanism):
    refused = harness.run("EHLO c.example", *MAIL_ELSEWHERE[:2], "QUIT")
    assert refused.codes == [220, 250, 250, 550, 221]
    r = harness.run("EHLO c.example", *steps(mechanism), *MAIL_ELSEWHERE, "QUIT", body=MSG)
    assert r.codes[-6:] == [235, 250, 250, 354, 250, 221]
    assert r.replies[-6].text == f"2.7.0 {mechanism} authentication successful for {USER}"
    [queued] = r.queued
    assert queued.recipients == [ELSEWHERE]
    assert queued.header.get("Authentication-Results") == f"{ME}; auth=pass smtp.auth={USER}"
    assert "with ESMTPA id" in " ".join(queued.header.get_all("Received"))
    assert r.connection.auth_user == USER and r.connection.auth_mechanism == mechanism


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password_never_relays(harness, mechanism):
    r = harness.run("EHLO c.example", *steps(mechanism, "wrong"), *MAIL_ELSEWHERE[:2], "QUIT")
    assert r.codes[-4:] == [535, 250, 550, 221]
    assert r.replies[-4].text == f"5.7.8 {mechanism} authentication failed for {USER}"
    assert r.connection.auth_user is None and not r.connection.relay_client
    assert r.queued == []


def test_brute_force_is_slowed_and_cut_off(harness):
    attempts = [f"AUTH PLAIN {plain(password=f'guess{i}')}" for i in range(5)]
    r = harness.run("EHLO c.example", *attempts, f"AUTH PLAIN {plain()}", "QUIT")
    assert r.codes == [220, 250, 535, 535, 421]  # the right password, later, is never tried
    assert r.replies[-1].text == f"4.7.0 {ME} Too many authentication failures"
    assert "failure 3 of 3" in r.log_text and "disconnecting" in r.log_text
    harness.config("auth_failure_delay", "0.01")
    harness.config("max_auth_failures", "4")
    r = harness.run("EHLO c.example", *attempts, "QUIT")
    assert r.codes == [220, 250, 535, 535, 535, 421]
    delays = re.findall(r"delaying the reply by ([\d.]+)s", r.log_text)
    assert delays == ["0.01", "0.02", "0.04", "0.08"]  # doubled each time


def test_auth_errors(harness):
    r = harness.run("HELO c.example", f"AUTH PLAIN {plain()}", "QUIT")
    assert r.codes == [220, 250, 503, 221]
    r = harness.run("EHLO c.example", "AUTH DIGEST-MD5", "AUTH PLAIN", "*", "AUTH PLAIN", "%%%",
                    "MAIL FROM:<a@example.org>", f"AUTH PLAIN {plain()}", "RSET", f"AUTH PLAIN {plain()}",
                    f"AUTH PLAIN {plain()}", "QUIT")
    assert r.codes == [220, 250, 504, 334, 501, 334, 501, 250, 503, 250, 235, 503, 221]
    assert [r.replies[i].text for i in (2, 4, 6, 8, 11)] == [
        "5.5.4 Unrecognized authentication type", "5.0.0 Authentication canceled", "5.5.2 Cannot decode response",
        "5.5.1 AUTH is not permitted during a mail transaction", "5.5.1 already authenticated"]


RECORDER = '''from qpsmtpd_stdio import DECLINED, DENYSOFT, OK
def hook_auth_cram_md5(plugin, txn, *args):
    plugin.connection.notes.setdefault("calls", []).append(("auth_cram_md5",) + args)
    return DECLINED
def hook_auth(plugin, txn, *args):
    plugin.connection.notes.setdefault("calls", []).append(("auth",) + args)
    return {"ok@example.test": OK, "soft@example.test": DENYSOFT}.get(args[1], DECLINED)
def hook_mail(plugin, txn, sender, params):
    plugin.connection.notes["auth_sender"] = txn.auth_sender
'''


def test_hooks_get_qpsmtpd_arguments_in_qpsmtpd_order(harness):
    harness.plugin("recorder", RECORDER)
    harness.config("plugins", "recorder", "rcpt_ok")
    r = harness.run("EHLO c.example", *steps("CRAM-MD5"), "QUIT")
    assert r.codes == [220, 250, 334, 535, 221]
    calls = r.connection.notes["calls"]
    assert [c[0] for c in calls] == ["auth_cram_md5", "auth"]  # the mechanism's own hook first
    mech, user, password, digest, ticket = calls[0][1:]
    assert (mech, user, password, ticket) == ("cram-md5", USER, None, TICKET)
    assert check_password(PASSWORD, hash=digest, ticket=ticket)
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain('soft@example.test')}", f"AUTH PLAIN {plain('ok@example.test')}",
                    "MAIL FROM:<a@example.org> AUTH=ok+2Bx@example.test", "QUIT")
    assert r.codes == [220, 250, 454, 235, 250, 221]  # a temporary failure is not a failed attempt
    assert r.connection.notes["calls"][0] == ("auth", "plain", "soft@example.test", PASSWORD, None, None)
    assert r.connection.notes["auth_sender"] == "ok+x@example.test"


def test_mail_auth_parameter(harness):
    harness.plugin("recorder", RECORDER)
    harness.config("plugins", "auth/auth_flat_file", "recorder", "rcpt_ok")
    r = harness.run("EHLO c.example", "MAIL FROM:<a@example.org> AUTH=alice@example.test", "QUIT")
    assert r.codes == [220, 250, 250, 221]
    assert r.connection.notes["auth_sender"] == "<>"  # not authenticated: not believed (RFC 4954 5)
    r = harness.run("EHLO c.example", "MAIL FROM:<a@example.org> AUTH=a+4", "MAIL FROM:<a@example.org> AUTH=", "QUIT")
    assert r.codes == [220, 250, 501, 501, 221]
    harness.config("plugins", "rcpt_ok")
    assert harness.run("EHLO c.example", "MAIL FROM:<a@example.org> AUTH=<>", "QUIT").codes == [220, 250, 555, 221]


def test_authdeny_and_a_failing_plugin(harness):
    harness.config("plugins", "auth/authdeny", "rcpt_ok")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", "QUIT")
    assert r.replies[1].lines[-1] == "AUTH PLAIN LOGIN CRAM-MD5" and r.codes == [220, 250, 535, 221]
    harness.plugin("broken", "def hook_auth_plain(plugin, txn, *args):\n    raise RuntimeError('backend down')\n")
    harness.config("plugins", "broken", "rcpt_ok")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", "QUIT")
    assert r.codes == [220, 250, 454, 221] and "backend down" in r.log_text


def test_passwords_never_reach_the_log(harness):
    guess = "Tr0ub4dor&3"
    secrets = [PASSWORD, guess, plain(), plain(password=guess), b64(PASSWORD), b64(guess)]
    r1 = harness.run("EHLO c.example", f"AUTH PLAIN {plain(password=guess)}", f"AUTH PLAIN {plain()}", "QUIT")
    r2 = harness.run("EHLO c.example", "AUTH LOGIN", b64(USER), b64(guess), "AUTH LOGIN", b64(USER), b64(PASSWORD),
                     "QUIT", pipelined=True)
    assert r1.codes[-2:] == [235, 221] and r2.codes[-2:] == [235, 221]
    for r in (r1, r2):
        assert "AUTH PLAIN ***" in r.log_text or "AUTH LOGIN" in r.log_text  # the debug line is there, masked
        for secret in secrets:
            assert secret not in r.log_text


# auth/auth_checkpassword: a DJB checkpassword program on fd 3 -------------------------------------
CHECKPW = '''#!{python}
import os, sys
data = os.read(3, 4096)
with open("{log}", "ab") as fh:
    fields = data.split(b"\\0")
    fh.write(repr([fields[0], len(fields), fields[2].isdigit(), fields[3], sys.argv[1:]]).encode() + b"\\n")
user, password, stamp = data.split(b"\\0")[:3]
if password == b"temporary":
    sys.exit(111)
sys.exit(0 if (user, password) == (b"{user}", b"{password}") else 1)
'''


def test_auth_checkpassword(harness, tmp_path):
    checkpw = tmp_path / "checkpw"
    log = tmp_path / "checkpw.log"
    checkpw.write_text(CHECKPW.format(python=sys.executable, log=log, user=USER, password=PASSWORD))
    checkpw.chmod(0o755)
    harness.config("plugins", f"auth/auth_checkpassword checkpw {checkpw} true /bin/true", "rcpt_ok")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain(password='temporary')}", f"AUTH PLAIN {plain(password='no')}",
                    "AUTH LOGIN", b64(USER), b64(PASSWORD), *MAIL_ELSEWHERE[:2], "QUIT")
    assert r.codes == [220, 250, 454, 535, 334, 334, 235, 250, 250, 221]
    # user\0password\0timestamp\0 on fd 3 (so the split gives four fields, the last empty); TRUE as argument.
    assert log.read_text().splitlines() == [f"[b'{USER}', 4, True, b'', ['/bin/true']]"] * 3


def test_auth_checkpassword_disabled_without_programs(harness):
    harness.config("plugins", "auth/auth_checkpassword checkpw /nonexistent true /bin/true", "rcpt_ok")
    r = harness.run("EHLO c.example", "QUIT")
    assert not any(line.startswith("AUTH") for line in r.replies[1].lines)
    assert "disabled" in r.log_text


# TLS before AUTH, with real clients -----------------------------------------------------------------
def submission(smtp, certs, *extra: str) -> None:
    """The submission profile of docs/submission.md: tls, a user, AUTH before MAIL, rcpt_ok."""
    smtp.write("flat_auth_pw", f"{USER}:{PASSWORD}")
    smtp.write("auth_failure_delay", "0")
    smtp.plugins(tls_line(certs), "auth/auth_flat_file", *extra, "rcpt_ok", f"queue/maildir {smtp.maildir}")


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib_starttls_login_relays(smtp, certs, via, mechanism):
    submission(smtp, certs)
    server = Running(smtp, via)
    client = SocketSMTP(server.sock)
    client.ehlo()
    assert not client.has_extn("auth")  # not before TLS
    assert client.docmd("AUTH", f"PLAIN {plain()}")[0] == 530
    client.starttls(context=client_context(certs))
    client.ehlo()
    assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]
    client.user, client.password = USER, PASSWORD
    code, text = client.auth(mechanism, getattr(client, "auth_" + mechanism.lower().replace("-", "_")))
    assert code == 235
    assert client.sendmail(USER, [ELSEWHERE], MSG) == {}
    client.quit()
    server.finish()
    [message] = smtp.messages()
    assert f"Authentication-Results: {ME}; auth=pass smtp.auth={USER}".encode() in message
    assert "with ESMTPSA (using TLSv1.3" in received(message)


def test_smtplib_wrong_password_cannot_relay(smtp, certs):
    submission(smtp, certs)
    smtp.write("max_auth_failures", "10")  # smtplib's login() tries CRAM-MD5, PLAIN and LOGIN in turn
    server = Running(smtp, "pipe")
    client = SocketSMTP(server.sock)
    client.starttls(context=client_context(certs))
    with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
        client.login(USER, "wrong")
    assert failed.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        client.sendmail(USER, [ELSEWHERE], MSG)
    client.quit()
    server.finish()
    assert smtp.messages() == []


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_tls_auth_over_pipe(smtp, certs, mechanism):
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed (Debian package swaks)")
    submission(smtp, certs, "auth/require_auth")
    transcript = smtp.root / "transcript.log"
    done = subprocess.run(["swaks", "--pipe", f"{sys.executable} {BIN} --transcript {transcript}", "--tls",
                           "--auth", mechanism, "--auth-user", USER, "--auth-password", PASSWORD,
                           "--from", USER, "--to", ELSEWHERE, "--timeout", "30"],
                          capture_output=True, text=True, env=smtp.env(), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"<~ +235 2\.7\.0 {mechanism} authentication successful", done.stdout)
    [message] = smtp.messages()
    assert "with ESMTPSA" in received(message)
    text = transcript.read_text() + done.stderr  # the transcript and the LOGDEBUG log
    for secret in (PASSWORD, b64(PASSWORD), plain()):
        assert secret not in text
    assert "***" in transcript.read_text()


def test_require_auth_refuses_mail_before_auth(smtp, certs):
    submission(smtp, certs, "auth/require_auth")
    r = smtp.run(dialogue("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@example.test>", "QUIT"))
    assert r.codes == [220, 250, 530, 503, 221]
    assert b"530 5.7.0 Authentication required\r\n" in r.stdout


# The shipped xinetd.d/submission and xinetd.d/smtps, on real TCP ports -------------------------------
def xinetd_services(smtp, ports: dict[str, int]) -> str:
    """The shipped service files with only ports, addresses, user and paths changed."""
    user, group = user_and_group()
    text = ""
    for name, port in ports.items():
        service = (REPO / "xinetd.d" / name).read_text()
        assert "/etc/qpsmtpd-submission" in service and "/usr/local/bin/in.qpsmtpd" in service
        for key, value in (("port", str(port)), ("bind", "127.0.0.1"), ("user", user), ("group", group)):
            service = set_value(service, key, value)
        service = service.replace("/usr/local/bin/in.qpsmtpd", str(BIN))
        service = service.replace("/etc/qpsmtpd-submission", str(smtp.dir)).replace("/etc/qpsmtpd/busy",
                                                                                      str(smtp.root / "busy"))
        text += re.sub(r"\bPATH=\S+", "PATH=" + python_path(), service) + "\n"
    return text


def test_submission_and_smtps_under_xinetd(smtp, certs):
    need("xinetd", "swaks")
    submission(smtp, certs, "auth/require_auth")
    log = smtp.root / "session.log"
    log_to_file(smtp, log)
    ports = {"submission": free_port(), "smtps": free_port()}
    conf = smtp.root / "xinetd.conf"
    conf.write_text(f"defaults\n{{\n\tlog_type = FILE {smtp.root / 'xinetd.log'}\n}}\n\n" + xinetd_services(smtp, ports))
    (smtp.root / "busy").write_bytes(b"421 busy\r\n")
    server = Server("xinetd", ["xinetd", "-dontfork", "-pidfile", str(smtp.root / "xinetd.pid"), "-f", str(conf)],
                    ports["submission"], "127.0.0.1", smtp.root / "xinetd.out", clean_env(), smtp.root)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not listening(ports["smtps"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        context = client_context(certs)
        # 587: STARTTLS, then AUTH; without AUTH no MAIL at all.
        with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30) as client:
            client.ehlo()
            assert client.docmd("MAIL", "FROM:<a@example.org>")[0] == 530
            client.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                client.login(USER, "wrong")  # smtplib tries CRAM-MD5, PLAIN, LOGIN: the third failure is cut off
            assert failed.value.smtp_code == 421
        with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30) as client:
            client.starttls(context=context)
            client.login(USER, PASSWORD)
            assert client.sendmail(USER, [ELSEWHERE], MSG.replace("tls", "submission")) == {}
        # 465: TLS from the first octet.
        with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=context, timeout=30) as client:
            client.login(USER, PASSWORD)
            assert client.sendmail(USER, [ELSEWHERE], MSG.replace("tls", "smtps")) == {}
        done = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(ports["smtps"]), "--tlsc",
                               "--auth", "CRAM-MD5", "--auth-user", USER, "--auth-password", PASSWORD,
                               "--from", USER, "--to", ELSEWHERE, "--timeout", "30"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        server.stop()
    messages = smtp.messages()
    assert len(messages) == 3
    assert all(b"with ESMTPSA" in m and b"auth=pass smtp.auth=" + USER.encode() in m for m in messages)
    text = log.read_text()
    assert "AUTH LOGIN failed from [127.0.0.1] for 'alice@example.test'" in text and "3 failed AUTH attempts; disconnecting" in text
    for secret in (PASSWORD, b64(PASSWORD), plain()):
        assert secret not in text


@pytest.mark.parametrize("sender, code", [
    ("alice@example.test", 250),       # her login
    ("ALICE@Example.Test", 250),       # any case
    ("", 250),                         # the null sender: bounces, receipts
    ("sales@example.test", 250),       # sender_login_maps gives her this one
    ("anyone@shared.example", 250),    # and a whole domain
    ("bob@example.test", 553),         # someone else's
    ("alice@elsewhere.example", 553),  # her name, another domain
])
def test_sender_login_binds_the_sender_to_the_login(harness, sender, code):
    harness.plugins = ["auth/auth_flat_file", "auth/require_auth sender_login 1", "rcpt_ok"]
    harness.config("sender_login_maps", "sales@example.test alice@example.test,bob@example.test",
                   "@shared.example alice@example.test")
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", f"MAIL FROM:<{sender}>", "QUIT")
    assert r.codes == [220, 250, 235, code, 221]
    if code == 553:
        assert r.replies[3].text == (f"5.7.1 <{sender}>: Sender address rejected: not owned by user "
                                     "alice@example.test")


def test_sender_login_off_by_default(harness):
    harness.plugins = ["auth/auth_flat_file", "auth/require_auth", "rcpt_ok"]
    r = harness.run("EHLO c.example", f"AUTH PLAIN {plain()}", "MAIL FROM:<bob@example.test>", "QUIT")
    assert r.codes == [220, 250, 235, 250, 221]
