"""A message from its first octet to the queue: spooling, the end-of-data checks, data_post and the queue hooks.

`Incoming` holds one message as DATA or BDAT delivers it. At its end,
`check()` applies the size, line and header limits, and `deliver()` adds the
Received and Authentication-Results fields and asks data_post, queue_pre,
queue and queue_post. Each returns a Verdict (replies.py); the session sends
it. 250 is the answer only when a queue plugin said OK (it has stored the
message durably) or DONE.
"""

import os

from .constants import DECLINED, DONE, LOGERROR, LOGWARN, OK
from .headers import HeaderLimit, Headers, split_header_block
from .protocol import Reply
from .received import received_lines
from .replies import DISCONNECTS, Verdict, after_data, reply_code
from .spool import Spool

LOCAL_ERROR = Reply(451, "Local error in processing - try again later", "4.3.0")
TOO_BIG = Reply(552, "Message size exceeds fixed maximum message size", "5.3.4")


class Incoming:
    """One message as it arrives: spooled as it comes, with nothing stored past `databytes`."""

    def __init__(self, config, databytes: int, bare_newline: str = "reject") -> None:
        spool_dir = config.get_one("spool_dir") or os.environ.get("TMPDIR") or "/tmp"
        self.spool = Spool(spool_dir, config.get_int("size_threshold"), lf=True)
        self.databytes = databytes
        self.bare_newline = bare_newline  # normalize, reject or keep
        self.doomed = False  # a bare CR or LF the policy refuses arrived: check() refuses, so nothing more is stored
        self.dropped = 0
        self._cr_open = False  # the last octets written ended in CR
        self.too_big = False
        self.failed = False  # a spool write failed (disk full): this message gets 451, the session goes on

    def write(self, data: bytes, log, bare_lf: bool, bare_cr: bool) -> None:
        """Spool `data`; with bare_newline normalize, a bare LF in it (`bare_lf`) becomes CRLF first.

        `bare_lf`/`bare_cr` are the protocol's DataStats for this chunk: the spool's form depends on them.
        """
        if self.too_big or self.failed:
            return
        if self.refuses(bare_cr, bare_lf):
            self.doomed = True
        if self.bare_newline == "normalize" and bare_lf and not self.doomed:
            mended = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            data = mended[1:] if self._cr_open and data[:1] == b"\n" else mended  # BDAT split that CRLF
            bare_lf = False
        self._cr_open = data[-1:] == b"\r"
        if self.databytes and self.spool.crlf_size + self.dropped + len(data) > self.databytes:
            self.too_big = True  # keep reading to the end, store nothing more
            return
        if self.doomed:
            self.dropped += len(data)  # still counted: a message too big as well gets 552, as before
            return
        try:
            self.spool.write(data, bare_lf, bare_cr)
        except OSError as exc:
            log(LOGERROR, f"spool error: {exc}; the message will get 451")
            self.failed = True

    def refuses(self, bare_cr: bool, bare_lf: bool) -> bool:
        """The bare_newline policy refuses a message with a bare CR (unless keep) or a bare LF (reject)."""
        return bare_cr and self.bare_newline != "keep" or bare_lf and self.bare_newline == "reject"

    def refusal(self) -> Reply | None:
        """The reply that refuses the message before its end is read (BDAT refuses the chunk at once)."""
        if self.failed:
            return LOCAL_ERROR
        return TOO_BIG if self.too_big else None

    def check(self, stats, txn, config, max_line: int) -> Reply | None:
        """The reply that refuses the whole message, or None; on None, txn has its header and body."""
        refusal = self.refusal()
        if refusal is not None:
            return refusal
        if self.refuses(stats.bare_cr, stats.bare_lf):
            return Reply(554, "Message contains bare CR or LF characters; lines must end with CRLF (RFC 5321 2.3.8)",
                         "5.6.0")
        if stats.nul:
            return Reply(554, "Message contains a NUL character", "5.6.0")
        if max_line and stats.long_line:
            return Reply(554, f"Message has a line over {max_line} octets (RFC 5321 4.5.3.1.6)", "5.6.0")
        self.spool.finish()
        max_size = config.get_int("max_header_size")
        head = self.spool.pread(max_size + 2, 0)
        if self.spool.lf:
            head = head.replace(b"\n", b"\r\n")[:max_size + 2]
        try:
            block, offset = split_header_block(head, max_size, config.get_int("max_header_lines"))
        except HeaderLimit as exc:
            return Reply(552, f"Message header is too large: {exc}", "5.3.4")
        txn.header = Headers.parse(block) if block else Headers()
        stored = offset - head.count(b"\n", 0, offset) if self.spool.lf else offset  # each LF stood for a CRLF
        txn.attach(self.spool, stored, offset)
        return None

    def close(self) -> None:
        self.spool.close()


def deliver(host, txn, connection, config, me: str, log) -> Verdict:
    """Received, data_post, Authentication-Results, then the queue hooks: the verdict for the end of data."""
    verdict = after_data("data_headers_end", host.run("data_headers_end", txn))  # qpsmtpd's: the header alone
    if verdict is not None:
        return verdict
    result = host.run("received_line", txn)
    if result.code == OK and result.lines:
        txn.header.add_folded("Received", result.lines, prepend=True)
    else:
        txn.header.add_folded("Received", received_lines(me, connection, txn), prepend=True)
    verdict = after_data("data_post", host.run("data_post", txn))
    if verdict is not None:
        return verdict
    if connection.notes.get("authentication_results") or txn.notes.get("authentication_results"):
        from .authresults import add_authentication_results  # only when a plugin recorded a result

        add_authentication_results(txn, connection, config, me)
    result = host.run("queue_pre", txn)
    if result.code not in (OK, DECLINED, DONE):
        return Verdict(Reply(451, result.lines or ["Queuing failed - try again later"], "4.3.0"),
                       refused=True, disconnect=result.code in DISCONNECTS)
    result = host.run("queue", txn)
    if result.code == OK:
        host.run_all("queue_post", txn)
        return Verdict(Reply(250, result.lines or ["Queued"], "2.0.0"))
    if result.code == DECLINED:
        log(LOGWARN, "no queue plugin accepted the message")
        return Verdict(Reply(451, "Queuing declined or disabled; try again later", "4.3.0"))
    if result.code == DONE:
        # A queue that relays the downstream's own reply passes it on as it is.
        code = reply_code(result.lines[0]) if result.lines else None
        if code is not None:
            return Verdict(Reply(code, result.lines[0][4:], None))
        return Verdict(Reply(250, result.lines or ["Queued"], "2.0.0"))
    return after_data("queue", result)
