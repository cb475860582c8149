"""The plugin host: finds, compiles and runs plugins, and keeps their failures contained.

What a plugin sees (its `plugin` argument, and how hook results are read) is
in plugin.py. A plugin is a Python file named in config/plugins (`queue/maildir` is
`queue/maildir.py`), found in the dirs of config/plugin_dirs, then in the
shipped plugins/. It is read afresh on every start: hooks are its module-level
functions `hook_<name>(plugin, txn, ...)`, and `register(plugin, *args)` runs
once after loading. See README "Writing a plugin" for the API.

Compiled code is cached in `__pycache__/NAME.qpsmtpd.pyc` beside each plugin,
keyed by a hash of the source (not its mtime), so an edit is always seen by the
next connection, even two saves in the same second that keep the file's size.
Where that cache cannot be written (installed plugins, a service user), the
standard `__pycache__/NAME.cpython-3X.pyc` that pip or the package wrote is
used while it is current (PEP 552: hash, or mtime and size).

A plugin that raises, returns nonsense or overruns `plugin_timeout` is logged
with its traceback and answered as DENYSOFT ("try again later"): a broken
plugin fails closed.
"""

import _signal
import marshal
import os
import sys

from .bytecode import cached_code
from .constants import (
    DECLINED,
    DENY,
    DENY_DISCONNECT,
    DENYSOFT,
    DENYSOFT_DISCONNECT,
    DONE,
    LOGDEBUG,
    LOGERROR,
    LOGWARN,
    OK,
    RETURN_CODE_NAMES,
)
from .plugin import HookResult, Plugin, normalise

TYPE_CHECKING = False  # collections.abc costs ~2 ms of imports per connection
if TYPE_CHECKING:
    from collections.abc import Callable

SHIPPED_DIRS = [
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"),  # installed wheel
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins"),  # checkout
]
FAILURE_TEXT = "Internal error - try again later"
# Hooks whose result is ignored: a failure there is logged and nothing else.
RESULT_IGNORED = frozenset(("reset_transaction", "disconnect", "post_connection", "deny", "ok", "logging", "queue_post"))


class PluginLoadError(Exception):
    """A plugin could not be found, compiled or registered."""


class HookTimeout(BaseException):
    """A hook ran past plugin_timeout. A BaseException, so `except Exception` in a plugin cannot swallow it."""


in_hook = False  # read by the SIGALRM handler: a hook overran, or the process is told to stop


class PluginHost:
    """The plugins of one session, in config/plugins order, and the running of their hooks."""

    def __init__(self, config, log, connection=None, timeout: float = 60) -> None:
        self.config = config
        self.log = log
        self.connection = connection
        self.timeout = timeout
        self.plugins: list[Plugin] = []
        self._hooks: dict[str, list[tuple[Plugin, object]]] = {}
        self._in_config_hook = False
        self.input_probe = None  # set by the session: wait -> has the client sent anything?
        self._depth = 0  # nesting of hook calls (logging, config): only the outermost arms the timer
        # Called as observer(hook, result) for each result of run(): monitoring (sessionrecord.py) watches here.
        self.observers: list[Callable[[str, HookResult], None]] = []

    def client_has_sent(self, wait: float) -> bool:
        return self.input_probe(wait) if self.input_probe else False

    # Loading -----------------------------------------------------------
    def plugin_dirs(self) -> list[str]:
        dirs = []
        for d in self.config.get("plugin_dirs"):
            dirs.append(d if os.path.isabs(d) else os.path.join(self.config.directory, d))
        return dirs + SHIPPED_DIRS

    def _file(self, name: str, suffix: str = ".py") -> str | None:
        for d in self.plugin_dirs():
            path = os.path.join(d, name + suffix)
            if os.path.isfile(path):
                return path
        return None

    def resolve(self, name: str, args: list[str]) -> tuple[str | None, list[str], str]:
        """What a `plugins` line runs: (file, args, note); note is "" or "as `NAME ARGS`" for an alias.

        For a qpsmtpd name whose work is done elsewhere: (None, args, why).
        `NAME:N` is a second instance of NAME. A name we do not ship is looked
        up in compat.py's table, which may alias it, skip it, or refuse it.
        Raises PluginLoadError for a refused or unknown name.
        """
        if name.startswith("/") or ".." in name.split("/"):
            raise PluginLoadError(f"plugin {name}: bad name")
        base = name
        if ":" in name:
            from .compat import split_instance

            base = split_instance(name)[0]
        path = self._file(base)
        if path:
            return path, args, ""
        from .compat import ALIAS, REFUSED, policy  # only for names we do not ship as they are

        found = policy(base)
        if found and found[0] == ALIAS:
            target, *extra = found[1].split()
            path = self._file(target)
            if path:
                return path, extra + args, f"as `{found[1]}`"
        elif found and found[0] == REFUSED:
            raise PluginLoadError(f"plugin {name}: refused, as mail could pass unchecked without it: {found[1]}")
        elif found:
            return None, args, f"{found[0]}: {found[1]}"
        perl = self._file(base, "")
        if perl:
            raise PluginLoadError(f"plugin {name}: {perl} is a qpsmtpd Perl plugin; qpsmtpd-stdio runs Python "
                                  "plugins (see docs/porting.md)")
        raise PluginLoadError(f"plugin {name}: not found in {', '.join(self.plugin_dirs())}")

    def load_all(self, lines: list[str]) -> None:
        """Load every plugin line (`name arg arg...`) in order. Raises PluginLoadError on the first failure."""
        for line in lines:
            words = line.split()
            self.load(words[0], words[1:])

    def load(self, name: str, args: list[str]) -> Plugin | None:
        """Load and register one plugin; None for a qpsmtpd name whose work is done elsewhere (logged)."""
        path, args, skipped = self.resolve(name, args)
        if path is None:
            self.log(LOGWARN, f"plugin {name} not loaded ({skipped})")
            return None
        code = load_code(path)
        namespace = {"__name__": "qpsmtpd_plugin." + name.replace("/", "."), "__file__": path, "__builtins__": __builtins__}
        plugin = Plugin(name, args, path, self)
        try:
            self.log.hook = "register"
            self._arm()
            exec(code, namespace)
            for key, value in namespace.items():
                if key.startswith("hook_") and callable(value):
                    plugin.hooks[key[5:]] = value
            register = namespace.get("register")
            if callable(register):
                register(plugin, *args)
        except HookTimeout:
            raise PluginLoadError(f"plugin {name}: loading took longer than {self.timeout}s") from None
        except Exception as exc:
            raise PluginLoadError(f"plugin {name}: {describe_exception(exc)}") from exc
        finally:
            self._disarm()
            self.log.hook = ""
        self.plugins.append(plugin)
        for hook, function in plugin.hooks.items():
            self._hooks.setdefault(hook, []).append((plugin, function))
        return plugin

    # Running -----------------------------------------------------------
    def has(self, hook: str) -> bool:
        return hook in self._hooks

    def parse(self, hook: str, txn, arg: str):
        """Run a `*_parse` hook (qpsmtpd's): a plugin answers (OK, parser), and parser(command, argument)
        returns (OK, value, more...) or (code, message). None if no plugin gave a parser; (value, the rest
        joined by spaces); or the Reply to send: 501 with the parser's message, 451 if the parser failed."""
        from .protocol import Reply

        result = self.run(hook, txn, arg)
        if result.code != OK or result.parser is None:
            return None
        try:
            code, value, *rest = result.parser(hook[:-6], arg)
        except Exception as exc:  # a broken parser fails closed, as a broken hook does
            self.log(LOGERROR, f"{hook} parser failed: {format_traceback(exc)}", result.plugin)
            return Reply(451, "Internal error - try again later", "4.3.0")
        if code != OK:
            return Reply(501, str(value or "Syntax error in command"), "5.5.2")
        return str(value), " ".join(str(part) for part in rest)

    def declared(self, attribute: str) -> frozenset:
        """What plugins declared in `plugin.<attribute>`: e.g. mail_parameters, the ESMTP parameters they take."""
        return frozenset(item for plugin in self.plugins for item in getattr(plugin, attribute, ()))

    def run(self, hook: str, txn, *args) -> HookResult:
        """Run `hook` in plugin order; the first result other than DECLINED wins."""
        for plugin, function in self._hooks.get(hook, ()):
            result = self._call(hook, plugin, function, txn, args)
            if result.code != DECLINED:
                if hook not in RESULT_IGNORED:
                    follow = "deny" if result.code in (DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT) else "ok"
                    if follow in self._hooks and result.code != DONE:
                        self.run(follow, txn, hook, result.code, result.text, plugin.name)
                break
        else:
            result = HookResult(DECLINED)
        for observer in self.observers:
            observer(hook, result)
        return result

    def config_answer(self, name: str) -> list[str] | None:
        """The `config` hook: a plugin may supply a config file's items ((OK, [items]))."""
        if self._in_config_hook:
            return None
        self._in_config_hook = True
        try:
            result = self.run("config", None, name)
        finally:
            self._in_config_hook = False
        return result.lines if result.code == OK else None

    def run_all(self, hook: str, txn, *args) -> None:
        """Run every plugin's `hook`, whatever each returns (reset_transaction, disconnect...)."""
        for plugin, function in self._hooks.get(hook, ()):
            self._call(hook, plugin, function, txn, args)

    def _call(self, hook: str, plugin: Plugin, function, txn, args) -> HookResult:
        previous = self.log.hook
        self.log.hook = hook
        limit = self.time_limit(txn)
        try:
            self._arm(limit)
            try:
                value = function(plugin, txn, *args)
            finally:
                self._disarm()
            result = normalise(value, plugin.name)
        except HookTimeout:
            self.log(LOGERROR, f"hook {hook} ran longer than its time limit ({limit:.0f}s, plugin_timeout); failing closed",
                     plugin.name)
            return HookResult(DENYSOFT, [FAILURE_TEXT], plugin.name, failed=True)
        except Exception as exc:
            self.log(LOGERROR, f"FATAL PLUGIN ERROR in hook {hook}: {format_traceback(exc)}", plugin.name)
            return HookResult(DENYSOFT, [FAILURE_TEXT], plugin.name, failed=True)
        else:
            if result.code != DECLINED and hook != "logging":  # a line about each log line would loop to stderr
                self.log(LOGDEBUG, f"returned {RETURN_CODE_NAMES[result.code]} {result.text or ''}".rstrip(), plugin.name)
        finally:
            self.log.hook = previous
        return result

    def time_limit(self, txn) -> float:
        """plugin_timeout, plus a second per MiB of message for the hooks that read it (data_post, queue...).

        A fixed limit would fail a large message with 451 on every retry.
        """
        size = getattr(txn, "data_size", 0) or 0
        return self.timeout + size / (1 << 20) if self.timeout > 0 else 0

    def _arm(self, limit: float | None = None) -> None:
        global in_hook
        self._depth += 1
        if self._depth > 1:
            return  # a hook run inside another: the outer timer keeps running
        in_hook = True
        limit = self.timeout if limit is None else limit
        if limit > 0:
            # Re-fires every second, in case a plugin swallows the first one.
            _signal.setitimer(_signal.ITIMER_REAL, limit, 1.0)

    def _disarm(self) -> None:
        global in_hook
        self._depth -= 1
        if self._depth > 0:
            return
        if self.timeout > 0:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        in_hook = False


def describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{exc.msg} at {exc.filename}:{exc.lineno}"
    return format_traceback(exc)


def format_traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


# Compiled-code cache ---------------------------------------------------
def load_code(path: str, write: bool | None = None, cached_only: bool = False):
    """The code object of the plugin at `path`, from the hash-keyed cache when it is current.

    A fresh compile is written to the cache unless Python was told not to write bytecode (`write`
    overrides that). With `cached_only`, None instead of compiling: there is no current cache.
    """
    import _frozen_importlib_external as bootstrap
    import _imp

    try:
        with open(path, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise PluginLoadError(f"cannot read {path}: {exc.strerror}") from None
    key = bootstrap.MAGIC_NUMBER + _imp.source_hash(bootstrap._RAW_MAGIC_NUMBER, source)
    cache = os.path.join(os.path.dirname(path), "__pycache__", os.path.basename(path)[:-3] + ".qpsmtpd.pyc")
    try:
        with open(cache, "rb") as fh:
            blob = fh.read()
        if blob[:len(key)] == key:
            return marshal.loads(memoryview(blob)[len(key):])
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = cached_code(path, source)  # what pip, compileall or the Debian package wrote: the service user
    if code is not None or cached_only:  # usually cannot write our own cache beside installed plugins
        return code
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise PluginLoadError(f"syntax error in {path}:{exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes in the source
        raise PluginLoadError(f"cannot compile {path}: {exc}") from None
    if not sys.dont_write_bytecode if write is None else write:
        tmp = f"{cache}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(key + marshal.dumps(code))
            os.replace(tmp, cache)
        except OSError:
            try:  # a read-only or full plugin dir only costs a compile
                os.unlink(tmp)
            except OSError:
                pass
    return code
