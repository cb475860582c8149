"""qpsmtpd_stdio/replies.py: a hook's answer to a reply, with plain values."""

from pathlib import Path

import pytest

from qpsmtpd_stdio.constants import DECLINED, DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, DONE, OK
from qpsmtpd_stdio.plugin import HookResult
from qpsmtpd_stdio.protocol import Reply
from qpsmtpd_stdio.replies import OTHERWISE, REFUSALS, STAGES, after_data, decide, done_reply, markdown_table, reply_code

README = Path(__file__).resolve().parents[2] / "README.md"
OK_250 = Reply(250, "fine", "2.0.0")


def wire(reply: Reply) -> bytes:
    return reply.to_bytes()


@pytest.mark.parametrize("code", [OK, DECLINED])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_refusal_gives_the_default(stage, code):
    verdict = decide(stage, HookResult(code, ["ignored text"]), OK_250)
    assert verdict.reply is OK_250 and verdict.ok and not verdict.refused and not verdict.disconnect


@pytest.mark.parametrize("stage,code,expected", [
    ("connect", DENY, 554), ("connect", DENYSOFT, 421), ("connect", DENY_DISCONNECT, 554),
    ("connect", DENYSOFT_DISCONNECT, 421),
    ("helo", DENY, 550), ("ehlo", DENYSOFT, 450), ("helo", DENYSOFT_DISCONNECT, 421),
    ("mail", DENY, 550), ("mail", DENYSOFT, 450), ("mail", DENY_DISCONNECT, 550), ("mail", DENYSOFT_DISCONNECT, 421),
    ("rcpt", DENY, 550), ("rcpt", DENYSOFT, 450), ("rcpt", DENYSOFT_DISCONNECT, 421),
    ("data", DENY, 554), ("data", DENYSOFT, 451), ("data", DENYSOFT_DISCONNECT, 421),
    ("mail_pre", DENY, 550), ("rcpt_pre", DENYSOFT, 451),
    ("noop", DENY, 500), ("vrfy", DENY, 554), ("help", DENY, 500), ("help", DENYSOFT, 451),
    ("unrecognized_command", DENY, 500), ("unrecognized_command", DENY_DISCONNECT, 521),
    ("unrecognized_command", DENYSOFT_DISCONNECT, 421),
])
def test_refusals_follow_qpsmtpd(stage, code, expected):
    verdict = decide(stage, HookResult(code, [], "some_plugin"), OK_250, "<a@b.example>")
    assert verdict.reply.code == expected
    assert verdict.refused and not verdict.ok
    assert verdict.disconnect == (code in (DENY_DISCONNECT, DENYSOFT_DISCONNECT))


def test_default_text_names_the_subject_and_a_plugin_text_replaces_it():
    assert decide("mail", HookResult(DENY), OK_250, "<a@b.example>").reply.text == "<a@b.example>, denied"
    assert decide("mail", HookResult(DENY, ["go away"]), OK_250, "<a@b.example>").reply.text == "go away"
    # A subject is data, not a template.
    assert decide("mail", HookResult(DENY), OK_250, "<{0}@x>").reply.text == "<{0}@x>, denied"


def test_every_refusal_carries_an_enhanced_code_of_its_class():
    for stage, table in STAGES.items():
        for code in table:
            reply = decide(stage, HookResult(code), OK_250).reply
            line = wire(reply).decode()
            assert line[4:6] == f"{reply.code // 100}.", (stage, code, line)


@pytest.mark.parametrize("lines,expected", [
    (["451 try later"], b"451 4.0.0 try later\r\n"),
    (["550 5.7.1 no"], b"550 5.7.1 no\r\n"),
    (["250-first", "second"], b"250-2.0.0 first\r\n250 2.0.0 second\r\n"),
    (["just text"], b"354 just text\r\n"),
    (["999 not a code"], b"354 999 not a code\r\n"),
    (["45 short"], b"354 45 short\r\n"),
    (["250ok"], b"354 250ok\r\n"),
    (["\u0662\u0665\u0660 arabic digits"], "354 \u0662\u0665\u0660 arabic digits\r\n".encode()),
])
def test_done_with_text(lines, expected):
    assert wire(done_reply(lines, 354)) == expected
    verdict = decide("data", HookResult(DONE, lines), Reply(354, "go ahead"))
    assert wire(verdict.reply) == expected and not verdict.refused


def test_done_without_text_is_the_default():
    assert decide("data", HookResult(DONE), OK_250).reply is OK_250


@pytest.mark.parametrize("text,code", [("250", 250), ("250 x", 250), ("421-x", 421), ("199 x", None), ("600 x", None),
                                       ("2500", None), ("", None), ("25", None), ("²50 x", None)])
def test_reply_code(text, code):
    assert reply_code(text) == code


def test_quit_has_no_refusal():
    bye = Reply(221, "bye", "2.0.0")
    for code in REFUSALS:
        assert decide("quit", HookResult(code, ["no"]), bye).reply is bye


def test_after_data_goes_on_unless_refused():
    for code in (OK, DECLINED, DONE):
        assert after_data("data_post", HookResult(code, ["x"])) is None
    soft = after_data("queue", HookResult(DENYSOFT, ["busy"]))
    assert wire(soft.reply) == b"451 4.7.1 busy\r\n"
    failed = after_data("queue", HookResult(DENYSOFT, ["plugin crashed"], "q", failed=True))
    assert wire(failed.reply) == b"451 4.3.0 plugin crashed\r\n"
    assert after_data("data_post", HookResult(DENY_DISCONNECT)).disconnect


def test_tables_are_complete():
    for stage, table in STAGES.items():
        assert set(table) in (set(), set(REFUSALS)), stage
    assert set(OTHERWISE) == set(STAGES)


def test_readme_table_is_generated_from_the_stages():
    assert markdown_table() in README.read_text(), "README's 'Hooks and replies' table: paste `python3 -m qpsmtpd_stdio.replies`"


def test_greeting():
    from qpsmtpd_stdio.replies import greeting

    assert greeting(None, "mx.example.test").startswith("mx.example.test ESMTP qpsmtpd-stdio ")
    assert greeting("mail.example.org hello", "x") == "mail.example.org hello ESMTP"
    assert greeting("mail.example.org ESMTP ready", "x") == "mail.example.org ESMTP ready"
