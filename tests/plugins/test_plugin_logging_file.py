"""plugins/logging/file.py: loglevel, tsformat, strftime and %i in PATH, O_APPEND sharing, |command, failures."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import dialogue, simple_session

LINE = re.compile(r"^\w{3} \w{3} \d\d \d\d:\d\d:\d\d \d{4} \S+\[\d+\]: .*$")


def lines(path):
    return path.read_text().splitlines()


def test_writes_lines_at_or_below_its_level_instead_of_stderr(smtp):
    log = smtp.root / "qp.log"
    smtp.write("logging", f"logging/file loglevel LOGINFO {log}")
    r = smtp.run(simple_session())
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert r.log == ""  # the logging hook took every line
    text = lines(log)
    assert all(LINE.match(line) for line in text), text
    assert any(": session from unknown[192.0.2.10]:40000 helo=client.example" in line for line in text)
    assert any("(queue) queue/maildir: delivered" in line for line in text)
    assert not any("<- '" in line for line in text)  # a LOGDEBUG line


def test_numeric_level_and_append(smtp):
    log = smtp.root / "qp.log"
    smtp.write("logging", f"logging/file loglevel 7 {log}")
    smtp.run(simple_session())
    first = len(lines(log))
    assert any("<- 'EHLO client.example" in line for line in lines(log))
    smtp.run(simple_session())
    assert len(lines(log)) > first + 5
    assert oct(log.stat().st_mode & 0o777) == "0o640"


def test_tsformat_and_strftime_path(smtp):
    smtp.write("logging", f"logging/file loglevel LOGINFO tsformat %Y-%m-%dT%H:%M:%S {smtp.root}/qp-%Y%m%d.log")
    before = time.strftime("qp-%Y%m%d.log")
    smtp.run(simple_session())
    [log] = smtp.root.glob("qp-*.log")
    assert log.name in (before, time.strftime("qp-%Y%m%d.log"))  # a session may span midnight
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S+\[\d+\]: ", line) for line in lines(log))


def test_percent_i_gives_one_file_per_session(smtp):
    smtp.write("logging", f"logging/file loglevel LOGINFO reopen nosplit {smtp.root}/s-%i-100%%.log")
    smtp.run(simple_session())
    smtp.run(simple_session())
    files = sorted(smtp.root.glob("s-*.log"))
    assert len(files) == 2 and all(f.name.endswith("-100%.log") for f in files)


def test_control_characters_cannot_forge_lines(smtp):
    log = smtp.root / "qp.log"
    smtp.plugin("noisy", "from qpsmtpd_stdio import LOGWARN\n"
                         "def hook_connect(plugin, txn):\n    plugin.log(LOGWARN, 'one\\nFAKE line\\rtwo')\n")
    smtp.write("logging", f"logging/file {log}")
    smtp.plugins("noisy", "relay", "rcpt_ok")
    smtp.run(dialogue("QUIT"))
    [line] = [line for line in lines(log) if "noisy" in line]
    assert line.endswith("(connect) noisy: one\\n FAKE line\\rtwo")
    assert not any(line.startswith("FAKE") for line in lines(log))


def test_concurrent_sessions_share_the_file_without_mixing_lines(smtp):
    log = smtp.root / "qp.log"
    smtp.write("logging", f"logging/file loglevel LOGDEBUG {log}")
    n = 16
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: smtp.run(simple_session()), range(n)))
    assert all(r.codes[-2:] == [250, 221] for r in results)
    text = lines(log)
    assert all(LINE.match(line) for line in text)
    assert sum(": session from " in line for line in text) == n
    assert len({line.split("[")[1].split("]")[0] for line in text}) == n  # n different pids


def test_pipe_to_a_command(smtp):
    out = smtp.root / "piped.log"
    smtp.write("logging", f"logging/file loglevel LOGINFO |cat >> {out}")
    r = smtp.run(simple_session())
    assert r.codes[-1] == 221
    for _ in range(50):  # the command outlives the session for a moment
        if out.exists() and "session from" in out.read_text():
            break
        time.sleep(0.1)
    assert "session from unknown[192.0.2.10]" in out.read_text()


def test_pipe_command_never_writes_to_the_client(smtp):
    smtp.write("logging", "logging/file loglevel LOGINFO |cat; echo 'oops on fd 1'")
    r = smtp.run(simple_session(), via="socketpair")
    r.assert_wellformed()
    assert b"oops" not in r.stdout and b"session from" not in r.stdout


def test_unopenable_file_one_error_and_mail_still_flows(smtp):
    smtp.write("logging", f"logging/file loglevel LOGDEBUG {smtp.root}/no/such/dir/qp.log")
    r = smtp.run(simple_session())
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert r.log.count("cannot open") == 1 and "No such file or directory" in r.log


def test_missing_path_refuses_the_session(smtp):
    smtp.write("logging", "logging/file loglevel LOGINFO")
    r = smtp.run(simple_session())
    assert r.codes == [421] and "needs a PATH" in r.log


def test_listed_in_config_plugins(smtp):
    log = smtp.root / "qp.log"
    smtp.plugins(f"logging/file loglevel LOGINFO {log}", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    r = smtp.run(simple_session())
    assert r.codes[-2:] == [250, 221]
    assert log.exists() and "session from" in log.read_text()
    assert r.log == ""


def test_plugin_timeout_still_applies_to_a_hook_that_logs(smtp):
    smtp.plugin("hang", "import time\nfrom qpsmtpd_stdio import LOGWARN\n"
                        "def hook_mail(plugin, txn, sender, params):\n"
                        "    plugin.log(LOGWARN, 'about to hang')\n    time.sleep(6)\n")
    smtp.write("logging", f"logging/file {smtp.root}/qp.log")
    smtp.write("plugin_timeout", "1")
    smtp.plugins("hang", "relay", "rcpt_ok")
    start = time.monotonic()
    r = smtp.run(dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT"))
    assert r.codes[2] in (450, 451), r.stdout  # without the logging plugin: 450 after 1 s
    assert time.monotonic() - start < 4


def test_fd_2_socket_gets_nothing(smtp):
    smtp.write("logging", f"logging/file loglevel LOGDEBUG {smtp.root}/qp.log")
    r = smtp.run(simple_session(), via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert "session from" in (smtp.root / "qp.log").read_text()


def test_loading_does_not_import_subprocess(smtp):
    smtp.plugin("imports", "import sys\nfrom qpsmtpd_stdio import LOGERROR\n"
                           "def hook_quit(plugin, txn):\n"
                           "    plugin.log(LOGERROR, 'subprocess loaded: %s' % ('subprocess' in sys.modules))\n")
    log = smtp.root / "qp.log"
    smtp.write("logging", f"logging/file {log}")
    smtp.plugins("imports", "relay", "rcpt_ok")
    smtp.run(dialogue("EHLO c.example", "QUIT"))
    assert "subprocess loaded: False" in log.read_text()



def test_line_breaks_beyond_cr_lf_are_escaped_for_logging_plugins(smtp):
    # The core escapes each message once, before any logging plugin sees it.
    log = smtp.root / "qp.log"
    smtp.write("logging", f"logging/file loglevel LOGDEBUG {log}")
    smtp.run(dialogue("EHLO evil\u0085forged\u2028line", "QUIT"))
    text = log.read_text(encoding="utf-8")
    assert "\u0085" not in text and "\u2028" not in text
    assert "evil\\x85forged\\x2028line" in text
