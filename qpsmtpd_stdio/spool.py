"""Where a message's bytes wait between DATA and the queue.

Small messages stay in memory; past `size_threshold` octets they move to an
unnamed temp file in `spool_dir` (O_TMPFILE, or unlinked at once), so memory
stays flat whatever the message size and nothing is left behind when the
process dies.
"""

from __future__ import annotations

import io
import os

CHUNK = 1 << 20


class Spool:
    def __init__(self, directory: str, threshold: int) -> None:
        self.directory = directory
        self.threshold = threshold
        self.size = 0
        self._mem: bytearray | None = bytearray()
        self._fd: int | None = None

    def write(self, data: bytes) -> None:
        if self._mem is not None:
            self._mem += data
            if len(self._mem) > self.threshold:
                self._to_disk()
        else:
            _write_all(self._fd, data)
        self.size += len(data)

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

    def open(self, offset: int = 0) -> io.BufferedReader:
        """A new reader of the spooled bytes from `offset`; readers do not disturb one another."""
        return io.BufferedReader(_SpoolReader(self, offset), CHUNK)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._mem = None


class _SpoolReader(io.RawIOBase):
    def __init__(self, spool: Spool, offset: int) -> None:
        self._spool = spool
        self._start = offset
        self._pos = offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._spool.pread(len(buffer), self._pos)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = self._start + offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._spool.size + offset
        return self._pos - self._start

    def tell(self) -> int:
        return self._pos - self._start


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
