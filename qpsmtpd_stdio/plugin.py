"""The plugin API: the `plugin` object every hook gets, and how a hook's return value is read.

This module and the ones README's "Writing a plugin" names (constants, dns,
netlist, authresults, store, smtpclient...) are all a plugin may use. Loading
and running plugins is pluginhost.py's job.
"""

from .constants import DECLINED, DENY, DENY_DISCONNECT, LOGINFO, LOGWARN, REJECT_TYPES, RETURN_CODE_NAMES
from .digits import number


class Plugin:
    """What a hook gets as its first argument."""

    def __init__(self, name: str, args: list[str], path: str, host) -> None:  # host: pluginhost.PluginHost
        self.name = name
        self.args = args
        self.path = path
        self._host = host
        self.hooks: dict[str, object] = {}
        self._loglevel = _loglevel_argument(args)

    def __repr__(self) -> str:
        return f"<plugin {self.name}>"

    @property
    def connection(self):
        return self._host.connection

    def config(self, name: str) -> list[str]:
        """The items of config file `name` (an empty list if it does not exist)."""
        return self._host.config.get(name)

    def config_file(self, name: str) -> str | None:
        """The path of config file `name` as it is (a binary map such as a .cdb), or None if there is none."""
        return self._host.config.path(name)

    def log(self, level: int, message: str) -> None:
        """Log at `level`, as changed by the plugin's own `loglevel` argument (qpsmtpd's adjust_log_level)."""
        adjust = self._loglevel
        if adjust:
            level = int(adjust) if adjust.isdigit() else max(0, min(7, level + int(adjust)))
        self._host.log(level, message, self.name)

    def client_has_sent(self, wait: float = 0) -> bool:
        """True if the client has sent octets not yet read as commands, waiting up to `wait` seconds.

        For checks such as earlytalker: a client that talks before the greeting
        (or before 354) is not a patient SMTP client.
        """
        return self._host.client_has_sent(wait)

    def config_dir(self) -> str:
        """The config directory this session reads (for files a plugin keeps beside the config)."""
        return self._host.config.directory

    def register_hook(self, hook: str, function) -> None:
        """Register `function(plugin, txn, ...)` for `hook`, beside any hook_* functions."""
        self.hooks[hook.replace("-", "_")] = function

    def options(self, defaults: dict[str, str] | None = None, start: int = 0) -> dict[str, str]:
        """qpsmtpd-style `key value` argument pairs (`reject 0 reject_type temp`) as a dict."""
        opts = dict(defaults or {})
        pairs = self.args[start:]
        for i in range(0, len(pairs) - 1, 2):
            opts[pairs[i].lower()] = pairs[i + 1]
        return opts

    def is_immune(self, txn=None, *, quiet: bool = False) -> bool:
        """True if this client is not to be checked (qpsmtpd's is_immune).

        Immune: a relay client (the `relay` plugin, RELAYCLIENT, or AUTH, which
        makes one; `auth_user` is checked too), a connection noted
        `whitelisthost`, or, given `txn`, a sender noted `whitelistsender`.
        Logs why at LOGINFO ("skip, relay client", "skip, whitelisted") unless
        `quiet`.
        """
        conn = self.connection
        if conn.relay_client or conn.auth_user:
            why = "relay client"
        elif conn.notes.get("whitelisthost") or (txn is not None and txn.notes.get("whitelistsender")):
            why = "whitelisted"
        else:
            return False
        if not quiet:
            self.log(LOGINFO, f"skip, {why}")
        return True

    def store_deferred_reject(self, message, reject_type: str | None = None) -> int:
        """Keep a refusal for the `naughty` plugin to give later (qpsmtpd's): the connection note `naughty`
        gathers the messages (CRLF between them), `naughty_reject_type` the first type given. DECLINED."""
        text = message if isinstance(message, str) else "\r\n".join(message)
        notes = self.connection.notes
        notes["naughty"] = f"{notes['naughty']}\r\n{text}" if notes.get("naughty") else text
        if reject_type:
            notes.setdefault("naughty_reject_type", reject_type)
        return DECLINED

    def is_naughty(self, *, quiet: bool = False) -> bool:
        """True once a plugin has kept a refusal for the `naughty` plugin (qpsmtpd's is_naughty); logs
        "skip, naughty" at LOGINFO unless `quiet`, as the plugins that then skip their check say."""
        if not self.connection.notes.get("naughty"):
            return False
        if not quiet:
            self.log(LOGINFO, "skip, naughty")
        return True

    def too_big(self, txn, max_kb: float) -> bool:
        """True, logged "skip, too large (N)", for a message over `max_kb` kilobytes (a filter's max_size)."""
        if txn.data_size <= max_kb * 1024:
            return False
        self.log(LOGINFO, f"skip, too large ({txn.data_size})")
        return True

    def whole_number(self, text: str | None, default: int, what: str) -> int:
        """A positive whole number argument; `default` when it is missing, or when it is not one (logged)."""
        if text is None:
            return default
        value = number(text)
        if not value:
            self.log(LOGWARN, f"invalid {what} {text!r}; using {default}")
            return default
        return value

    def adjust_karma(self, value: int) -> None:
        """Add `value` (good: positive) to this connection's karma, which the `karma` plugin records (qpsmtpd's)."""
        notes = self.connection.notes
        notes["karma"] = notes.get("karma", 0) + value

    def get_reject(self, message, why: str = "", *, default_type: str = "perm", enhanced: str | None = None):
        """The hook result for a failed check, by the `reject` and `reject_type` arguments (qpsmtpd's get_reject).

        The arguments are read from `plugin.opts` if register() set it, else
        from plugin.options(). `reject`:
          0        log "fail, tolerated: WHY" and return DECLINED;
          naughty  append `message` to the connection note `naughty` (CRLF
                   between entries; a list's lines too), set the note
                   `naughty_reject_type` unless set, log "fail, NAUGHTY: WHY",
                   return DECLINED, for a later `naughty` plugin to refuse;
          else     (1, the default) log "fail: WHY" (only if `why` is given:
                   the refusal shows anyway, in its reply) and return
                   (code, message), the code from `reject_type`:
                   perm/hard DENY, temp/soft DENYSOFT, disconnect
                   DENY_DISCONNECT, temp_disconnect DENYSOFT_DISCONNECT.
        `default_type` stands for a missing or unknown reject_type. `message`
        is a string or a list of reply lines. `enhanced` ("1.1") is put before
        each line of a refusal as an RFC 3463 code, its class (4 or 5) taken
        from the code: "5.1.1 text" or "4.1.1 text"; the naughty note gets
        `message` as it is.
        """
        opts = getattr(self, "opts", None)
        if opts is None:
            opts = self.options()
        how = str(opts.get("reject", "1")).lower()
        detail = f": {why}" if why else ""
        if how == "0":
            self.log(LOGINFO, f"fail, tolerated{detail}")
            return DECLINED
        reject_type = opts.get("reject_type", default_type)
        if how == "naughty":
            # without a reject_type of its own, the naughty plugin's applies (qpsmtpd)
            self.store_deferred_reject(message, reject_type if "reject_type" in opts else None)
            self.log(LOGINFO, f"fail, NAUGHTY{detail}")
            return DECLINED
        if why:
            self.log(LOGINFO, f"fail{detail}")
        code = REJECT_TYPES.get(str(reject_type).lower(), REJECT_TYPES[default_type])
        if enhanced:
            prefix = f"{'5' if code in (DENY, DENY_DISCONNECT) else '4'}.{enhanced} "
            message = prefix + message if isinstance(message, str) else [prefix + line for line in message]
        return code, message


class HookResult:
    __slots__ = ("code", "lines", "plugin", "failed", "parser")

    def __init__(self, code: int, lines: list[str] | None = None, plugin: str = "", failed: bool = False,
                 parser=None) -> None:
        self.code = code
        self.lines = lines or []
        self.plugin = plugin
        self.failed = failed
        self.parser = parser  # a *_parse hook's (OK, function): the plugin's own parser of the command's argument

    def __repr__(self) -> str:
        return f"HookResult({RETURN_CODE_NAMES.get(self.code, self.code)}, {self.lines!r}, {self.plugin!r})"

    @property
    def text(self) -> str | None:
        return "\n".join(self.lines) if self.lines else None


def normalise(value, plugin_name: str) -> HookResult:
    """A hook's return value as a HookResult: CODE, (CODE,), (CODE, "text"), (CODE, ["line", ...]); None is DECLINED."""
    if value is None:
        return HookResult(DECLINED, plugin=plugin_name)
    if isinstance(value, int) and not isinstance(value, bool):
        code, text = value, None
    elif isinstance(value, (tuple, list)) and value and isinstance(value[0], int):
        code = value[0]
        text = value[1] if len(value) == 2 else (list(value[1:]) if len(value) > 2 else None)
    else:
        raise TypeError(f"hook returned {value!r}, not a return code")
    if code not in RETURN_CODE_NAMES:
        raise TypeError(f"hook returned unknown code {code!r}")
    if callable(text):  # a *_parse hook's parser (qpsmtpd's code reference)
        return HookResult(code, [], plugin_name, parser=text)
    if text is None:
        lines = []
    elif isinstance(text, str):
        lines = text.split("\n")
    elif isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        lines = list(text)
    else:
        raise TypeError(f"hook returned message {text!r}, not a string or list of strings")
    return HookResult(code, lines, plugin_name)


def _loglevel_argument(args: list[str]) -> str:
    """`loglevel N|+N|-N` among a plugin's arguments, as qpsmtpd reads it for every plugin ("" if none or bad).

    N (0-7) logs all of the plugin's lines at that level; +N and -N move each line's level.
    """
    for key, value in zip(args, args[1:]):
        if key.lower() == "loglevel":
            ok = len(value) == 1 and value in "01234567" or len(value) == 2 and value[0] in "+-" and value[1] in "01234567"
            return value if ok else ""
    return ""
