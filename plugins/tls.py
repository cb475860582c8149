"""tls - STARTTLS (RFC 3207), and SMTPS (TLS from the first octet, RFC 8314)

Arguments (qpsmtpd's): `tls [CERT [KEY [CA [DHPARAM]]]]`
  CERT  the server certificate, PEM; it may hold the intermediate certificates
        after it. Default: ssl/qpsmtpd-server.crt, else config/ssl/qpsmtpd-server.crt
  KEY   its private key, PEM, unencrypted. Default: qpsmtpd-server.key beside the default CERT
  CA    optional: CA certificates from which OpenSSL completes the chain sent
        to clients. Default: qpsmtpd-ca.crt there, if it exists
  DHPARAM  optional: Diffie-Hellman parameters, PEM, for the DHE suites of
        TLS 1.2 (qpsmtpd 1.00's argument). Default: qpsmtpd-dhparam.pem
        there, if it exists; without, only ECDHE suites are used
  Relative paths are taken from the working directory, as qpsmtpd does: under
  a superserver, give absolute paths.

Config files:
  tls_ciphers    OpenSSL cipher list for TLS 1.2 (qpsmtpd's file). Default:
                 ECDHE/DHE with AES-GCM or ChaCha20 only. TLS 1.3 suites are all
                 strong and not affected.
  tls_protocols  qpsmtpd's syntax: `SSLv23:!SSLv2:!SSLv3` (all but those),
                 `TLSv1_3` (only that one)... Nothing below TLS 1.2 is ever
                 enabled, whatever the file says. Default: TLS 1.2 and 1.3.

STARTTLS is advertised while the certificate is readable and TLS is not on
yet, so list this plugin before any other plugin with an `ehlo` hook (the
first hook to answer OK ends the chain). What was pipelined after STARTTLS is
discarded; after the handshake the client must say EHLO again. A
certificate that cannot be loaded is logged and STARTTLS gets 454.

SMTPS: with this plugin loaded, a connection to local port 465 starts TLS
before the greeting (as qpsmtpd), as does `in.qpsmtpd --smtps` or the config
file `smtps` holding 1; see xinetd.d/smtps. `connection.tls` then holds the
version and cipher (the Received header names them and says ESMTPS), and the
connection note `tls_enabled` is 1.

The ssl module is imported only when TLS starts, not at every connection.

Example config/plugins line (first in the list):
  tls /etc/ssl/certs/mail.example.org.pem /etc/ssl/private/mail.example.org.key

Imports at load: none beyond the core.
"""

import os

from qpsmtpd_stdio import DECLINED, LOGERROR


def register(plugin, cert=None, key=None, ca=None, dhparam=None, *rest):
    default = "ssl" if os.path.isdir("ssl") else "config/ssl"
    plugin.cert = cert or f"{default}/qpsmtpd-server.crt"
    plugin.key = key or f"{default}/qpsmtpd-server.key"
    plugin.ca = ca or f"{default}/qpsmtpd-ca.crt"
    plugin.dhparam = dhparam or f"{default}/qpsmtpd-dhparam.pem"
    if rest:
        plugin.log(LOGERROR, f"ignoring arguments after the fourth: {' '.join(rest)}")
    if not os.access(plugin.cert, os.R_OK):
        plugin.log(LOGERROR, f"cannot read the certificate {plugin.cert}: STARTTLS is not offered")

    def make_context():
        from qpsmtpd_stdio.tls import server_context

        ca_file = plugin.ca if (ca or os.path.exists(plugin.ca)) else None
        dh_file = plugin.dhparam if (dhparam or os.path.exists(plugin.dhparam)) else None
        return server_context(plugin.cert, plugin.key, ca_file,
                              ciphers=_first(plugin.config("tls_ciphers")),
                              protocols=_first(plugin.config("tls_protocols")), dhparam=dh_file)

    # The core calls this when STARTTLS or SMTPS starts (see the session's tls_provider).
    plugin.tls_context = make_context
    plugin.probe = lambda: probe(make_context)


def probe(make_context):
    """For --check: can this user load the certificate and key? (Else every STARTTLS gets 454.)"""
    try:
        make_context()
    except Exception as exc:  # what a session would log, named by the file when the error names one
        where = getattr(exc, "filename", None)
        return [f"cannot start TLS: {exc}" + (f" ({where})" if where else "") + "; STARTTLS would get 454"]
    return []


def hook_ehlo(plugin, txn, host):
    conn = plugin.connection
    if not conn.tls and os.access(plugin.cert, os.R_OK):
        conn.capabilities.append("STARTTLS")
    return DECLINED


def _first(items):
    return items[0] if items else None
