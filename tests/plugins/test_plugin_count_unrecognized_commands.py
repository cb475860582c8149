"""plugins/count_unrecognized_commands.py: the Nth unknown command gets 521 and the connection is closed."""

import pytest
from conftest import dialogue

BYE = "521 5.5.1 Closing connection, {} unrecognized commands. Perhaps you should read RFC 2821?"


def junk(n):
    return [f"JUNK{i} x" for i in range(n)]


def test_default_is_4(smtp):
    smtp.plugins("count_unrecognized_commands", "relay", "rcpt_ok")
    r = smtp.run(dialogue("EHLO c.example", *junk(6), "QUIT"))
    r.assert_wellformed()
    assert r.codes == [220, 250, 500, 500, 500, 521]
    assert r.lines[-1] == BYE.format(4).encode()


@pytest.mark.parametrize("n", [1, 2, 7])
def test_limit_argument(smtp, n):
    smtp.plugins(f"count_unrecognized_commands {n}", "relay", "rcpt_ok")
    r = smtp.run(dialogue("EHLO c.example", *junk(n + 3), "QUIT"))
    assert r.codes == [220, 250] + [500] * (n - 1) + [521]
    assert r.lines[-1] == BYE.format(n).encode()


def test_counts_across_transactions_and_known_commands_do_not_count(smtp):
    smtp.plugins("count_unrecognized_commands 3", "relay", "rcpt_ok")
    r = smtp.run(dialogue("EHLO c.example", "FOO", "NOOP", "RSET", "MAIL FROM:<a@example.org>", "BAR", "RSET",
                          "NOOP", "BAZ", "NOOP"))
    assert r.codes == [220, 250, 500, 250, 250, 250, 500, 250, 250, 521]


def test_bad_limit_uses_default(smtp):
    smtp.plugins("count_unrecognized_commands many", "relay", "rcpt_ok")
    r = smtp.run(dialogue("EHLO c.example", *junk(5)))
    assert r.codes == [220, 250, 500, 500, 500, 521]
    assert "invalid limit 'many'; using 4" in r.log


def test_without_the_plugin_no_disconnect(smtp):
    r = smtp.run(dialogue("EHLO c.example", *junk(5), "QUIT"))
    assert r.codes == [220, 250, 500, 500, 500, 500, 500, 221]


def test_socketpair(smtp):
    smtp.plugins("count_unrecognized_commands 2", "relay", "rcpt_ok")
    r = smtp.run(dialogue("EHLO c.example", *junk(3), "QUIT"), via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 500, 521]
