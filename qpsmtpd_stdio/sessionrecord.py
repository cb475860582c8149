"""One JSON line per session for monitoring, appended to the file named in config `session_record`
(or sent to syslog, facility mail, when that file says `syslog`).

Imported only when that file is configured (json costs an import). Many
sessions run at once, each its own process: the line is written with one
write() on an O_APPEND descriptor, so lines never interleave or overwrite
each other. A failure to write is logged, never the client's problem.

Fields: start (UTC, ISO 8601), client_ip, client_port, helo, tls (the
version or null), auth_user, relay, messages (one entry per message that
reached the end of DATA/BDAT: queue_id, sender, recipients, size, code),
sender/recipients/size/queue_id of the last of them (null if none),
verdicts (each hook answer other than DECLINED: hook, plugin, verdict),
code and result (the last error or message reply), errors, duration.

With config `prometheus_textfile`, the same record also updates the counters
in that file at the session's end (prometheus.py).

The record watches hook verdicts as one of the plugin host's observers: the
session calls `start()` when either file is configured, and `finish()` at its end.
"""

import os
import time

from .constants import DECLINED, LOGERROR, RETURN_CODE_NAMES

_UNRECORDED_HOOKS = frozenset(("deny", "ok", "logging", "config"))  # about other hooks, or not about the client


def start(config, host) -> "SessionRecord":
    """A record for this session, told of every hook verdict from now on."""
    path = config.get_one("session_record")
    prom = config.get_one("prometheus_textfile")
    if path and path != "syslog":  # `syslog`: the line goes to syslog (facility mail) instead of a file
        path = os.path.join(config.directory, path)
    record = SessionRecord(path or None, prom and os.path.join(config.directory, prom))
    host.observers.append(record.verdict)
    return record


class SessionRecord:
    def __init__(self, path: str | None, prometheus: str | None = None) -> None:
        self.path = path              # the JSON lines file, or None
        self.prometheus = prometheus  # the .prom textfile, or None
        self.verdicts: list[dict] = []
        self.messages: list[dict] = []

    def verdict(self, hook: str, result) -> None:
        if result.code != DECLINED and result.plugin and hook not in _UNRECORDED_HOOKS:
            self.verdicts.append({"hook": hook, "plugin": result.plugin,
                                  "verdict": RETURN_CODE_NAMES.get(result.code, str(result.code))})

    def message(self, txn, size: int, code: int) -> None:
        self.messages.append({"queue_id": txn.id, "sender": str(txn.sender) if txn.sender is not None else None,
                              "recipients": len(txn.recipients), "size": size, "code": code})

    def line(self, connection, last_result: str, errors: int) -> bytes:
        import json

        last = self.messages[-1] if self.messages else {}
        tls = connection.tls
        record = {
            "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(connection.started)),
            "client_ip": connection.remote_ip,
            "client_port": connection.remote_port,
            "helo": connection.hello_host or None,
            "tls": getattr(tls, "version", str(tls)) if tls else None,
            "auth_user": connection.auth_user,
            "relay": bool(connection.relay_client),
            "messages": self.messages,
            "sender": last.get("sender"),
            "recipients": last.get("recipients", 0),
            "size": last.get("size", 0),
            "queue_id": last.get("queue_id"),
            "verdicts": self.verdicts,
            "code": int(last_result[:3]) if last_result[:3].isdigit() else None,
            "result": last_result or None,
            "errors": errors,
            "duration": round(time.time() - connection.started, 3),
        }
        return (json.dumps(record, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode()

    def write(self, connection, last_result: str, errors: int) -> None:
        """Append the line in one write(); raises OSError if it cannot."""
        if self.path is None:
            return
        data = self.line(connection, last_result, errors)
        if self.path == "syslog":
            import syslog

            syslog.openlog("qpsmtpd-stdio", syslog.LOG_PID, syslog.LOG_MAIL)
            syslog.syslog(syslog.LOG_INFO, data.decode("utf-8").rstrip("\n"))
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(f"short write to {self.path}: {written} of {len(data)} octets")

    def finish(self, connection, last_result: str, errors: int, log) -> None:
        """Write the line and update the counters; monitoring never breaks a session, so failures are only logged."""
        try:
            self.write(connection, last_result, errors)
        except Exception as exc:
            log(LOGERROR, f"cannot write the session record: {exc}")
        if self.prometheus:
            from .prometheus import update, increments

            try:
                update(self.prometheus, increments(self.verdicts, self.messages, last_result))
            except Exception as exc:
                log(LOGERROR, f"cannot update the Prometheus textfile: {exc}")
