"""`in.qpsmtpd --check [--config DIR]`: load the config and every plugin as a session would, and report each problem.

For an operator about to let the next connection see an edit, or moving a
qpsmtpd site over: run it from an editor's save hook or a deploy script. It
prints one line per plugin line, `FILE:LINE: NAME: works | differs: how |
skipped: why`, one line per problem, `FILE:LINE: message` as compilers do
(so editors can jump to it), one line per qpsmtpd config file present that
is not read here, then a summary. It exits 1 if sessions would refuse mail
(any problem), 0 if they run, with or without warnings.

What it checks:
- every `$include` in every file of the config dir can be read and does not loop;
- numeric settings (`timeout`, `databytes`...) are numbers and `loglevel` is a level;
- each line of `logging` and `plugins` names a plugin that exists (reported at that line);
- each plugin compiles (reported at the plugin's line and column);
- each plugin's module code and `register(plugin, *args)` run without raising
  (reported at the plugin's deepest line in the traceback, else at the config line).

A config in which no plugin has a `queue` hook is a problem: every message
would get 451. No hook but `register` runs and nothing is sent.
"""

import os
import sys

MAX_SCANNED = 1 << 20  # config files larger than this (cdb maps...) are not scanned for $include
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # whose modules bytecode.py runs from their caches


class Report:
    """The lines to print, in the order found; how many are problems and warnings."""

    def __init__(self) -> None:
        self.out: dict[str, None] = {}  # ordered, and a file read by more than one check says a thing once
        self.problems = 0  # sessions would refuse mail
        self.warnings = 0  # sessions run, but not as the config may expect

    def problem(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.out:
            self.out[line] = None
            self.problems += 1

    def warning(self, line: str) -> None:
        if line not in self.out:
            self.out[line] = None
            self.warnings += 1

    def line(self, line: str) -> None:
        self.out[line] = None


def check(config_dir: str | None = None, out=None, user: str | None = None) -> int:
    """Check the config dir; print the report to `out` (stdout); 0 if all is well, 1 if not.

    Run as root, it first becomes the service user (`user`, else config `user`):
    the permissions that matter are that user's.
    """
    from .config import Config, find_config_dir

    out = out or sys.stdout
    directory = find_config_dir(config_dir)
    report = Report()
    user = user or (Config(directory).get_one("user") if os.geteuid() == 0 and os.path.isdir(directory) else None)
    psl = prepare_public_suffixes()  # as root, before becoming the user: the index lives in the package dir
    precompile_package()  # as root too: the package's own bytecode caches (bytecode.py), then the plugins'
    if os.path.isdir(directory):
        precompile(Config(directory))  # likewise the plugins' bytecode caches, in dirs the user cannot write
    if user and os.geteuid() == 0:
        for module in ("connection", "log", "pluginhost", "signals"):  # loaded while root can read them
            __import__(f"{__package__}.{module}")
        from .serviceuser import become, unreadable

        refusal = become(user)
        if refusal:
            out.write(f"{directory}: {refusal}\n1 problem(s) in {directory}\n")
            return 1
        report.line(f"checked as user {user}")
        for path in unreadable():
            report.problem(path, f"user {user} cannot read Python or qpsmtpd-stdio here (a venv made from a Python "
                                 "in /root?); every session would fail before a word is said")
    elif user:
        report.warning(f"{directory}: not root: checked as this user, not as {user!r}")
    if not os.path.isdir(directory):
        report.problem(directory, "no such config directory")
    else:
        config = Config(directory)
        check_includes(config, report)
        check_settings(config, report)
        loaded = check_plugins(config, report)
        stale = uncached_modules()
        if stale:
            report.warning(f"{PACKAGE_DIR}: {len(stale)} module(s) of qpsmtpd-stdio have no current bytecode cache "
                           f"({', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}), so every session compiles "
                           f"those it imports: run `in.qpsmtpd --check` as root (it writes them), or make "
                           f"{os.path.join(PACKAGE_DIR, '__pycache__')} writable for this user")
        check_unread(config, report)
        check_cdb(config, report)
        check_patterns(config, report)
        if not report.problems and "queue" not in loaded:
            report.problem(f"{os.path.join(directory, 'plugins')}", "no plugin has a queue hook; "
                                   "every message will be answered 451")
        report.line(logs_line(config, loaded))
        if psl and any(line.split()[0] == "dmarc" for line in config.get("plugins")):
            path, state = psl
            report.line(f"public suffix index: {path}: {state}" + ("" if state in ("current", "written") else
                        "; each session that needs an organizational domain builds it in memory (about 15 ms)"))
    for line in report.out:
        out.write(line + "\n")
    if report.problems:
        out.write(f"{report.problems} problem(s) in {directory}\n")
        return 1
    out.write(f"ok: {directory}" + (f", with {report.warnings} warning(s)" if report.warnings else "") + "\n")
    return 0


def precompile(config) -> None:
    """Write the bytecode cache of every plugin the config names that has none current (sessions then never compile)."""
    from .connection import identify
    from .log import Log
    from . import pluginhost

    host = pluginhost.PluginHost(config, Log(), identify({"TCPREMOTEIP": "127.0.0.1"}))
    for item in config.get("logging") + config.get("plugins"):
        try:
            path = host.resolve(item.split()[0], [])[0]
            if path:
                pluginhost.load_code(path, write=True)
        except pluginhost.PluginLoadError:
            pass  # reported when the plugins are loaded


def uncached_modules() -> list[str]:
    """The package's modules whose standard bytecode cache is missing or stale (bytecode.py then leaves them to
    the import system, which compiles them in every session that imports them)."""
    from .bytecode import cached_code

    return sorted(name for name in os.listdir(PACKAGE_DIR)
                  if name.endswith(".py") and cached_code(os.path.join(PACKAGE_DIR, name)) is None)


def precompile_package() -> None:
    """Write the standard bytecode cache of each module of the package that has none current."""
    import py_compile

    for name in uncached_modules():
        try:
            py_compile.compile(os.path.join(PACKAGE_DIR, name), doraise=True)
        except (OSError, py_compile.PyCompileError):
            pass  # reported by the check that follows


def prepare_public_suffixes() -> tuple[str, str] | None:
    """Write the public suffix index (publicsuffix.py) for the installed list, if there is a list."""
    from .publicsuffix import prepare

    return prepare()


def numbered(config, name: str, report: Report) -> list[tuple[str, int, str]]:
    """The items of config file `name` as (file, line number, item), problems reported."""
    path = config.path(name)
    return config.walk(path, on_problem=report.problem) if path else []


def check_includes(config, report: Report) -> None:
    for entry in sorted(os.listdir(config.directory)):
        path = os.path.join(config.directory, entry)
        if entry.startswith(".") or not os.path.isfile(path) or os.path.getsize(path) > MAX_SCANNED:
            continue
        numbered(config, entry, report)


def check_settings(config, report: Report) -> None:
    from .constants import CHOICES, DEFAULTS, LOG_LEVEL_NAMES, NOT_ZERO
    from .digits import number

    for name, choices in CHOICES.items():
        for path, lineno, item in numbered(config, name, report)[:1]:
            if item.split()[0].lower() not in choices:
                report.problem(f"{path}:{lineno}", f"{name}: {item.split()[0]!r} is not one of {', '.join(dict.fromkeys(choices))}")
    for name in DEFAULTS:
        for path, lineno, item in numbered(config, name, report)[:1]:
            word = item.split()[0]
            if name == "loglevel":
                if number(word) is None and word.upper() not in LOG_LEVEL_NAMES:
                    report.problem(f"{path}:{lineno}", f"loglevel: {word!r} is not 0-7 or a name like LOGINFO")
            elif number(word) is None:
                report.problem(f"{path}:{lineno}", f"{name}: not a number: {word!r}")
            elif number(word) == 0 and name in NOT_ZERO:
                report.problem(f"{path}:{lineno}", f"{name}: 0 would fail every session; it is not \"no limit\" here")


def check_plugins(config, report: Report) -> set[str]:
    """Load every plugin of `logging` and `plugins`; the hooks they register."""
    from .connection import identify
    from .log import Log
    from . import pluginhost
    from .signals import install

    restore = install(terminate=False)
    host = pluginhost.PluginHost(config, Log(), identify({"TCPREMOTEIP": "127.0.0.1"}),
                                 timeout=config.get_int("plugin_timeout"))
    try:
        for path, lineno, item in numbered(config, "logging", report) + numbered(config, "plugins", report):
            words = item.split()
            where = f"{path}:{lineno}"
            try:
                plugin_path, args, note = host.resolve(words[0], words[1:])
            except pluginhost.PluginLoadError as exc:
                report.problem(where, str(exc))
                continue
            if plugin_path is None:
                kind, _, why = note.partition(": ")
                report.warning(f"{where}: {words[0]}: skipped" + (", done by the core or the superserver"
                                                                  if kind == "core" else "") + f": {why}")
                continue
            try:
                host.load(words[0], words[1:])
            except pluginhost.PluginLoadError as exc:
                report.problem(*locate(exc, plugin_path, where))
                continue
            if pluginhost.load_code(plugin_path, cached_only=True) is None:
                report.warning(f"{where}: {words[0]}: {plugin_path} has no current bytecode cache, so every session "
                               "compiles it: run `in.qpsmtpd --check` as root (it writes the cache), or make "
                               f"{os.path.join(os.path.dirname(plugin_path), '__pycache__')} writable for this user")
            probe = getattr(host.plugins[-1], "probe", None) if host.plugins else None
            problems = probe() if callable(probe) else []  # what the plugin will open at run time
            for problem in problems:
                report.problem(where, f"{words[0]}: {problem}")
            if not problems:
                report.line(f"{where}: {words[0]}: {describe(words[0], note)}")
    finally:
        restore()
    return {hook for plugin in host.plugins for hook in plugin.hooks}


def describe(name: str, note: str) -> str:
    """works (as another plugin, for a qpsmtpd alias), or differs: how."""
    from .compat import DIFFERENCES, split_instance

    runs = note.split("`")[1].split()[0] if note else split_instance(name)[0]
    if runs in DIFFERENCES:
        return f"differs: {DIFFERENCES[runs]}" + (f" ({note})" if note else "")
    return f"works, {note}" if note else "works"


def check_unread(config, report: Report) -> None:
    """qpsmtpd config files in the directory that nothing here reads."""
    from .compat import UNREAD_FILES

    for name, why in UNREAD_FILES.items():
        path = os.path.join(config.directory, name)
        if os.path.exists(path):
            report.warning(f"{path}: not read by qpsmtpd-stdio: {why}")


def logs_line(config, loaded: set[str]) -> str:
    """Where the log lines of a session will go."""
    from .log import destination

    if "logging" in loaded:
        return f"logs: to the plugins in {os.path.join(config.directory, 'logging')}"
    return (f"logs: under inetd, xinetd or systemd (fd 2 is the client's socket) to {destination(True)}; "
            "otherwise to standard error")


def check_patterns(config, report: Report) -> None:
    """Every regular expression of the list files compiles (a bad one would be skipped, every time, quietly)."""
    from .patterns import ADDRESS_PATTERN_CHARS, NAME_PATTERN_CHARS

    lists = {"badmailfrom": ADDRESS_PATTERN_CHARS, "badrcptto": ADDRESS_PATTERN_CHARS, "badhelo": NAME_PATTERN_CHARS,
             "rcpt_regexp": None}
    for name, chars in lists.items():
        for path, lineno, item in numbered(config, name, report):
            entry = item.split()[0]
            if chars is None:  # rcpt_regexp: /REGEX/ entries
                pattern = entry[1:-1] if len(entry) > 1 and entry[0] == entry[-1] == "/" else None
            else:
                pattern = entry.lstrip("!") if chars.intersection(entry) else None
            if pattern is None:
                continue
            import re

            try:
                re.compile(pattern)
            except re.error as exc:
                report.problem(f"{path}:{lineno}", f"{name}: bad pattern {entry!r}: {exc}; the line would be skipped")


def check_cdb(config, report: Report) -> None:
    """qmail's morercpthosts.cdb must be readable, or rcpt_ok defers its domains."""
    from .localdomains import in_cdb

    path = config.path("morercpthosts.cdb")
    said: list[str] = []
    reader = type("Reader", (), {"log": staticmethod(lambda level, message: said.append(message))})
    if path and in_cdb(reader, path, "example.org") is None:  # what rcpt_ok would meet
        report.problem(path, f"{said[0]}; rcpt_ok answers 450 for domains only listed there")


def locate(exc: Exception, plugin_path: str, where: str) -> tuple[str, str]:
    """(FILE:LINE, message) for a plugin that failed to load."""
    cause = exc.__cause__
    if cause is None:
        # Not compiled (the cause is dropped on purpose there): compile again for the position.
        try:
            with open(plugin_path, "rb") as fh:
                compile(fh.read(), plugin_path, "exec", dont_inherit=True)
        except SyntaxError as error:
            column = f":{error.offset}" if error.offset else ""
            return f"{plugin_path}:{error.lineno}{column}", f"SyntaxError: {error.msg}"
        except (OSError, ValueError) as error:
            return plugin_path, str(error)
        return where, str(exc)
    line = None
    tb = cause.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == plugin_path:
            line = tb.tb_lineno
        tb = tb.tb_next
    message = f"{type(cause).__name__}: {cause}"
    if line is None:
        return where, f"{os.path.basename(plugin_path)}: {message}"
    return f"{plugin_path}:{line}", f"{message} (loaded from {where})"
