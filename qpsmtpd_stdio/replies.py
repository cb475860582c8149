"""What a hook's answer means on the wire: pure functions from (stage, hook result) to a Reply.

One table, STAGES, holds the reply for each refusal at each stage, following
qpsmtpd (README "Hooks and replies" is generated from it). Deciding is kept
apart from sending: the session, DATA and BDAT all ask `decide()` and send
what it says. Two changes from qpsmtpd: a plugin that fails answers 4xx
instead of being skipped, and every reply carries an RFC 3463 enhanced code.
"""

from .constants import DENY, DENY_DISCONNECT, DENYSOFT, DENYSOFT_DISCONNECT, DONE, SOFTWARE, VERSION
from .protocol import Reply

REFUSALS = (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT)
DISCONNECTS = (DENY_DISCONNECT, DENYSOFT_DISCONNECT)


def _refusals(deny: tuple, soft: tuple, deny_disconnect: tuple | None = None, soft_disconnect: tuple | None = None):
    """(code, enhanced, default text) for DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT."""
    return {DENY: deny, DENYSOFT: soft, DENY_DISCONNECT: deny_disconnect or deny,
            DENYSOFT_DISCONNECT: soft_disconnect or (421,) + soft[1:]}


_HELLO = _refusals((550, "5.7.1", "Denied"), (450, "4.7.1", "Temporarily denied"))
_PRE = _refusals((550, "5.5.4", "Denied"), (451, "4.3.0", "Internal error - try again later"))
_MESSAGE = _refusals((554, "5.7.1", "Message denied"), (451, "4.7.1", "Message denied temporarily"))
_COMMAND = _refusals((500, "5.5.1", "Stop wasting my time."), (451, "4.3.0", "Internal error"))

# stage -> {result code -> (reply code, enhanced code, default text)}. `{}` in a text is the command's subject.
STAGES: dict[str, dict[int, tuple]] = {
    "connect": _refusals((554, "5.7.1", "Connection from you denied, bye bye."),
                         (421, "4.7.0", "Connection from you temporarily denied, bye bye.")),
    "helo": _HELLO,
    "ehlo": _HELLO,
    "mail_pre": _PRE,
    "rcpt_pre": _PRE,
    "mail": _refusals((550, "5.7.1", "{}, denied"), (450, "4.7.1", "{}, temporarily denied")),
    "rcpt": _refusals((550, "5.7.1", "relaying denied"), (450, "4.7.1", "relaying denied"),
                      (550, "5.7.1", "delivery denied")),
    "data": _MESSAGE,
    "data_headers_end": _MESSAGE,
    "data_post": _MESSAGE,
    "queue": _MESSAGE,
    "noop": _COMMAND,
    "vrfy": _refusals((554, "5.7.1", "Access Denied"), (451, "4.3.0", "Internal error")),
    "help": _refusals((500, "5.5.1", "Syntax error, command not recognized"), (451, "4.3.0", "Internal error")),
    "unrecognized_command": _refusals((500, "5.5.1", "Unrecognized command"), (451, "4.3.0", "Internal error"),
                                      (521, "5.5.1", "Unrecognized command"), (421, "4.3.0", "Unrecognized command")),
    "quit": {},  # the goodbye is always sent; only (DONE, "221 text") changes it
}
# What happens when no plugin refuses, for README's table.
OTHERWISE = {
    "connect": "220", "helo": "250", "ehlo": "250 with the extensions", "mail_pre": "the command goes on",
    "rcpt_pre": "the command goes on", "mail": "250", "rcpt": "`OK` → 250, all `DECLINED` → 450", "data": "354",
    "data_headers_end": "`data_post` runs", "data_post": "the message goes to the queue", "queue": "`OK` → 250, all `DECLINED` → 451",
    "noop": "250", "vrfy": "`OK` → 250, else 252", "help": "214; `(OK, lines)` gives those lines", "unrecognized_command": "500",
    "quit": "221; `(DONE, \"221 text\")` replaces its text",
}


class Verdict:
    """The reply a hook's answer stands for, and what the session must do besides sending it."""

    __slots__ = ("reply", "refused", "disconnect")

    def __init__(self, reply: Reply, refused: bool = False, disconnect: bool = False) -> None:
        self.reply = reply
        self.refused = refused        # a DENY* result: logged with the plugin's name
        self.disconnect = disconnect  # a *_DISCONNECT result: close after the reply

    @property
    def ok(self) -> bool:
        return self.reply.code < 400

    def __repr__(self) -> str:
        return f"Verdict({self.reply!r}, refused={self.refused}, disconnect={self.disconnect})"


def greeting(configured: str | None, me: str) -> str:
    """The 220 text: config `smtpgreeting` (with ESMTP added, so clients still send EHLO), else ours."""
    if configured:
        return configured if "ESMTP" in configured.split() else configured + " ESMTP"
    return f"{me} ESMTP {SOFTWARE} {VERSION} ready; send us your mail, but not your spam."


def decide(stage: str, result, default: Reply, subject: str = "") -> Verdict:
    """The verdict for `result` (a HookResult) at `stage`; `default` is the reply when no plugin refused.

    A plugin's own text replaces the default text. DONE with text that starts
    with a reply code is sent as it is; DONE without text gives the default.
    """
    code = result.code
    refusal = STAGES[stage].get(code)
    if refusal is not None:
        reply_code, enhanced, text = refusal
        return Verdict(Reply(reply_code, result.lines or [text.format(subject)], enhanced),
                       refused=True, disconnect=code in DISCONNECTS)
    if code == DONE and result.lines:
        return Verdict(done_reply(result.lines, default.code))
    return Verdict(default)


def done_reply(lines: list[str], default_code: int) -> Reply:
    """A plugin's DONE text as a reply: `"451 try later"` keeps its code; text without one gets `default_code`."""
    code = reply_code(lines[0])
    if code is None:
        return Reply(default_code, lines, default_enhanced(default_code))
    return Reply(code, [lines[0][4:]] + lines[1:], default_enhanced(code))


def reply_code(text: str) -> int | None:
    """The reply code that `text` starts with (200-599, then a space, a dash or the end), else None."""
    head = text[:3]
    if len(head) == 3 and head.isascii() and head.isdigit() and head[0] in "2345" and text[3:4] in ("", " ", "-"):
        return int(head)
    return None


def default_enhanced(code: int) -> str | None:
    """The enhanced code put before a reply that carries none (none for 220, 354: they take no text)."""
    if code in (220, 354):
        return None
    return f"{code // 100}.0.0"


def after_data(stage: str, result) -> Verdict | None:
    """data_post and queue: the verdict for a refusal, or None to go on (OK, DECLINED, DONE).

    A plugin that failed (not one that said DENYSOFT) gets 4.3.0, a local error.
    """
    if result.code not in REFUSALS:
        return None
    verdict = decide(stage, result, Reply(451, "Queuing failed", "4.3.0"))
    if result.code == DENYSOFT and result.failed:
        verdict.reply = Reply(451, verdict.reply.lines, "4.3.0")
    return verdict


def markdown_table() -> str:
    """README's table of replies, made from STAGES."""
    names = {DENY: "DENY", DENYSOFT: "DENYSOFT", DENY_DISCONNECT: "DENY_DISCONNECT",
             DENYSOFT_DISCONNECT: "DENYSOFT_DISCONNECT"}
    rows = ["| hook | " + " | ".join(f"`{names[c]}`" for c in REFUSALS) + " | otherwise |",
            "|---|---|---|---|---|---|"]
    for stage, table in STAGES.items():
        cells = [f"{table[c][0]}" + (" and close" if c in DISCONNECTS and table[c][0] != 421 else "")
                 if c in table else "ignored" for c in REFUSALS]
        rows.append(f"| `{stage}` | " + " | ".join(cells) + f" | {OTHERWISE[stage]} |")
    return "\n".join(rows)



if __name__ == "__main__":
    print(markdown_table())
