"""Counters for Prometheus in a textfile (node_exporter's textfile collector), config `prometheus_textfile`.

Each session adds itself to the counters at its end: sessions, sessions by
result class (the class of the last reply: 2xx, 4xx, 5xx or none), messages
accepted, and rejections (DENY* verdicts) by plugin and hook. Concurrent
sessions take an flock on `<file>.lock`, read the file, write the new counts
to a temporary file in the same directory and rename it over the old one: the
file is always whole, and no increment is lost.
"""

import os

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


def increments(verdicts: list[dict], messages: list[dict], last_result: str) -> dict[str, int]:
    """What one session adds: itself, its result class, its accepted messages, its DENY* verdicts."""
    code = last_result[:3]
    klass = f"{code[0]}xx" if code.isdigit() else "none"
    inc = {"qpsmtpd_sessions_total": 1, f'qpsmtpd_sessions_by_result_total{{result="{klass}"}}': 1}
    accepted = sum(1 for m in messages if 200 <= m["code"] < 300)
    if accepted:
        inc["qpsmtpd_messages_accepted_total"] = accepted
    for v in verdicts:
        if v["verdict"].startswith("DENY"):
            key = f'qpsmtpd_rejections_total{{hook="{_label(v["hook"])}",plugin="{_label(v["plugin"])}"}}'
            inc[key] = inc.get(key, 0) + 1
    return inc


def update(path: str, added: dict[str, int]) -> None:
    """Add `added` to the counters in `path`, under an exclusive flock; raises OSError if it cannot."""
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
        for key, n in added.items():
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
