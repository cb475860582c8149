"""in.qpsmtpd: one SMTP session on fd 0/1, as started by inetd, xinetd, tcpserver or systemd.

Order matters here: protect fd 1 and fd 2 first, then read the config, load
the plugins, and run the session. Nothing is imported that a session may not
need.
"""

import os
import sys

USAGE = """usage: in.qpsmtpd [--config DIR] [--transcript FILE] [--smtps]
       in.qpsmtpd --check [--config DIR] [--user NAME]
       in.qpsmtpd --import-qpsmtpd-db greylisting|karma FILE [--config DIR]

Runs one SMTP session on standard input and output (or on the socket passed
as fd 3 by systemd's LISTEN_FDS protocol). The config directory is
--config DIR, else $QPSMTPD_CONFIG, else config/ beside the install, else
/etc/qpsmtpd.

  --transcript FILE  append every line in and out, with timestamps, to FILE
                     (AUTH payloads masked); config file `transcript` does
                     the same
  --smtps            start TLS before the greeting (SMTPS, port 465; needs
                     the tls plugin); config file `smtps` holding 1 does the
                     same, as does a connection to port 465
  --check            load the config and every plugin, say what each plugin
                     line does, report each problem as FILE:LINE: message,
                     and exit 1 if sessions would refuse mail; run as root,
                     it checks as the service user (--user NAME, else
                     config `user`), opening what that user must open
  --import-qpsmtpd-db  once, when moving a qpsmtpd site over: copy its
                     greylisting or karma DBM file into the store that the
                     plugin's line in config/plugins uses
"""

_VALUED = {"-c": "config", "--config": "config", "--transcript": "transcript", "--user": "user"}


def parse_args(argv: list[str]) -> dict:
    opts: dict = {"config": None, "transcript": None, "user": None}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if arg in _VALUED and args:
            opts[_VALUED[arg]] = args.pop(0)
        elif eq and name in ("--config", "--transcript", "--user"):
            opts[_VALUED[name]] = value
        elif arg == "--check":
            opts["check"] = True
        elif arg == "--import-qpsmtpd-db" and len(args) >= 2:
            opts["import"] = (args.pop(0), args.pop(0))
        elif arg == "--smtps":
            opts["smtps"] = True
        elif arg in ("-h", "--help"):
            opts["help"] = True
        else:
            opts["error"] = f"unknown argument: {arg}"
    return opts


def session_fd(environ) -> int:
    """fd 3 when systemd passed one connection by LISTEN_FDS (Accept=yes without StandardInput=socket), else 0."""
    if environ.get("LISTEN_FDS") == "1" and environ.get("LISTEN_PID") == str(os.getpid()):
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            environ.pop(name, None)  # not for the plugins' children
        return 3
    return 0


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
    if opts.get("check"):
        from .check import check

        return check(opts["config"], user=opts.get("user"))
    if opts.get("import"):
        from .qpimport import run

        return run(opts["config"], *opts["import"], sys.stdout)

    import gc

    gc.disable()  # start-up makes no garbage worth a collection; serve() turns the collector back on
    log = Log(to_syslog=stderr_socket)
    redirect_std_streams(log)
    from .config import Config, find_config_dir
    from .connection import identify
    from .signals import Terminate, install
    from .transport import Transport

    install()

    config = Config(find_config_dir(opts["config"]))
    config.warn = lambda message: log(4, message)
    log.level = parse_level(config.get_one("loglevel"), 4)
    fd = session_fd(os.environ)
    transport = Transport(fd, 1 if fd == 0 else fd)
    if os.geteuid() == 0 and config.get_one("user"):
        from .serviceuser import become

        refusal = become(config.get_one("user"))
        if refusal:  # never serve a client as root by mistake
            log(2, refusal)
            transport.write(b"421 4.3.0 Service not available, try again later\r\n")
            transport.close()
            return 1
    connection = identify(os.environ, fd)
    transcript_path = opts["transcript"] or config.get_one("transcript")
    if transcript_path:
        from .transcript import Transcript

        if not opts["transcript"]:
            transcript_path = os.path.join(config.directory, transcript_path)
        transport.transcript = Transcript.open(transcript_path, connection, log)
    try:
        serve(config, log, transport, connection, smtps=opts.get("smtps", False), freeze=True)
        transport.close()  # lingering close: no RST may destroy the last reply
    except Terminate:
        pass
    finally:
        if transport.transcript is not None:
            transport.transcript.close()
    return 0


def serve(config, log, transport, connection, smtps: bool = False, freeze: bool = False):
    """Load the logging plugins and the plugins, then run one session over `transport`.

    Returns the Session, or None when a plugin failed to load (the client then
    got 421). qpsmtpd_stdio.testing runs sessions in-process through here too.
    `freeze`: this process serves this session alone, so what start-up made (modules, plugins) lives to
    its end; it is moved out of the collector's sight, and the collections during the session and the
    one at exit skip it (about 9 M instructions of a 64 M session).
    """
    from .pluginhost import PluginHost
    from .protocol import Reply
    from .session import Session

    host = PluginHost(config, log, connection, timeout=config.get_int("plugin_timeout"))
    session = Session(config, log, transport, connection, host, smtps=smtps)
    try:
        host.load_all(config.get("logging"))
        if host.has("logging"):
            log.sinks.append(lambda level, hook, plugin, msg: host.run_all("logging", None, level, hook, plugin, msg))
        host.load_all(config.get("plugins"))
        if host.has("logging") and not log.sinks:  # logging plugins listed in config/plugins
            log.sinks.append(lambda level, hook, plugin, msg: host.run_all("logging", None, level, hook, plugin, msg))
        if host.has("config"):
            config.hook = host.config_answer
    except Exception as exc:
        # Fail closed: no mail is taken while a plugin is broken; the client retries later.
        log(2, f"cannot load plugins, refusing the session with 421: {exc}")
        try:
            transport.write(Reply(421, f"{session.me} Service temporarily unavailable (configuration error)", "4.3.0").to_bytes())
            transport.flush()
        except Exception:
            pass
        return None
    if freeze:
        import gc

        gc.freeze()
        gc.enable()
    log(7, f"connection from {connection.remote_label} to {connection.local_ip}:{connection.local_port}")
    try:
        session.run()
    finally:
        store = sys.modules.get(f"{__package__}.store")
        if store is not None:
            store.close_all()  # the stores the session's plugins opened, one SQLite connection each
    return session


if __name__ == "__main__":
    sys.exit(main())
