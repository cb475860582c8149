"""What becomes of each plugin name qpsmtpd 0.94 ships, when a config line names one we do not ship as such.

One table, POLICY, read only when a `plugins` line names no `NAME.py`
(so a config of our own names never imports this module). Each entry is
(kind, detail):

  alias     runs another plugin: detail is "NAME [ARG...]" (args put before the line's own)
  core      the core or the superserver does it: loads as nothing, with a warning naming where
  skipped   harmless without it (obsolete, cosmetic, or only stricter): loads as nothing, with a warning
  refused   without it mail could pass unchecked: every connection gets 421 until the line changes;
            detail names what to use instead

docs/migrating.md shows the table (a test keeps the two the same). A Perl
file of a name in no entry is a site's own plugin: `refused`, with the
pointer to docs/porting.md.
"""

ALIAS, CORE, SKIPPED, REFUSED = "alias", "core", "skipped", "refused"

POLICY: dict[str, tuple[str, str]] = {
    # Debian's check_* wrappers (isa_plugin), and async/* twins of plugins we ship
    "check_badmailfrom": (ALIAS, "badmailfrom"),
    "check_badrcptto": (ALIAS, "badrcptto"),
    "check_earlytalker": (ALIAS, "earlytalker"),
    "check_loop": (ALIAS, "loop"),
    "check_relay": (ALIAS, "relay"),
    "check_spamhelo": (ALIAS, "helo policy lenient"),
    "spf": (ALIAS, "sender_permitted_from"),
    "async/dnsbl": (ALIAS, "dnsbl"),
    "async/earlytalker": (ALIAS, "earlytalker"),
    "async/resolvable_fromhost": (ALIAS, "resolvable_fromhost"),
    "async/rhsbl": (ALIAS, "rhsbl"),
    "async/queue/smtp-forward": (ALIAS, "queue/smtp-forward"),
    "async/uribl": (ALIAS, "uribl"),
    # done by the core or by the superserver
    "parse_addr_withhelo": (CORE, "the core refuses ESMTP parameters after HELO"),
    "stunnel": (CORE, "a proxy's PROXY header is read by the core: list the proxy in `proxy_clients`"),
    "connection_time": (CORE, "the session's duration is in its closing log line"),
    "logging/connection_id": (CORE, "every log line starts with the process ID: one process, one connection"),
    "logging/transaction_id": (CORE, "every log line starts with the process ID; the queue ID is in Received"),
    # harmless without them
    "domainkeys": (SKIPPED, "DomainKeys (RFC 4870) is historic; `dkim` verifies DKIM"),
    "ident/geoip": (SKIPPED, "no GeoIP notes or headers"),
    "ident/p0f": (SKIPPED, "no p0f fingerprint notes"),
    "logging/apache": (SKIPPED, "logs go to the default log (stderr, or a logging plugin listed in `logging`)"),
    "virus/klez_filter": (SKIPPED, "Klez (2002) is long gone; `virus/clamdscan` finds it anyway"),
    "tls_cert": (SKIPPED, "a certificate-making script, not a plugin: see docs/submission.md"),
    "karma_tool": (SKIPPED, "a command-line tool, not a plugin"),
    "dspam": (SKIPPED, "DSPAM is unmaintained and gone from Debian, and qpsmtpd's plugin passes every message "
                       "when its program is missing: use `spamassassin`"),
    "dns_whitelist_soft": (SKIPPED, "not shipped: DNS-whitelisted hosts get every check"),
    "async/dns_whitelist_soft": (SKIPPED, "not shipped: DNS-whitelisted hosts get every check"),
    # without them mail could pass unchecked, or be taken and lost
    "badmailfromto": (REFUSED, "not shipped: use `badmailfrom` and `badrcptto`"),
    "qmail_deliverable": (REFUSED, "qmail-specific (qmail-deliverabled) and not shipped"),
    "http_config": (REFUSED, "config comes only from the config directory"),
    "virus/aveclient": (REFUSED, "use `virus/clamdscan`"),
    "virus/bitdefender": (REFUSED, "use `virus/clamdscan`"),
    "virus/clamav": (REFUSED, "use `virus/clamdscan` (clamd, not a clamscan per message)"),
    "virus/hbedv": (REFUSED, "use `virus/clamdscan`"),
    "virus/kavscanner": (REFUSED, "use `virus/clamdscan`"),
    "virus/sophie": (REFUSED, "use `virus/clamdscan`"),
    "virus/uvscan": (REFUSED, "use `virus/clamdscan`"),
    "auth/auth_imap": (REFUSED, "not shipped"),
    "auth/auth_vpopmail": (REFUSED, "use `auth/auth_checkpassword checkpw VPOPMAIL/bin/vchkpw true /bin/true`"),
    "auth/auth_vpopmail_sql": (REFUSED, "use `auth/auth_checkpassword checkpw VPOPMAIL/bin/vchkpw true /bin/true`"),
    "auth/auth_vpopmaild": (REFUSED, "use `auth/auth_checkpassword checkpw VPOPMAIL/bin/vchkpw true /bin/true`"),
    "auth/auth_cvm_unix_local": (REFUSED, "CVM is not supported: use `auth/auth_checkpassword` with a "
                                          "checkpassword program"),
}

# Where they differ from qpsmtpd, for plugins we ship under qpsmtpd's name (shown by --check and docs/migrating.md).
DIFFERENCES: dict[str, str] = {
    "logging/adaptive": "holds each line until the outcome is known, then writes up to `reject` or `accept` "
                        "(0.94 wrote the `reject` lines at once either way)",
    "auth/auth_ldap_bind": "it authenticates (0.94's tested its search with `=` for `==` and never did); a "
                           "directory that is down gives 454, not 535; needs `pip install 'qpsmtpd-stdio[ldap]'`",
    "bogus_bounce": "a bounce to several recipients is caught, as documented (0.94 counts them wrongly and never "
                    "does), and `deny`/`denysoft` refuse (0.94 only logs unless `reject 1` is given too)",
    "greylisting": "keeps its data in the store (SQLite or Redis): bring qpsmtpd's DBM file along once with "
                   "`in.qpsmtpd --import-qpsmtpd-db greylisting FILE`",
    "karma": "keeps its data in the store (SQLite or Redis): bring qpsmtpd's DBM file along once with "
             "`in.qpsmtpd --import-qpsmtpd-db karma FILE`",
    "tls": "TLS 1.2 and later only, whatever `tls_protocols` says",
    "milter": "protocol version 6 with every reply and change honoured, `unix:PATH` too; qpsmtpd's used Net::Milter "
              "(version 2); a milter's reply code at end of data keeps its text and enhanced code, with 554 or 451",
    "hosts_allow": "the `hosts_allow` file works in every mode, with IPv6 too; the per-address count only under "
                   "qpsmtpd-forkserver and qpsmtpd-prefork (under a superserver, its own per-source limit)",
}


# qpsmtpd config files nothing here reads, present in a config dir being moved over: what to do instead.
UNREAD_FILES: dict[str, str] = {
    "spool_perms": "spool files are always private to the server's user (0600, in a 0700 dir)",
    "IP": "run.tcpserver's setting: the superserver chooses the address",
    "badmailfromto": "the badmailfromto plugin is not shipped",
    "whitelist_zones": "dns_whitelist_soft is not shipped",
    "greylist_exclude_files": "greylisting does not read it",
    "p0f_blocked_operating_systems": "ident/p0f is not shipped",
    "hbedv_deny": "virus/hbedv is not shipped",
    "kav_deny": "virus/kavscanner is not shipped",
    "vpopmail_mysql_dsn": "auth/auth_vpopmail_sql is not shipped",
    "vpopmail_mysql_user": "auth/auth_vpopmail_sql is not shipped",
    "vpopmail_mysql_pass": "auth/auth_vpopmail_sql is not shipped",
}


# Every plugin Debian's qpsmtpd 0.94 ships (/usr/share/qpsmtpd/plugins): the names docs/migrating.md covers.
QPSMTPD_PLUGINS = tuple("""
async/dns_whitelist_soft async/dnsbl async/earlytalker async/queue/smtp-forward async/resolvable_fromhost
async/rhsbl async/uribl auth/auth_checkpassword auth/auth_cvm_unix_local auth/auth_flat_file auth/auth_ldap_bind
auth/auth_vpopmail auth/auth_vpopmail_sql auth/auth_vpopmaild auth/authdeny badmailfrom badmailfromto badrcptto
bogus_bounce check_badmailfrom check_badrcptto check_earlytalker check_loop check_relay check_spamhelo
connection_time content_log count_unrecognized_commands dkim dmarc dns_whitelist_soft dnsbl domainkeys
dont_require_anglebrackets dspam earlytalker fcrdns greylisting headers helo help hosts_allow http_config
ident/geoip ident/p0f karma karma_tool loadcheck logging/adaptive logging/apache logging/connection_id
logging/devnull logging/file logging/syslog logging/transaction_id logging/warn loop milter naughty noop_counter
parse_addr_withhelo qmail_deliverable queue/exim-bsmtp queue/maildir queue/postfix-queue queue/qmail-queue
queue/smtp-forward quit_fortune random_error rcpt_map rcpt_ok rcpt_regexp relay resolvable_fromhost rhsbl
sender_permitted_from spamassassin stunnel tls tls_cert uribl virus/aveclient virus/bitdefender virus/clamav
virus/clamdscan virus/hbedv virus/kavscanner virus/klez_filter virus/sophie virus/uvscan whitelist
""".split())


def split_instance(name: str) -> tuple[str, str]:
    """qpsmtpd's `NAME:N` (a second instance of a plugin): (NAME, ":N"), or (name, "")."""
    base, colon, instance = name.rpartition(":")
    if colon and base and instance.isascii() and instance.isdigit():
        return base, colon + instance
    return name, ""


def policy(name: str) -> tuple[str, str] | None:
    return POLICY.get(split_instance(name)[0])


def table(shipped) -> str:
    """docs/migrating.md's table: what each qpsmtpd plugin name does here. `shipped(name)`: do we ship NAME.py?"""
    said = {ALIAS: "works, as `{}`", CORE: "skipped, done by the core or the superserver: {}",
            SKIPPED: "skipped: {}", REFUSED: "**refused** (421 until changed): {}"}
    rows = ["| qpsmtpd plugin | here |", "|---|---|"]
    for name in QPSMTPD_PLUGINS:
        if shipped(name):
            text = f"differs: {DIFFERENCES[name]}" if name in DIFFERENCES else "works"
        else:
            kind, detail = POLICY[name]
            text = said[kind].format(detail)
        rows.append(f"| `{name}` | {text.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import os

    plugins = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
    if not os.path.isdir(plugins):  # a checkout: the plugins are beside the package
        plugins = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins")
    print(table(lambda name: os.path.isfile(os.path.join(plugins, name + ".py"))), end="")
