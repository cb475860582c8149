"""The Received: trace field (RFC 5321 4.4) that the server prepends to every message."""

import time

from .constants import SOFTWARE, VERSION


def protocol_name(connection, txn) -> str:
    """SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP... (RFC 3848, RFC 6531)."""
    if not connection.esmtp:
        return "SMTP"
    base = "UTF8SMTP" if txn.smtputf8 else "ESMTP"
    suffix = ("S" if connection.tls else "") + ("A" if connection.auth_user else "")
    return base + suffix


def rfc5322_date(when: float | None = None) -> str:
    """'Tue, 24 Nov 2026 22:28:41 +0000' in local time; English names whatever the locale."""
    t = time.localtime(when)
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return (
        f"{days[t.tm_wday]}, {t.tm_mday:02d} {months[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{offset // 60:02d}{offset % 60:02d}"
    )


_SPECIALS = frozenset('()\\";')  # would open a comment or a quoted string, or end the tokens


def safe(text: str, limit: int = 255) -> str:
    """Client-supplied text as one token of the field: printable ASCII, no space or specials, bounded."""
    out = "".join(c if "!" <= c <= "~" and c not in _SPECIALS else "?" for c in text[:limit])
    return out or "unknown"


def received_lines(me: str, connection, txn) -> list[str]:
    """The value of the Received field, as lines to be folded."""
    helo = safe(connection.hello_host) if connection.hello_host else "unknown"
    host = safe(connection.remote_host) if connection.remote_host else "unknown"
    if connection.remote_ip:
        lines = [f"from {helo} ({host} [{safe(connection.remote_ip, 64)}])"]
    else:
        lines = [f"from {helo}"]  # not a TCP connection (a pipe): nothing to say
    by = f"by {safe(me)} ({SOFTWARE}/{VERSION}) with {protocol_name(connection, txn)}"
    tls = connection.tls
    if tls:
        # As Postfix: (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))
        version, cipher, bits = getattr(tls, "version", ""), getattr(tls, "cipher", ""), getattr(tls, "bits", 0)
        if version and cipher:
            lines.append(by)  # a line of its own: the field stays readable
            by = f"(using {safe(version, 16)} with cipher {safe(cipher, 64)} ({int(bits)} bits))"
    lines.append(f"{by} id {txn.id}")
    if len(txn.recipients) == 1:
        lines.append(f"for <{safe(txn.recipients[0].address, 300)}>; {rfc5322_date()}")
    else:
        lines[-1] += ";"
        lines.append(rfc5322_date())
    return lines
