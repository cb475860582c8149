"""The engine through the real bin/in.qpsmtpd: transport, identity, config, plugin host, SMTP, DATA, queue."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import BIN, SIMPLE_BODY, dialogue, simple_session


# 1. Transport --------------------------------------------------------------
def test_pipelined_session_in_one_write(smtp):
    data = simple_session() + b""
    r = smtp.run(data, via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]


def test_nothing_but_replies_on_the_socket_when_a_plugin_raises_and_prints(smtp):
    smtp.plugin("noisy", "import sys\n"
                "def hook_rcpt(plugin, txn, rcpt, params):\n"
                "    print('printed by a plugin')\n"
                "    sys.stderr.write('to stderr\\n')\n"
                "    raise RuntimeError('boom')\n")
    smtp.plugins("noisy", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session(), via="socketpair")
    r.assert_wellformed()
    assert b"printed" not in r.stdout and b"Traceback" not in r.stdout and b"boom" not in r.stdout
    assert 451 in r.codes or 450 in r.codes
    assert smtp.messages() == []


def test_plugin_print_goes_to_the_log_not_stdout(smtp):
    smtp.plugin("printer", "def hook_connect(plugin, txn):\n    print('hello from print')\n")
    smtp.plugins("printer", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    r.assert_wellformed()
    assert "hello from print" in r.log


# 2. Who is calling -----------------------------------------------------------
def serve_once(smtp, family, address, data, env_extra=None):
    """Run in.qpsmtpd on an accepted TCP connection (no TCP* variables), like inetd does."""
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((address, 0))
        listener.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
    env = smtp.env(TCPREMOTEIP=None, TCPREMOTEPORT=None, TCPLOCALIP=None, TCPLOCALPORT=None, **(env_extra or {}))
    with server:
        proc = subprocess.Popen([sys.executable, str(BIN)], stdin=server, stdout=server, stderr=subprocess.PIPE, env=env)
    with client:
        client.sendall(data)
        client.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := client.recv(65536):
            out += chunk
    proc.wait(timeout=30)
    return out, proc.stderr.read().decode()


def test_remote_ip_from_socket_ipv4(smtp):
    out, log = serve_once(smtp, socket.AF_INET, "127.0.0.1", simple_session())
    assert out.count(b"\r\n250 ") >= 4, out
    [msg] = smtp.messages()
    assert b"[127.0.0.1]" in msg.split(b"\n\n")[0]


def test_remote_ip_from_socket_ipv6(smtp):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    out, log = serve_once(smtp, socket.AF_INET6, "::1", simple_session())
    [msg] = smtp.messages()
    assert b"[::1]" in msg


def test_v4_mapped_address_is_unmapped(smtp):
    smtp.run(simple_session(), TCPREMOTEIP="::ffff:192.0.2.77")
    [msg] = smtp.messages()
    assert b"[192.0.2.77]" in msg and b"ffff" not in msg


def test_empty_relayclient_makes_a_relay_client(smtp):
    session = simple_session(rcpt="someone@elsewhere.example")
    assert smtp.run(session).codes[3] == 550
    assert smtp.run(session, RELAYCLIENT="").codes[3] == 250


def test_relayclients_file_with_cidr_and_ipv6(smtp):
    smtp.write("relayclients", "198.51.100.0/24\n2001:db8::/32")
    session = simple_session(rcpt="someone@elsewhere.example")
    assert smtp.run(session, TCPREMOTEIP="198.51.100.9").codes[3] == 250
    assert smtp.run(session, TCPREMOTEIP="2001:db8::5").codes[3] == 250
    assert smtp.run(session, TCPREMOTEIP="203.0.113.9").codes[3] == 550


# 3. Config ---------------------------------------------------------------------
def test_config_dir_from_command_line_wins_over_environment(smtp, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "me").write_text("other.example\n")
    (other / "plugins").write_text(f"rcpt_ok\nqueue/maildir {smtp.maildir}\n")
    r = smtp.run(dialogue("QUIT"), args=("--config", str(other)))
    assert b"220 other.example" in r.stdout


def test_include_and_comments(smtp, tmp_path):
    extra = tmp_path / "more-domains"
    extra.write_text("# more\n\n  second.example  \n")
    smtp.write("rcpthosts", f"# local domains\nexample.test\n$include {extra}\n")
    assert smtp.run(simple_session(rcpt="x@second.example")).codes[3] == 250


def test_smtpgreeting(smtp):
    smtp.write("smtpgreeting", "mail.example.test welcomes you")
    r = smtp.run(dialogue("QUIT"))
    assert r.lines[0] == b"220 mail.example.test welcomes you ESMTP"


# 4. The plugin host -----------------------------------------------------------
def test_plugin_dirs_override_shipped_plugins(smtp):
    smtp.plugin("rcpt_ok", "from qpsmtpd_stdio import DENY\n"
                "def hook_rcpt(plugin, txn, rcpt, params):\n    return DENY, 'site override'\n")
    r = smtp.run(simple_session())
    assert b"550 5.7.1 site override" in r.stdout


def test_the_collector_is_on_during_the_session_with_start_up_frozen(smtp):
    # main() turns the collector off for start-up and serve() must turn it back on: a long session makes cycles.
    smtp.plugin("gcstate", "import gc\n"
                "def hook_data_post(plugin, txn):\n"
                "    txn.add_header('X-GC', f'{gc.isenabled()} {gc.get_freeze_count() > 0}')\n")
    smtp.plugins("rcpt_ok", "gcstate", f"queue/maildir {smtp.maildir}")
    smtp.run(simple_session())
    [msg] = smtp.messages()
    assert b"X-GC: True True\n" in msg


def test_plugin_listed_twice_with_different_arguments(smtp):
    smtp.plugin("tag", "def register(plugin, name):\n    plugin.tag = name\n"
                "def hook_data_post(plugin, txn):\n    txn.add_header('X-Tag', plugin.tag)\n")
    smtp.plugins("tag one", "tag two", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.run(simple_session())
    [msg] = smtp.messages()
    assert b"X-Tag: one\n" in msg and b"X-Tag: two\n" in msg


def test_plugin_that_raises_fails_closed_with_logged_traceback(smtp):
    smtp.plugin("broken", "def hook_data_post(plugin, txn):\n    raise ValueError('bad plugin')\n")
    smtp.plugins("rcpt_ok", "broken", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    r.assert_wellformed()
    assert r.codes[-2] == 451
    assert "Traceback" in r.log and "ValueError: bad plugin" in r.log
    assert b"Traceback" not in r.stdout
    assert smtp.messages() == []


def test_plugin_with_syntax_error_refuses_with_4xx_and_delivers_nothing(smtp):
    smtp.plugin("halfsaved", "def hook_rcpt(plugin, txn, rcpt, params:\n")
    smtp.plugins("halfsaved", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    for via in ("pipe", "socketpair"):
        r = smtp.run(simple_session(), via=via)
        r.assert_wellformed()
        assert r.codes == [421]
    assert "halfsaved" in smtp.run(simple_session()).log
    assert smtp.messages() == []


def test_missing_plugin_refuses_with_421(smtp):
    smtp.plugins("no_such_plugin", "rcpt_ok")
    r = smtp.run(simple_session())
    assert r.codes == [421] and "no_such_plugin" in r.log


def test_plugin_returning_nonsense_fails_closed(smtp):
    smtp.plugin("weird", "def hook_rcpt(plugin, txn, rcpt, params):\n    return 'yes please'\n")
    smtp.plugins("weird", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    assert r.codes[3] == 450 and "not a return code" in r.log


def test_edit_in_same_second_with_same_size_is_seen(smtp):
    path = smtp.plugin("flip", "from qpsmtpd_stdio import DENY\n"
                       "def hook_rcpt(plugin, txn, rcpt, params):\n    return DENY, 'AAAA'\n")
    smtp.plugins("flip", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r1 = smtp.run(simple_session(), PYTHONDONTWRITEBYTECODE=None)
    stat = path.stat()
    path.write_text(path.read_text().replace("AAAA", "BBBB"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime, same size
    assert path.stat().st_size == stat.st_size
    r2 = smtp.run(simple_session(), PYTHONDONTWRITEBYTECODE=None)
    assert b"AAAA" in r1.stdout and b"BBBB" in r2.stdout
    assert list((smtp.plugin_dir / "__pycache__").glob("flip.qpsmtpd.pyc"))


def test_plugin_against_documented_api(smtp):
    smtp.plugin("api", '''
from qpsmtpd_stdio import DECLINED, OK, DENY, LOGINFO

def register(plugin, *args):
    plugin.suffix = args[0]

def hook_connect(plugin, txn):
    plugin.connection.notes["seen"] = plugin.connection.remote_ip

def hook_mail(plugin, txn, sender, params):
    txn.notes["sender"] = sender.address
    return DECLINED

def hook_rcpt(plugin, txn, rcpt, params):
    if rcpt.user == "blocked":
        return DENY, ["first line", "second line"]
    return OK if rcpt.host.endswith(plugin.suffix) else DECLINED

def hook_data_post(plugin, txn):
    body = txn.body_stream().read()
    txn.add_header("X-Api", f"{txn.notes['sender']} {plugin.connection.notes['seen']} "
                   f"{len(txn.recipients)} {txn.header.get('subject')} {len(body)} {txn.data_size}")
    plugin.log(LOGINFO, "api plugin ran")
''')
    smtp.plugins("api .test", f"queue/maildir {smtp.maildir}")
    session = dialogue("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<blocked@example.test>",
                       "RCPT TO:<ok@example.test>", "DATA", "QUIT", body=SIMPLE_BODY)
    r = smtp.run(session)
    assert b"550-5.7.1 first line\r\n550 5.7.1 second line\r\n" in r.stdout
    [msg] = smtp.messages()
    size = len(SIMPLE_BODY.encode()) + 2
    assert f"X-Api: a@example.org 192.0.2.10 1 test 8 {size}\n".encode() in msg
    assert "api plugin ran" in r.log


def test_hook_timeout_fails_closed_and_session_survives(smtp):
    smtp.write("plugin_timeout", "1")
    smtp.plugin("slow", "import time\n"
                "def hook_rcpt(plugin, txn, rcpt, params):\n"
                "    try:\n        time.sleep(30)\n    except Exception:\n        time.sleep(30)\n")
    smtp.plugins("slow", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<x@example.test>", "NOOP", "QUIT"))
    assert r.codes == [220, 250, 250, 450, 250, 221]
    assert "plugin_timeout" in r.log


# 5. SMTP -------------------------------------------------------------------------
def test_ehlo_advertises_extensions(smtp):
    r = smtp.run(dialogue("EHLO c", "QUIT"))
    ext = [line[4:] for line in r.lines[1:-1]]
    assert ext[1:] == [b"PIPELINING", b"8BITMIME", b"SIZE 52428800", b"ENHANCEDSTATUSCODES", b"SMTPUTF8", b"CHUNKING", b"DSN",
                       b"LIMITS RCPTMAX=1000 MAILMAX=100"]
    assert not any(e.startswith((b"STARTTLS", b"AUTH")) for e in ext)


def test_second_ehlo_resets_transaction(smtp):
    r = smtp.run(dialogue("EHLO a", "MAIL FROM:<a@b.example>", "EHLO b", "RCPT TO:<x@example.test>",
                          "MAIL FROM:<a@b.example>", "QUIT"))
    assert r.codes == [220, 250, 250, 250, 503, 250, 221]


def test_sequence_and_syntax_errors(smtp):
    r = smtp.run(dialogue("MAIL FROM:<a@b.example>", "HELO", "EHLO c", "RCPT TO:<x@example.test>", "DATA",
                          "MAIL TO:<a@b>", "MAIL FROM:<a@b.example> FOO=bar", "MAIL FROM:<a@b.example> SIZE=99999999999",
                          "MAIL FROM:<a@b.example> BODY=8BITMIME", "DATA", "FROB", "", "QUIT"))
    assert r.codes == [220, 503, 501, 250, 503, 503, 501, 555, 552, 250, 503, 500, 500, 221]


def test_postmaster_always_accepted(smtp):
    smtp.plugin("denyall", "from qpsmtpd_stdio import DENY\ndef hook_rcpt(p, t, r, a):\n    return DENY\n")
    smtp.plugins("denyall", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<>", "RCPT TO:<postmaster>", "RCPT TO:<PostMaster>", "QUIT"))
    assert r.codes == [220, 250, 250, 250, 250, 221]


def test_local_postmaster_accepted_by_rcpt_ok(smtp):
    smtp.write("badrcptto", "")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<>", "RCPT TO:<postmaster@example.test>", "QUIT"))
    assert r.codes[3] == 250


def test_many_recipients_and_limit(smtp):
    rcpts = [f"RCPT TO:<u{i}@example.test>" for i in range(105)]
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@b.example>", *rcpts, "QUIT"))
    assert r.codes.count(250) == 107
    smtp.write("max_recipients", "3")
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<a@b.example>", *rcpts[:5], "QUIT"))
    assert r.codes[3:8] == [250, 250, 250, 452, 452]
    assert b"452 4.5.3" in r.stdout


def test_every_reply_has_enhanced_code_except_greeting_and_ehlo(smtp):
    r = smtp.run(simple_session())
    lines = r.lines
    assert lines[0].startswith(b"220 ") and lines[9] == b"250 LIMITS RCPTMAX=1000 MAILMAX=100"
    assert lines[12].startswith(b"354 ")
    for line in lines[10:12] + lines[13:]:
        assert line[4:5].isdigit() and line[5:6] == b".", line


def test_vrfy_help_noop_rset(smtp):
    r = smtp.run(dialogue("EHLO c", "VRFY bob", "HELP", "NOOP", "RSET", "QUIT"))
    assert r.codes == [220, 250, 252, 214, 250, 250, 221]


def test_smtputf8_address(smtp):
    smtp.write("rcpthosts", "example.test\nexämple.test")
    body = "From: a@example.org\r\nSubject: utf8\r\n\r\nhi"
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<ä@example.org> SMTPUTF8", "RCPT TO:<bö@exämple.test>", "DATA", "QUIT",
                          body=body))
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert "Delivered-To: bö@exämple.test".encode() in msg and b"with UTF8SMTP" in msg
    r = smtp.run(dialogue("EHLO c", "MAIL FROM:<ä@example.org>", "QUIT"))
    assert r.codes[2] == 553


# 6. DATA ---------------------------------------------------------------------------
@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\n.\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n",
                                      b"\r\n\x00.\r\n", b"\n.\r"])
def test_smuggling_gives_exactly_one_message(smtp, fake_end):
    smtp.write("bare_newline", "keep")
    smuggled = (b"MAIL FROM:<x@evil.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled\r\n")
    data = (b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            b"Subject: first\r\n\r\nfirst" + fake_end + smuggled + b".\r\nQUIT\r\n")
    r = smtp.run(data)
    if b"\x00" in fake_end:  # a message holding NUL is refused whole: nothing stored, nothing smuggled
        assert r.codes == [220, 250, 250, 250, 354, 554, 221] and smtp.messages() == []
        return
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    [msg] = smtp.messages()
    assert b"Subject: first" in msg and b"MAIL FROM:<x@evil.example>" in msg


def test_bare_lf_normalized_by_default_bare_cr_refused(smtp):
    """bare_newline normalize (as Postfix 3.9): a bare LF is a line end, also for the header parser and every queue."""
    r = smtp.run(simple_session(body="Subject: x\nX-Second: seen\r\n\r\nbare\nlf"))
    assert r.codes[5] == 250
    [msg] = smtp.messages()
    assert b"\nSubject: x\nX-Second: seen\n\nbare\nlf\n" in msg  # two fields, not one with an LF inside
    r = smtp.run(simple_session(body="Subject: x\rX-Second: hidden\r\n\r\nbody"))
    assert r.codes[5] == 554 and len(smtp.messages()) == 1  # a lone CR has no agreed meaning
    smtp.write("bare_newline", "reject")
    r = smtp.run(simple_session(body="Subject: x\r\n\r\nbare\nlf"))
    assert r.codes[5] == 554 and len(smtp.messages()) == 1


def test_normalized_header_is_what_plugins_see(smtp):
    smtp.plugin("show", "from qpsmtpd_stdio import LOGWARN\ndef hook_data_post(p, txn):\n"
                        "    p.log(LOGWARN, 'fields=' + ','.join(txn.header.names()))\n")
    smtp.plugins("show", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session(body="Subject: x\nBcc: y@example.org\r\n\r\nbody"))
    assert r.codes[5] == 250 and "fields=Received,Subject,Bcc" in r.log


def test_dot_unstuffing_end_to_end(smtp):
    smtp.run(simple_session(body="Subject: dots\r\n\r\n..leading\r\n.\r\n...\r\nend"))
    # An lone "." line would end DATA early: clients send it stuffed as "..".
    [msg] = smtp.messages()
    assert msg.endswith(b"\n\n.leading\n") or msg.endswith(b"\n\n.leading\n"), msg


def test_stuffed_lines(smtp):
    body = "Subject: dots\r\n\r\n..leading\r\n..\r\n...\r\nend"
    smtp.run(simple_session(body=body))
    [msg] = smtp.messages()
    assert msg.endswith(b"\n\n.leading\n.\n..\nend\n")


def test_megabyte_command_line_one_error(smtp):
    data = b"EHLO c\r\nNOOP " + b"x" * (1 << 20) + b"\r\nNOOP\r\nQUIT\r\n"
    r = smtp.run(data)
    assert r.codes == [220, 250, 500, 250, 221]


def test_long_text_line_rejected_and_configurable(smtp):
    body = "Subject: long\r\n\r\n" + "x" * 1200
    assert smtp.run(simple_session(body=body)).codes[5] == 554
    smtp.write("max_line_length", "0")
    assert smtp.run(simple_session(body=body)).codes[5] == 250


def test_databytes_enforced_after_terminator(smtp):
    smtp.write("databytes", "1000")
    r = smtp.run(simple_session(body="Subject: big\r\n\r\n" + ("y" * 70 + "\r\n") * 30))
    assert r.codes[5:] == [552, 221] and smtp.messages() == []


def test_client_disconnect_mid_data_queues_nothing(smtp):
    r = smtp.run(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: cut\r\n\r\npartial")
    assert r.codes == [220, 250, 250, 250, 354]
    assert smtp.messages() == [] and smtp.leftovers() == []
    assert "during DATA" in r.log


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a live process (wait4's ru_maxrss also counts the parent's memory at fork)."""
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("VmHWM:")).split()[1])


def test_large_message_memory_stays_flat(smtp, tmp_path):
    size = 200 * (1 << 20)
    smtp.write("databytes", str(size * 2))
    smtp.write("loglevel", "4")
    line = b"0123456789" * 7 + b"\r\n"
    head = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\nSubject: big\r\n\r\n"
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=smtp.env())
    block = line * (1 << 14)
    proc.stdin.write(head)
    blocks = size // len(block)
    for _ in range(blocks):
        proc.stdin.write(block)
    proc.stdin.write(b".\r\n")
    proc.stdin.flush()
    out = b""
    while b"\r\n250 2.0.0" not in out and b"\r\n4" not in out and b"\r\n5" not in out:
        chunk = proc.stdout.read1(4096)
        assert chunk, out
        out += chunk
    peak = peak_rss_kib(proc.pid)  # still alive: it waits for the next command
    proc.stdin.write(b"QUIT\r\n")
    proc.stdin.close()
    out += proc.stdout.read()
    proc.wait(timeout=30)
    assert b"\r\n250 2.0.0" in out, out[-300:]
    [path] = list((smtp.maildir / "new").iterdir())
    assert path.stat().st_size > blocks * len(block) * 71 // 72  # stored with LF line ends
    assert peak < 50 * 1024, f"peak RSS {peak} KiB"


# 7. Received header ----------------------------------------------------------------
def test_received_header_fields_and_sanitising(smtp):
    smtp.run(dialogue("EHLO evil(é)\u00a0host", "MAIL FROM:<a@b.example>", "RCPT TO:<x@example.test>", "DATA", "QUIT",
                      body="Subject: r\r\n\r\nbody"), TCPREMOTEHOST="client.example")
    [msg] = smtp.messages()
    received = msg.split(b"\nSubject:")[0].split(b"Received: ")[1]
    assert received.startswith(b"from evil????host ")  # no comment opened by the client
    assert b"(client.example [192.0.2.10])" in received
    assert b"by mx.example.test (qpsmtpd-stdio/" in received and b"with ESMTP id " in received
    assert b"for <x@example.test>;" in received
    assert all(32 <= c < 127 or c in b"\n\t" for c in received)


# 8. No queue plugin --------------------------------------------------------------------
def test_no_queue_plugin_answers_451(smtp):
    smtp.plugins("rcpt_ok")
    r = smtp.run(simple_session())
    assert r.codes[5] == 451


# 9. Never lose mail --------------------------------------------------------------------
def test_unwritable_maildir_answers_451_and_leaves_nothing_in_new(smtp):
    smtp.maildir.mkdir()
    (smtp.maildir / "tmp").mkdir()
    (smtp.maildir / "new").write_text("not a directory")
    r = smtp.run(simple_session())
    assert r.codes[5] == 451
    assert smtp.leftovers() == []
    assert "cannot deliver" in r.log


def test_maildir_created_with_subdirs(smtp):
    smtp.run(simple_session())
    assert {p.name for p in smtp.maildir.iterdir()} == {"tmp", "new", "cur"}


def test_maildir_per_recipient_template(smtp):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir} %d/%l")
    smtp.run(dialogue("EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<Bob@example.test>", "RCPT TO:<carol@example.test>",
                      "DATA", "QUIT", body=SIMPLE_BODY))
    bob = smtp.messages(smtp.maildir / "example.test" / "bob")
    carol = smtp.messages(smtp.maildir / "example.test" / "carol")
    assert len(bob) == 1 and len(carol) == 1
    assert b"Delivered-To: Bob@example.test\n" in bob[0] and b"carol" not in bob[0].split(b"Received")[0]


# 10. Timeouts and signals ----------------------------------------------------------------
def test_read_timeout_gives_421(smtp):
    smtp.write("timeout", "1")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                            env=smtp.env())
    theirs.close()
    ours.settimeout(20)
    out = b""
    while chunk := ours.recv(4096):
        out += chunk
    proc.wait(timeout=20)
    assert out.startswith(b"220 ") and b"421 4.4.2" in out
    ours.close()


def test_sigterm_gives_421_and_no_traceback(smtp):
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([sys.executable, str(BIN)], stdin=theirs, stdout=theirs, stderr=subprocess.PIPE,
                            env=smtp.env())
    theirs.close()
    ours.settimeout(20)
    ours.sendall(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    got = b""
    while got.count(b"\r\n250 ") < 2:
        got += ours.recv(4096)
    proc.send_signal(signal.SIGTERM)
    while chunk := ours.recv(4096):
        got += chunk
    proc.wait(timeout=20)
    err = proc.stderr.read()
    assert b"421 4.3.2" in got and b"Traceback" not in got and b"Traceback" not in err
    ours.close()


# 11. Logging -----------------------------------------------------------------------------
def test_summary_line_per_session(smtp):
    smtp.write("loglevel", "6")
    r = smtp.run(simple_session())
    [summary] = [line for line in r.log.splitlines() if "session from" in line]
    assert "192.0.2.10" in summary and "helo=client.example" in summary and "messages=1" in summary
    assert "duration=" in summary
    assert any("from <a@example.org> to 1 recipient(s)" in line for line in r.log.splitlines())


def test_loglevel_filters(smtp):
    smtp.write("loglevel", "3")
    assert smtp.run(simple_session()).log == ""


def test_refused_ehlo_mid_transaction_leaves_no_half_transaction(smtp):
    smtp.plugin("nohelo", "from qpsmtpd_stdio import DENY\n"
                "def hook_ehlo(plugin, txn, host):\n    return DENY if host == 'bad' else None\n")
    smtp.plugins("nohelo", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(dialogue("EHLO good", "MAIL FROM:<a@b.example>", "EHLO bad", "RCPT TO:<x@example.test>", "QUIT"))
    assert r.codes == [220, 250, 250, 550, 503, 221]


def test_debian_compat_plugin_names(smtp):
    smtp.write("badmailfrom", "spammer@example.org")
    smtp.plugins("check_relay", "check_spamhelo", "check_badmailfrom", "check_badrcptto", "check_loop", "rcpt_ok",
                 f"queue/maildir {smtp.maildir}")
    assert smtp.run(simple_session(sender="spammer@example.org")).codes[:3] == [220, 250, 550]
    assert smtp.run(simple_session()).codes[-2:] == [250, 221]
    assert len(smtp.messages()) == 1


def test_queue_hook_time_limit_grows_with_message_size(smtp):
    # A queue plugin that needs 2 s for a 3 MiB message: over a 1 s plugin_timeout, within 1 s + 1 s/MiB.
    smtp.write("plugin_timeout", "1")
    smtp.write("databytes", "0")
    smtp.plugin("slowqueue", "import time\nfrom qpsmtpd_stdio import OK\n"
                "def hook_queue(plugin, txn):\n    time.sleep(2)\n    return OK, 'slow but queued'\n")
    smtp.plugins("rcpt_ok", "slowqueue")
    body = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * (3 * 1024 * 1024 // 72)
    r = smtp.run(simple_session(body=body))
    assert b"250 2.0.0 slow but queued" in r.stdout
    r = smtp.run(simple_session())  # a small message gets the plain 1 s limit
    assert r.codes[-2] == 451 and "time limit" in r.log
