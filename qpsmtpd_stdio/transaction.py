"""The transaction: one message's envelope and content, the `txn` argument of every hook.

Its connection (who is calling) is in connection.py.
"""

import os
import time

from .headers import Headers

_counter = 0


def new_id() -> str:
    """A queue id unique on this host: seconds, microseconds, pid and a counter, in hex."""
    global _counter
    _counter += 1
    now = time.time()
    return f"{int(now):X}{int(now % 1 * 1e6):05X}.{os.getpid():X}.{_counter}"


class Transaction:
    """One mail transaction, from MAIL to the end of DATA or RSET."""

    def __init__(self) -> None:
        self.id = new_id()
        self.sender = None            # Address, after MAIL
        self.mail_params: dict = {}
        self.recipients: list = []    # Address objects, in order
        self.rcpt_params: list[dict] = []
        self.notes: dict = {}
        self.header: Headers | None = None  # after DATA
        self.data_size = 0
        self.smtputf8 = False
        self.body_type = "7BIT"
        self.auth_sender = None       # MAIL's AUTH= parameter (RFC 4954 5): "<>" unless the client authenticated
        self._spool = None
        self._body_offset = 0       # where the body starts in the spool (its stored octets)
        self._body_crlf_offset = 0  # ... and in the message with CRLF line ends

    def attach(self, spool, body_offset: int, body_crlf_offset: int) -> None:
        """The message has arrived: its octets are in `spool`, the body from those offsets (see spool.py)."""
        self._spool, self._body_offset, self._body_crlf_offset = spool, body_offset, body_crlf_offset
        self.data_size = spool.crlf_size

    def add_recipient(self, address) -> None:
        """Add a recipient (an Address, or `user@host` text), as qpsmtpd's add_recipient; never twice."""
        address = self._address(address)
        if address not in self.recipients:
            self.recipients.append(address)
            self.rcpt_params.append({})

    def remove_recipient(self, address) -> None:
        """Remove a recipient (an Address, or `user@host` text), as qpsmtpd's remove_recipient."""
        address = self._address(address)
        while address in self.recipients:
            index = self.recipients.index(address)
            del self.recipients[index]
            if index < len(self.rcpt_params):
                del self.rcpt_params[index]

    @staticmethod
    def _address(address):
        if isinstance(address, str):
            from .address import Address

            return Address.parse(address)
        return address

    def add_header(self, name: str, value: str) -> None:
        """Add a header field to the message (at the end of the header block)."""
        self.header.add(name, value)

    def body_write(self, data) -> None:
        """Append to the body, after the data (qpsmtpd's body_write): text is UTF-8, every line end CRLF.

        A NUL is refused (ValueError), as in a message from a client. Queues get what they would get from a
        client: smtp-forward dot-stuffs it, so a `.` line written here cannot end the message early.
        """
        if self._spool is None:
            raise RuntimeError("body_write: no message yet (it works from data_post on)")
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if b"\0" in data:
            raise ValueError("body_write: NUL in the data")
        self._spool.write(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), bare_lf=False)
        self.data_size = self._spool.crlf_size

    def replace_body(self, data: bytes) -> None:
        """Make `data` the whole body (a milter's or a filter's rewrite): every line end CRLF, NUL refused.

        The new body goes after the old one in the spool and the body starts there from now on; the old
        bytes are never read again.
        """
        if self._spool is None:
            raise RuntimeError("replace_body: no message yet (it works from data_post on)")
        if b"\0" in data:
            raise ValueError("replace_body: NUL in the data")
        start, crlf_start = self._spool.size, self._spool.crlf_size
        mended = bytes(data).replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        self._spool.write(mended, bare_lf=False, bare_cr=False)
        self._body_offset, self._body_crlf_offset = start, crlf_start
        self.data_size = self._spool.crlf_size

    def body_stream(self):
        """The message body (after the header block) as a binary file object, CRLF line ends."""
        return self._spool.open(self._body_offset, crlf=True)

    @property
    def body_size(self) -> int:
        """Octets of the body with CRLF line ends: what body_stream() gives."""
        return self.data_size - self._body_crlf_offset

    def write_message(self, out, eol: bytes = b"\n") -> None:
        """Write the whole message as message_chunks() gives it to the binary file `out` (flushed at the end).

        A body spooled to disk with LF line ends, written with LF, is copied by the kernel: its octets
        never pass through this process again.
        """
        if eol == b"\n" and self._spool.lf and self._spool.on_disk:
            out.write(self.header.as_bytes(eol))
            out.flush()
            self._spool.copy_to(out.fileno(), self._body_offset)
            return
        for chunk in self.message_chunks(eol):
            out.write(chunk)
        out.flush()

    def message_chunks(self, eol: bytes = b"\r\n", chunk_size: int = 1 << 20):
        """The whole message as it stands now (headers as modified, then the body), in chunks, with `eol` line ends."""
        yield self.header.as_bytes(eol)
        stream = self._spool.open(self._body_offset)
        if self._spool.lf:  # stored with LF line ends: a queue that wants them copies the octets as they are
            while chunk := stream.read(chunk_size):
                yield chunk if eol == b"\n" else chunk.replace(b"\n", eol)
            return
        carry = b""
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            chunk = carry + chunk
            carry = b""
            if eol != b"\r\n":
                if chunk.endswith(b"\r"):
                    chunk, carry = chunk[:-1], b"\r"
                chunk = chunk.replace(b"\r\n", eol)
            yield chunk
        if carry:
            yield carry
