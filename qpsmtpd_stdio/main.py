"""in.qpsmtpd: one SMTP session on fd 0/1, as started by inetd, xinetd, tcpserver or systemd.

Order matters here: protect fd 1 and fd 2 first, then read the config, load
the plugins, and run the session. Nothing is imported that a session may not
need.
"""

from __future__ import annotations

import _signal
import os
import sys

USAGE = """usage: in.qpsmtpd [--config DIR]

Runs one SMTP session on standard input and output. The config directory is
--config DIR, else $QPSMTPD_CONFIG, else config/ beside the install, else
/etc/qpsmtpd.
"""


def parse_args(argv: list[str]) -> dict:
    opts: dict = {"config": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--config") and args:
            opts["config"] = args.pop(0)
        elif arg.startswith("--config="):
            opts["config"] = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            opts["help"] = True
        else:
            opts["error"] = f"unknown argument: {arg}"
    return opts


def main(argv: list[str] | None = None) -> int:
    from .log import Log, parse_level, redirect_std_streams, stderr_is_socket

    # Under inetd fd 2 is the client's socket: nothing may reach it, not even
    # a warning printed by the interpreter, so it points at /dev/null from now on.
    stderr_socket = stderr_is_socket()
    if stderr_socket:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.get("help") or opts.get("error"):
        if not stderr_socket:
            os.write(2, ((opts.get("error", "") + "\n") if opts.get("error") else "").encode() + USAGE.encode())
        return 0 if opts.get("help") else 64

    log = Log(to_syslog=stderr_socket)
    redirect_std_streams(log)
    from .config import Config, find_config_dir
    from .connection_info import identify
    from .pluginhost import PluginHost, PluginLoadError
    from .protocol import Reply
    from .session import Session, Terminate
    from .transport import Transport
    from . import pluginhost

    def on_signal(signum, frame):
        if signum == _signal.SIGALRM and pluginhost.in_hook:
            raise pluginhost.HookTimeout()
        raise Terminate({_signal.SIGTERM: "SIGTERM", _signal.SIGHUP: "SIGHUP"}.get(signum, "SIGALRM"))

    for sig in (_signal.SIGTERM, _signal.SIGHUP, _signal.SIGALRM):
        _signal.signal(sig, on_signal)

    config = Config(find_config_dir(opts["config"]))
    config.warn = lambda message: log(4, message)
    log.level = parse_level(config.get_one("loglevel"), 4)
    transport = Transport(0, 1)
    connection = identify(os.environ, 0)
    host = PluginHost(config, log, connection, timeout=config.get_int("plugin_timeout"))
    session = Session(config, log, transport, connection, host)
    try:
        host.load_all(config.get("logging"))
        if host.has("logging"):
            log.sinks.append(lambda level, hook, plugin, msg: host.run_all("logging", None, level, hook, plugin, msg))
        host.load_all(config.get("plugins"))
        if host.has("config"):
            config.hook = host.config_answer
    except (PluginLoadError, Exception) as exc:
        # Fail closed: no mail is taken while a plugin is broken; the client retries later.
        log(2, f"cannot load plugins, refusing the session with 421: {exc}")
        try:
            transport.write(Reply(421, f"{session.me} Service temporarily unavailable (configuration error)", "4.3.0").to_bytes())
            transport.flush()
        except Exception:
            pass
        return 0
    except Terminate:
        return 0
    log(7, f"connection from {connection.remote_label} to {connection.local_ip}:{connection.local_port}")
    session.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
