"""Where a message's bytes wait between DATA and the queue.

Small messages stay in memory; past `size_threshold` octets they move to an
unnamed temp file in `spool_dir` (O_TMPFILE, or unlinked at once), so memory
stays flat whatever the message size and nothing is left behind when the
process dies.

A spool made with `lf=True` stores each CRLF as a lone LF, the form every
queue writes (Maildir, qmail-queue, sendmail, and the SMTP client, which
puts the CRs back): a queue then copies the body without converting it.
That form is exact only while no bare LF has arrived, so the first chunk
that holds one (bare_newline keep) turns the spool back into the octets as
received, once. `open(crlf=True)` reads CRLF line ends from either form.
"""

import io
import os

CHUNK = 1 << 20


class Spool:
    def __init__(self, directory: str, threshold: int, lf: bool = False) -> None:
        self.directory = directory
        self.threshold = threshold
        self.lf = lf            # stored with LF for CRLF (see above)
        self.size = 0           # octets stored: the offsets of pread() and open()
        self.crlf_size = 0      # octets with CRLF line ends: the message's size as received
        self._mem: bytearray | None = bytearray()
        self._fd: int | None = None
        self._cr_held = False   # lf: the last chunk ended in CR; the next one says whether it was a line end
        self._finished = False

    def write(self, data: bytes, bare_lf: bool = True, bare_cr: bool = True) -> None:
        """Append `data` (CRLF line ends). `bare_lf`/`bare_cr` false: the caller knows it holds none.

        A CR ending a chunk counts as bare in `bare_cr` only once the next chunk shows it is (DataStats).
        """
        size = len(data)
        if self.lf:
            if bare_lf:
                self._to_crlf()
            else:
                if self._cr_held:
                    data, self._cr_held = b"\r" + data, False
                if data[-1:] == b"\r" and not self._finished:
                    data, self._cr_held = data[:-1], True
                # translate is one pass of a table; replace also works when a CR stands alone
                data = data.replace(b"\r\n", b"\n") if bare_cr else data.translate(None, b"\r")
        self._store(data)
        self.crlf_size += size

    def finish(self) -> None:
        """The message is complete: a CR still held was a bare one."""
        self._finished = True
        if self._cr_held:
            self._cr_held = False
            self._store(b"\r")

    def _store(self, data) -> None:
        if self._mem is not None:
            self._mem += data
            if len(self._mem) > self.threshold:
                self._to_disk()
        else:
            _write_all(self._fd, data)
        self.size += len(data)

    def _to_crlf(self) -> None:
        """Back to the octets as received: every stored LF was a CRLF, so this is exact."""
        self.lf = False
        held = b"\r" if self._cr_held else b""
        self._cr_held = False
        if self._mem is not None:
            self._mem = bytearray(bytes(self._mem).replace(b"\n", b"\r\n") + held)
        else:
            old, self._fd = self._fd, _anonymous_file(self.directory)
            offset = 0
            try:
                while chunk := os.pread(old, CHUNK, offset):
                    offset += len(chunk)
                    _write_all(self._fd, chunk.replace(b"\n", b"\r\n"))
                _write_all(self._fd, held)
            finally:
                os.close(old)
        self.size = self.crlf_size

    def _to_disk(self) -> None:
        self._fd = _anonymous_file(self.directory)
        _write_all(self._fd, self._mem)
        self._mem = None

    @property
    def on_disk(self) -> bool:
        return self._fd is not None

    def pread(self, size: int, offset: int) -> bytes:
        if self._mem is not None:
            return bytes(self._mem[offset:offset + size])
        return os.pread(self._fd, size, offset)

    def open(self, offset: int = 0, crlf: bool = False) -> io.BufferedReader:
        """A new reader of the spooled bytes from `offset`; readers do not disturb one another.

        With `crlf`, line ends read as CRLF whatever the form (an `lf` spool then seeks by reading again).
        """
        return io.BufferedReader(_SpoolReader(self, offset, crlf and self.lf), CHUNK)

    def copy_to(self, fd: int, offset: int) -> None:
        """Append the stored octets from `offset` to the file `fd`; from a spool file, the kernel copies them."""
        if self._fd is not None and hasattr(os, "copy_file_range"):
            while offset < self.size:
                try:
                    n = os.copy_file_range(self._fd, fd, self.size - offset, offset)
                except OSError:
                    break  # no copy_file_range between these file systems: the loop below copies the rest
                if n == 0:
                    break
                offset += n
        while offset < self.size:
            data = self.pread(CHUNK, offset)
            if not data:
                raise OSError(f"the spool ends at {offset} octets, not {self.size}")
            _write_all(fd, data)
            offset += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._mem = None


class _SpoolReader(io.RawIOBase):
    """The spooled octets from `offset`; with `crlf`, an `lf` spool's line ends read as CRLF."""

    def __init__(self, spool: Spool, offset: int, crlf: bool = False) -> None:
        self._spool = spool
        self._start = offset
        self._pos = offset
        self._crlf = crlf
        self._ready = b""  # crlf: converted octets not yet handed out, from _at
        self._at = 0
        self._out = 0      # crlf: converted octets handed out: the position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._crlf:
            data = self._spool.pread(len(buffer), self._pos)
            buffer[:len(data)] = data
            self._pos += len(data)
            return len(data)
        if self._at == len(self._ready):
            data = self._spool.pread(max(1, len(buffer) // 2), self._pos)  # at most doubles
            self._pos += len(data)
            self._ready, self._at = data.replace(b"\n", b"\r\n"), 0
        n = min(len(buffer), len(self._ready) - self._at)
        buffer[:n] = self._ready[self._at:self._at + n]
        self._at += n
        self._out += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        if self._crlf:
            # Positions count converted octets: go back to the start and read up to the target.
            target = offset + (self._out if whence == 1 else 0)
            if whence not in (0, 1) or target < 0:
                raise io.UnsupportedOperation("a CRLF reading of an LF spool seeks only from its start")
            self._pos, self._ready, self._at, self._out = self._start, b"", 0, 0
            while self._out < target and self.readinto(memoryview(bytearray(min(CHUNK, target - self._out)))):
                pass
            return self._out
        if whence == 0:
            self._pos = self._start + offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._spool.size + offset
        return self._pos - self._start

    def tell(self) -> int:
        return self._out if self._crlf else self._pos - self._start


def _anonymous_file(directory: str) -> int:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    if hasattr(os, "O_TMPFILE"):
        try:
            return os.open(directory, flags | os.O_TMPFILE, 0o600)
        except OSError:
            pass  # file system without O_TMPFILE support
    for n in range(100):
        path = os.path.join(directory, f"qpsmtpd-stdio.{os.getpid()}.{n}")
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.unlink(path)
        return fd
    raise OSError(f"cannot create a spool file in {directory}")


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
