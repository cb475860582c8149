"""Return codes, reject types, log levels and default limits: the one place they are defined.

Return codes keep qpsmtpd's numbers (Qpsmtpd::Constants), so a log line or a
note that carries one means the same thing in both programs.
"""

# Hook return codes.
OK = 900
DENY = 901
DENYSOFT = 902
DENY_DISCONNECT = 903
DENYHARD = DENY_DISCONNECT  # qpsmtpd's alias
DENYSOFT_DISCONNECT = 904
DECLINED = 909
DONE = 910

RETURN_CODE_NAMES = {
    OK: "OK",
    DENY: "DENY",
    DENYSOFT: "DENYSOFT",
    DENY_DISCONNECT: "DENY_DISCONNECT",
    DENYSOFT_DISCONNECT: "DENYSOFT_DISCONNECT",
    DECLINED: "DECLINED",
    DONE: "DONE",
}

# A plugin's `reject_type` argument -> the code a refusal returns (qpsmtpd's get_reject_type).
# See Plugin.get_reject in pluginhost.py.
REJECT_TYPES = {
    "perm": DENY,
    "hard": DENY,
    "temp": DENYSOFT,
    "soft": DENYSOFT,
    "disconnect": DENY_DISCONNECT,
    "temp_disconnect": DENYSOFT_DISCONNECT,
}

# Log levels, as qpsmtpd and syslog(3).
LOGEMERG = 0
LOGALERT = 1
LOGCRIT = 2
LOGERROR = 3
LOGWARN = 4
LOGNOTICE = 5
LOGINFO = 6
LOGDEBUG = 7

LOG_LEVEL_NAMES = {
    "LOGEMERG": LOGEMERG,
    "LOGALERT": LOGALERT,
    "LOGCRIT": LOGCRIT,
    "LOGERROR": LOGERROR,
    "LOGWARN": LOGWARN,
    "LOGNOTICE": LOGNOTICE,
    "LOGINFO": LOGINFO,
    "LOGDEBUG": LOGDEBUG,
}

# Default limits. Each one can be changed by the config file of the same name
# (e.g. config/max_recipients); see README "Config files".
DEFAULTS = {
    "timeout": 1200,            # seconds to wait for one read (qpsmtpd)
    "session_timeout": 3600,    # seconds for the whole session
    "pre_data_timeout": 300,    # seconds until a message starts (DATA's 354 or a first BDAT); 0 = no limit
    "min_data_rate": 500,       # octets/s a message must arrive at, over `timeout` of grace (Postfix's default)
    "plugin_timeout": 60,       # seconds one hook may run
    "databytes": 52428800,      # maximum message size in octets; 0 = unlimited
    "max_recipients": 1000,     # RCPTs per transaction (Postfix's default); advertised as LIMITS RCPTMAX
    "max_messages": 100,        # mail transactions per session (LIMITS MAILMAX, RFC 9422); 0 = unlimited
    "max_errors": 20,           # error replies before 421 (Postfix smtpd_hard_error_limit)
    "max_command_length": 512,  # octets incl. CRLF (RFC 5321 4.5.3.1.4)
    "max_line_length": 1000,    # DATA text line octets incl. CRLF (RFC 5321 4.5.3.1.6); 0 = unchecked
    "max_header_size": 1048576, # octets in the header block of a message
    "max_header_lines": 1000,   # header lines (incl. continuation lines)
    "size_threshold": 131072,   # message octets kept in memory before spooling to disk
    "auth_failures_per_ip": 10, # failed AUTHs one address may make within auth_failure_window; 0 = no limit
    "auth_failure_window": 3600,  # seconds over which they are counted
    "loglevel": LOGWARN,        # qpsmtpd's default
}

# Settings where 0 cannot mean "no limit" (every session would fail at once): --check refuses 0, and a
# session warns and uses the default. Every other number in DEFAULTS takes 0 as "no limit" or "off".
NOT_ZERO = frozenset(("timeout", "session_timeout", "max_command_length", "max_header_size", "max_header_lines"))

# Config values with a fixed set of words: the first is the default. A flag's words map to on/off.
FLAG_WORDS = {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False, "false": False, "off": False}
CHOICES = {
    "bare_newline": ("normalize", "reject", "keep"),
    "tls_before_auth": ("1", *FLAG_WORDS),
    "disable_plaintext_auth": ("1", *FLAG_WORDS),
    "smtps": ("0", *FLAG_WORDS),
}

VERSION = "0.1.0"
SOFTWARE = "qpsmtpd-stdio"
