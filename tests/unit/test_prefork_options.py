"""qpsmtpd-prefork's options: Debian's qpsmtpd-prefork names and defaults."""

import pytest

from qpsmtpd_stdio.forkserver import endpoints
from qpsmtpd_stdio.prefork import parse_args


def test_debian_option_names():
    opts = parse_args(["--listen-address", "127.0.0.1", "--interface=[::1]:2526", "--port", "2525",
                       "--children", "30", "--idle-children", "7", "--max-from-ip", "3", "--user", "qpsmtpd",
                       "--pid-file", "/run/p.pid", "--detach", "--renice-parent", "5", "--pretty-child"])
    assert (opts["limit"], opts["idle"], opts["per_ip"], opts["user"], opts["pid_file"], opts["detach"],
            opts["renice"]) == (30, 7, 3, "qpsmtpd", "/run/p.pid", True, 5)
    assert endpoints(opts) == [("127.0.0.1", 2525, False), ("::1", 2526, False)]
    with pytest.raises(SystemExit):
        parse_args(["--children", "²"])
    with pytest.raises(SystemExit):
        parse_args(["--no-such-option"])


def test_defaults_as_debian_and_bounds():
    opts = parse_args([])
    assert (opts["limit"], opts["idle"], opts["per_ip"]) == (15, 5, 10)
    assert endpoints(opts) == [("::", 25, False)]
    opts = parse_args(["--children", "3", "--idle-children", "9", "--max-from-ip", "0"])
    assert (opts["limit"], opts["idle"], opts["per_ip"]) == (3, 3, 3)  # idle within the limit; 0: no own limit
