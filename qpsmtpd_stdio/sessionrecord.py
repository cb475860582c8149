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

With config `prometheus_textfile` naming a .prom file (for node_exporter's
textfile collector), each session also adds itself to the counters there:
sessions, sessions by result class (the class of the last reply: 2xx, 4xx,
5xx or none), messages accepted, and rejections (DENY* verdicts) by plugin
and hook. Concurrent sessions take an flock on `<file>.lock`, read the file,
write the new counts to a temporary file in the same directory and rename it
over the old one: the file is always whole, and no increment is lost.
"""

from __future__ import annotations

import os
import time

from .constants import DECLINED, RETURN_CODE_NAMES

_UNRECORDED_HOOKS = frozenset(("deny", "ok", "logging", "config"))  # about other hooks, or not about the client


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


# Prometheus textfile ------------------------------------------------------
_METRICS = (
    ("qpsmtpd_sessions_total", "SMTP sessions that ended."),
    ("qpsmtpd_sessions_by_result_total", "Sessions by the class of their last reply (2xx, 4xx, 5xx, none)."),
    ("qpsmtpd_messages_accepted_total", "Messages accepted (2xx at the end of DATA/BDAT)."),
    ("qpsmtpd_rejections_total", "DENY* verdicts of plugins, by plugin and hook."),
)


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _parse_prom(text: str) -> dict[str, float]:
    """`name{labels} value` lines → {"name{labels}": value}; comments and malformed lines are skipped."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            counts[key] = float(value)
        except ValueError:
            continue
    return counts


def _format_prom(counts: dict[str, float]) -> str:
    out = []
    for name, help_text in _METRICS:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for key in sorted(k for k in counts if k == name or k.startswith(name + "{")):
            value = counts[key]
            out.append(f"{key} {int(value) if value == int(value) else value}")
    return "\n".join(out) + "\n"


def _increments(record: "SessionRecord", last_result: str) -> dict[str, int]:
    code = last_result[:3]
    klass = f"{code[0]}xx" if code.isdigit() else "none"
    inc = {"qpsmtpd_sessions_total": 1, f'qpsmtpd_sessions_by_result_total{{result="{klass}"}}': 1}
    accepted = sum(1 for m in record.messages if 200 <= m["code"] < 300)
    if accepted:
        inc["qpsmtpd_messages_accepted_total"] = accepted
    for v in record.verdicts:
        if v["verdict"].startswith("DENY"):
            key = f'qpsmtpd_rejections_total{{hook="{_label(v["hook"])}",plugin="{_label(v["plugin"])}"}}'
            inc[key] = inc.get(key, 0) + 1
    return inc


def update_prometheus(path: str, increments: dict[str, int]) -> None:
    """Add `increments` to the counters in `path`, under an exclusive flock; raises OSError if it cannot."""
    import fcntl
    import tempfile

    lock = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as f:
                counts = _parse_prom(f.read())
        except FileNotFoundError:
            counts = {}
        counts.setdefault("qpsmtpd_sessions_total", 0)
        counts.setdefault("qpsmtpd_messages_accepted_total", 0)
        for key, n in increments.items():
            counts[key] = counts.get(key, 0) + n
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".prom-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_format_prom(counts))
            os.chmod(tmp, 0o644)  # node_exporter reads it as another user
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    finally:
        os.close(lock)  # releases the flock


def write_prometheus(record: "SessionRecord", last_result: str) -> None:
    if record.prometheus:
        update_prometheus(record.prometheus, _increments(record, last_result))
