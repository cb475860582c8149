"""forkserver's options (qpsmtpd's names), listen endpoints, and what it preloads for a config."""

import pytest

from qpsmtpd_stdio.forkserver import CORE, default_preload, endpoints, parse_args


def test_qpsmtpd_option_names():
    opts = parse_args(["-l", "127.0.0.1", "--listen-address=[::1]:2526", "-p", "25", "--port", "587",
                       "-c", "30", "--max-from-ip", "3", "-u", "qpsmtpd", "--pid-file", "/run/x.pid", "-d", "-H"])
    assert (opts["limit"], opts["per_ip"], opts["user"], opts["pid_file"], opts["detach"]) == (30, 3, "qpsmtpd",
                                                                                               "/run/x.pid", True)
    assert endpoints(opts) == [("127.0.0.1", 25, False), ("127.0.0.1", 587, False), ("::1", 2526, False)]
    with pytest.raises(SystemExit):
        parse_args(["--no-such-option"])
    with pytest.raises(SystemExit):
        parse_args(["-p"])


def test_defaults_and_smtps():
    assert endpoints(parse_args([])) == [("::", 2525, False)]
    assert endpoints(parse_args(["-l", "0.0.0.0", "-p", "25", "--smtps-port", "465"])) == [
        ("0.0.0.0", 25, False), ("0.0.0.0", 465, True)]


def test_preload_follows_the_plugins_named(tmp_path):
    (tmp_path / "plugins").write_text("dkim\ngreylisting:1\nkarma\nrcpt_ok\n")
    assert default_preload(str(tmp_path)) == [*CORE, "dkim", "_sqlite3"]
    (tmp_path / "plugins").write_text("rcpt_ok\n")
    (tmp_path / "store").write_text("redis://127.0.0.1:6379/0\n")
    assert default_preload(str(tmp_path)) == [*CORE, "redis"]
