"""Running a program with the message on its stdin, for the queue plugins (queue/sendmail, queue/qmail-queue).

The program gets the message in chunks, then (for qmail-queue) an envelope
on its fd 1; it has `timeout` seconds to exit, after which it is killed.
What it writes to stderr (and stdout, when no envelope goes there) is kept,
up to SAID octets, for the log. subprocess is imported here, when a message
is queued, not at every connection's start.
"""


from .constants import LOGERROR, LOGINFO, LOGWARN

TYPE_CHECKING = False  # collections.abc costs ~2 ms of imports per connection
if TYPE_CHECKING:
    from collections.abc import Iterable

SAID = 2000  # octets of the program's output kept for the log


class Outcome:
    """How a run ended. `status`: the exit status (negative: killed by that signal), None if it timed out."""

    __slots__ = ("status", "complete", "said", "pid", "write_error")

    def __init__(self, status: int | None, complete: bool, said: str, pid: int, write_error: str) -> None:
        self.status = status
        self.complete = complete        # every octet of the input was written
        self.said = said
        self.pid = pid
        self.write_error = write_error  # why not, when not (the program exited early: EPIPE)

    @property
    def ok(self) -> bool:
        return self.status == 0 and self.complete

    def report(self, log, name: str, timeout: float) -> None:
        """Log what went wrong on the way (`log(level, message)`, e.g. plugin.log) and what the program said."""
        if self.write_error:
            log(LOGWARN, f"{name} did not read the whole message: {self.write_error}")
        if self.status is None:
            log(LOGERROR, f"{name} still running after {timeout:g}s; killed")
        if self.said:
            log(LOGWARN if self.status else LOGINFO, f"{name} said: {self.said}")

    def describe(self) -> str:
        """The failure, in words for the log."""
        if self.status is None:
            return "timed out"
        if self.status == 0:
            return "exited 0 without reading all of its input"
        if self.status < 0:
            return f"killed by signal {-self.status}"
        return f"exit {self.status}"


def run(argv: list[str], chunks: "Iterable[bytes]", timeout: float, envelope: bytes | None = None) -> Outcome:
    """Run `argv`, write `chunks` to its stdin (then `envelope` to its fd 1), and wait up to `timeout`.

    Raises OSError if the program cannot be started.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as output:
        env_r = env_w = None
        if envelope is not None:
            env_r, env_w = os.pipe()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=env_r if env_r is not None else output,
                                    stderr=output)
        except OSError:
            if env_w is not None:
                os.close(env_w)
            raise
        finally:
            if env_r is not None:
                os.close(env_r)
        complete, status, write_error = False, None, ""
        try:
            try:
                with proc.stdin as stdin:
                    for chunk in chunks:
                        stdin.write(chunk)
                    stdin.close()  # all of the message before any of the envelope
                    if env_w is not None:
                        with open(env_w, "wb") as out:
                            env_w = None
                            out.write(envelope)
                complete = True
            except OSError as exc:  # it exited early (EPIPE): its status says why
                write_error = exc.strerror or str(exc)
            finally:
                if env_w is not None:
                    os.close(env_w)
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        output.seek(0)
        said = output.read(SAID).decode("utf-8", "replace").strip()
    return Outcome(status, complete, said, proc.pid, write_error)
