"""sender_permitted_from - check the sender's SPF record (RFC 7208); also listed as `spf`

Arguments: `sender_permitted_from [reject 0..6]` (qpsmtpd's `spf_deny 1|2`
is read as reject 3|4)

  reject  what is refused at MAIL, by SPF result (default: config file
          `spfbehavior`, else 1):
            0, 1  nothing: annotate only (Received-SPF, Authentication-Results)
            2     also 450 for temperror and for fail
            3     550 for fail; 450 for softfail
            4     550 for softfail too; 450 for permerror
            5     550 for neutral too
            6     550 for none and permerror too
          Refusals carry RFC 7372's codes: 5.7.23 (fail, softfail, neutral,
          none), 4.7.24 / 5.7.24 (temperror, permerror), and the domain's
          exp= explanation when it has one.

The identity checked is the MAIL FROM domain; for the null sender it is
postmaster@ the HELO name (RFC 7208 2.4). Relay clients and authenticated
users are not checked. The evaluator is qpsmtpd_stdio/spf.py: every
mechanism and modifier, macros, the 10-lookup and 2-void-lookup limits,
tested against the RFC 7208 test suite. Its DNS queries use the connection's
resolver (config files dns_servers, dns_timeout, dns_budget: see
qpsmtpd_stdio/dns.py); a term's queries go out together.

Results: after the data, `Received-SPF:` on top of the message (RFC 7208
9.1) and an `Authentication-Results:` entry `spf=RESULT
smtp.mailfrom=DOMAIN` (RFC 8601); transaction notes `spfquery` (the result
object), `spf_pass_host` (the domain, on pass) and `dmarc_spf`.

Config files: spfbehavior (the default `reject` level), me (the receiver).

Example config/plugins line:

    sender_permitted_from reject 3
"""

from qpsmtpd_stdio.spf import hook_data_post, hook_disconnect, hook_mail, register  # noqa: F401
