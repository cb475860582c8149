"""qpsmtpd-forkserver: one parent listens; a forked child runs each connection's session, fresh.

    qpsmtpd-forkserver [-l ADDR[:PORT]]... [-p PORT]... [--smtps-port PORT]... [-c N] [-m N]
                       [-u USER] [--pid-file FILE] [-d] [--config DIR] [--preload MOD,...]

qpsmtpd's option names. The parent binds (or takes systemd's sockets,
`Accept=no`: LISTEN_FDS, a socket named `smtps` by FileDescriptorName= is
SMTPS), becomes USER, imports the core and the libraries of the plugins the
config names at start (--preload sets the list), and accepts. Each connection gets a child that puts the socket on
fd 0 and 1 and runs exactly what in.qpsmtpd runs: config and plugins are
read in the child, so an edit applies to the next connection with no
signal. The parent preloads library code only: no config value, no plugin.

Limits, in the parent: at `-c` running sessions it stops accepting (the
kernel's backlog holds the next clients, as qpsmtpd's forkserver waits); a
client with `-m` sessions running already gets `421 4.7.0` and is closed.
Each child is told the counts and the limit (QPSMTPD_CONNECTIONS,
QPSMTPD_CONNECTIONS_FROM_IP, QPSMTPD_MAX_FROM_IP), for the hosts_allow plugin.

SIGTERM or SIGINT: stop accepting, let running sessions finish for up to
`--shutdown-timeout` seconds, then send them SIGTERM (a session answers 421 and
never gives 250 for a message it has not queued). SIGHUP: nothing to reload
(every connection reads config and plugins), logged. When the installed
package changes (an upgrade: the package directory or this program's path
changes), the parent re-executes itself at the next accept with the same
sockets, so the code that runs is always the installed code; running
sessions finish on the code they started with.
"""

import os
import select
import signal
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

USAGE = __doc__.split("\n\n")[1] + "\n"
CORE = ("qpsmtpd_stdio.main", "qpsmtpd_stdio.session", "qpsmtpd_stdio.pluginhost", "qpsmtpd_stdio.delivery",
        "qpsmtpd_stdio.config", "qpsmtpd_stdio.transport", "qpsmtpd_stdio.headers", "qpsmtpd_stdio.received",
        "qpsmtpd_stdio.dns", "qpsmtpd_stdio.dnslist", "qpsmtpd_stdio.spf", "qpsmtpd_stdio.authresults",
        "qpsmtpd_stdio.store", "qpsmtpd_stdio.clientsocket")
# Libraries by the plugin that imports them. Only those the config names at start are preloaded: every one
# more makes each fork dearer (page tables, copy-on-write), about 2-5 ms for all of them.
LIBRARIES = {"dkim": ("dkim",), "dmarc": ("qpsmtpd_stdio.dmarcpolicy", "qpsmtpd_stdio.publicsuffix"),
             "greylisting": ("_sqlite3",), "karma": ("_sqlite3",), "tls": ("ssl",),
             "auth/auth_ldap_bind": ("ldap3",)}
HANDOVER = "QPSMTPD_FORKSERVER_FDS"  # fd:kind,... of the listening sockets across a re-exec


NAMES = {"-l": "listen", "--listen-address": "listen", "-p": "ports", "--port": "ports",
         "--smtps-port": "smtps_ports", "-c": "limit", "--limit-connections": "limit", "-m": "per_ip",
         "--max-from-ip": "per_ip", "-u": "user", "--user": "user", "--pid-file": "pid_file",
         "--config": "config", "--preload": "preload", "--shutdown-timeout": "shutdown_timeout"}
DEFAULTS = {"listen": [], "ports": [], "smtps_ports": [], "limit": 15, "per_ip": 5, "user": None,
            "pid_file": None, "detach": False, "config": None, "preload": None, "shutdown_timeout": 60.0}


def parse_args(argv: list[str], names: dict = NAMES, defaults: dict = DEFAULTS, usage: str = USAGE,
               prog: str = "qpsmtpd-forkserver") -> dict:
    """Options by `names` (option -> key) over `defaults`; SystemExit with the usage on a bad one."""
    opts = {k: list(v) if isinstance(v, list) else v for k, v in defaults.items()}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            opts["help"] = True
        elif arg in ("-d", "--detach"):
            opts["detach"] = True
        elif arg in ("-H", "--no-rdns", "--quiet", "--pretty-child"):
            pass  # qpsmtpd's: we never resolve the client's name in the parent, nor rename processes
        elif arg.partition("=")[0] in names:
            name, _, value = arg.partition("=")
            if not value:
                if not args:
                    raise SystemExit(f"{prog}: {arg} needs a value\n{usage}")
                value = args.pop(0)
            key = names[name]
            if isinstance(defaults.get(key), list):
                opts[key].append(value)
            elif isinstance(defaults.get(key), bool):
                opts[key] = True
            elif isinstance(defaults.get(key), int):
                if not value.isascii() or not value.isdigit():
                    raise SystemExit(f"{prog}: {arg} needs a number\n{usage}")
                opts[key] = int(value)
            elif key == "shutdown_timeout":
                opts[key] = float(value)
            elif key == "preload":
                opts[key] = [m for m in value.split(",") if m]
            else:
                opts[key] = value
        else:
            raise SystemExit(f"{prog}: unknown argument {arg}\n{usage}")
    return opts


def endpoints(opts: dict) -> list[tuple[str, int, bool]]:
    """(address, port, smtps) to bind: each -l ADDR[:PORT], with each -p PORT (default 2525) where it has none."""
    ports = [int(p) for p in opts["ports"]] or ([] if opts["smtps_ports"] else [2525])
    out = []
    for item in opts["listen"] or ["[::]"]:
        if item.startswith("["):
            addr, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            addr, _, port = item.partition(":")
        else:
            addr, port = item, ""
        if port:
            out.append((addr, int(port), False))
        else:
            out += [(addr, p, False) for p in ports] + [(addr, int(p), True) for p in opts["smtps_ports"]]
    return out


def bind(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    if addr == "::" and not socket.has_ipv6:
        family, addr = socket.AF_INET, "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and addr == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # [::] takes IPv4 clients too, as qpsmtpd's
    sock.bind((addr, port))
    sock.listen(128)
    return sock


def inherited(environ) -> list[tuple[socket.socket, bool]] | None:
    """Listening sockets passed by systemd (Accept=no) or by our own re-exec; None if there are none."""
    if environ.get(HANDOVER):
        pairs = [item.split(":") for item in environ.pop(HANDOVER).split(",")]
        return [(socket.socket(fileno=int(fd)), kind == "smtps") for fd, kind in pairs]
    if environ.get("LISTEN_PID") == str(os.getpid()) and environ.get("LISTEN_FDS", "").isdigit():
        count = int(environ["LISTEN_FDS"])
        names = environ.get("LISTEN_FDNAMES", "").split(":")
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            environ.pop(name, None)
        return [(socket.socket(fileno=3 + i), i < len(names) and names[i] == "smtps") for i in range(count)]
    return None


def fingerprint() -> tuple:
    """What changes when the installed code is replaced: the package dir (dpkg and pip rename files into it) and
    the path this program runs from (a venv per release behind a symlink that an upgrade moves)."""
    package = os.path.dirname(os.path.abspath(__file__))
    st = os.stat(package)
    return st.st_ino, st.st_mtime_ns, os.path.realpath(sys.argv[0])


class Parent:
    """What both listening daemons' parents are: their sockets, the code they started with, a pipe that wakes
    their loop, and the signals (SIGTERM/SIGINT: stop; SIGHUP: logged; SIGCHLD: reap)."""

    def __init__(self, opts: dict, listeners: list[tuple[socket.socket, bool]], log) -> None:
        self.opts, self.listeners, self.log = opts, listeners, log
        self.stopping = 0.0  # when SIGTERM came
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.code = fingerprint()

    def catch_signals(self) -> None:
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.signalled)

    def signalled(self, signum, frame) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.stopping = time.monotonic()
        elif signum == signal.SIGHUP:
            self.log(6, "SIGHUP: nothing to reload; config and plugins are read by every connection")
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass


class Server(Parent):
    def __init__(self, opts: dict, listeners: list[tuple[socket.socket, bool]], log) -> None:
        super().__init__(opts, listeners, log)
        self.children: dict[int, str] = {}  # pid -> client IP

    def child_exited(self) -> None:
        for pid, status in reap(self.children):
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) not in (signal.SIGTERM, signal.SIGKILL):
                self.log(3, f"session {pid} died of signal {os.WTERMSIG(status)}")

    def run(self) -> int:
        self.catch_signals()
        socks = {s.fileno(): (s, smtps) for s, smtps in self.listeners}
        for s, _ in self.listeners:
            s.setblocking(False)
        self.log(6, "listening on " + ", ".join(f"{_name(s)}{' (smtps)' if smtps else ''}" for s, smtps in self.listeners))
        while True:
            self.child_exited()
            if self.stopping:
                return self.drain(socks)
            full = len(self.children) >= self.opts["limit"]
            wait = [self.wake_r] + ([] if full else list(socks))
            try:
                ready, _, _ = select.select(wait, [], [], 1.0)
            except InterruptedError:
                continue
            if self.wake_r in ready:
                os.read(self.wake_r, 512)
            for fd in ready:
                if fd in socks and not self.stopping and len(self.children) < self.opts["limit"]:
                    if fingerprint() != self.code:
                        self.reexec()  # before accepting: the waiting client is the new code's first
                        if self.stopping:
                            break
                    self.accept(*socks[fd])

    def accept(self, listener: socket.socket, smtps: bool) -> None:
        try:
            conn, peer = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        with conn:
            from .netlist import canonical_ip

            ip = canonical_ip(peer[0])
            self.child_exited()  # a session that just ended must not count: its client may be this one
            same = sum(1 for other in self.children.values() if other == ip)
            if same >= self.opts["per_ip"]:
                self.log(6, f"refused {ip}: {same} sessions from it already (-m {self.opts['per_ip']})")
                refuse(conn, ip)
                return
            pid = os.fork()
            if pid == 0:
                self.child(conn, peer, smtps, same + 1)
            self.children[pid] = ip

    def child(self, conn: socket.socket, peer, smtps: bool, from_ip: int) -> None:
        """In the forked child: never returns."""
        for s, _ in self.listeners:
            s.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        session(conn, peer, smtps, self.opts["config"], len(self.children) + 1, from_ip, self.opts["per_ip"], self.log)

    def drain(self, socks) -> int:
        for s, _ in self.listeners:
            s.close()
        self.log(6, f"stopping: {len(self.children)} session(s) running, {self.opts['shutdown_timeout']:g}s to finish")
        return finish(self.children, self.child_exited, self.wake_r, self.stopping + self.opts["shutdown_timeout"])

    def reexec(self) -> None:
        if settled(self.wake_r, lambda: bool(self.stopping)):
            self.log(6, "the installed code changed: starting it, with the same sockets")
            reexec(self.listeners)  # running sessions finish on the old code; the new parent does not count them


def finish(children: dict, reap_them, wake_r: int, deadline: float) -> int:
    """SIGTERM's end: let the running sessions (`children`, emptied by `reap_them()`) finish until `deadline`,
    then send them SIGTERM (a session answers 421: the client keeps its message) and wait for the last."""
    while children and time.monotonic() < deadline:
        reap_them()
        select.select([wake_r], [], [], 0.2)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    while children:
        reap_them()
        time.sleep(0.05)
    return 0


def settled(wake_r: int, stopping) -> bool:
    """Wait for the installer to finish: the fingerprint must hold still for a second. False on SIGTERM."""
    seen = fingerprint()
    while True:
        select.select([wake_r], [], [], 1.0)
        if stopping():
            return False  # the loop drains, on the code it has
        now = fingerprint()
        if now == seen:
            return True
        seen = now


def reexec(listeners: list[tuple[socket.socket, bool]]) -> None:
    """Run the installed program again in this process (same pid, same children) with the same sockets."""
    handover = []
    for s, smtps in listeners:
        os.set_inheritable(s.fileno(), True)
        handover.append(f"{s.fileno()}:{'smtps' if smtps else 'smtp'}")
    os.environ[HANDOVER] = ",".join(handover)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    if os.access(sys.argv[0], os.X_OK):
        os.execv(sys.argv[0], sys.argv)  # its #! line: the interpreter of the installed release
    os.execv(sys.executable, [sys.executable] + sys.argv)


def session(conn: socket.socket, peer, smtps: bool, config: str | None, connections: int, from_ip: int,
            max_from_ip: int, log, ended: "Callable[[], None] | None" = None) -> None:
    """In a forked process: the connection on fd 0 and 1, then in.qpsmtpd's main(); never returns.

    `ended`, if given, is called once the session is over, before the process exits (prefork frees its slot).
    """
    code = 111
    try:
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        conn.setblocking(True)
        local = conn.getsockname()
        os.dup2(conn.fileno(), 0)
        os.dup2(conn.fileno(), 1)
        conn.close()
        os.environ.update(TCPREMOTEIP=peer[0], TCPREMOTEPORT=str(peer[1]), TCPLOCALIP=local[0],
                          TCPLOCALPORT=str(local[1]), QPSMTPD_CONNECTIONS=str(connections),
                          QPSMTPD_CONNECTIONS_FROM_IP=str(from_ip), QPSMTPD_MAX_FROM_IP=str(max_from_ip))
        from .main import main

        code = main((["--config", config] if config else []) + (["--smtps"] if smtps else []))
    except BaseException as exc:  # noqa: BLE001 - whatever happens, the child must not return into the parent's loop
        try:
            log(2, f"session failed: {exc!r}")
        except BaseException:
            pass
    finally:
        if ended is not None:
            try:
                ended()
            except BaseException:  # noqa: BLE001 - the exit below must happen
                pass
        os._exit(code if isinstance(code, int) else 0)


def refuse(conn: socket.socket, ip: str) -> None:
    try:
        conn.setblocking(False)
        conn.send(f"421 4.7.0 Too many connections from {ip}, try again later\r\n".encode())
    except OSError:
        pass


def reap(known: dict) -> list[tuple[int, int]]:
    """Every exited child, known or not (a re-executed parent inherits its predecessor's): [(pid, status)]."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return out
        if pid == 0:
            return out
        known.pop(pid, None)
        out.append((pid, status))


def _name(sock: socket.socket) -> str:
    addr = sock.getsockname()
    return f"[{addr[0]}]:{addr[1]}" if sock.family == socket.AF_INET6 else f"{addr[0]}:{addr[1]}"


def default_preload(config_dir: str | None) -> list[str]:
    """The core, and the libraries of the plugins the config names now (a later edit only costs a child an import)."""
    from .config import Config, find_config_dir

    config = Config(find_config_dir(config_dir))
    names = [line.split()[0].partition(":")[0] for line in config.get("plugins") + config.get("logging")]
    extra = [lib for name in names for lib in LIBRARIES.get(name, ())]
    if config.get("store"):
        extra.append("redis")
    return list(dict.fromkeys([*CORE, *extra]))


def preload(modules: list[str], log) -> None:
    """Import library code in the parent, so no child pays for it; a module not installed is skipped."""
    import importlib

    for name in modules:
        try:
            if name == "dkim":
                from .dkimcheck import load

                load()  # dkimpy with the DNS stub the sessions use
            else:
                importlib.import_module(name)
        except ImportError:
            continue
        except Exception as exc:  # noqa: BLE001 - a library that fails to import is the sessions' problem
            log(4, f"preload {name}: {exc!r}")


def detach() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def start(opts: dict, prog: str):
    """Bind (or take the sockets handed over), detach, write the pid file, become the user, preload:
    (listeners, log), or an exit status."""
    from .log import Log

    log = Log(level=6)
    reexecuted = HANDOVER in os.environ  # same pid, already detached and no longer root: only run
    listeners = inherited(os.environ)
    if listeners is None:
        try:
            listeners = [(bind(addr, port), smtps) for addr, port, smtps in endpoints(opts)]
        except OSError as exc:
            sys.stderr.write(f"{prog}: cannot listen: {exc}\n")
            return 1
    if opts["detach"]:
        if not reexecuted:
            detach()
        log = Log(level=6, to_syslog=True)
    if opts["pid_file"] and not reexecuted:  # before dropping root, as /run wants
        with open(opts["pid_file"], "w") as fh:
            fh.write(f"{os.getpid()}\n")
    if opts["user"] and os.geteuid() == 0:
        from .serviceuser import become

        refusal = become(opts["user"])
        if refusal:
            log(2, f"{prog}: {refusal}")
            return 1
    elif os.geteuid() == 0:
        log(4, "running as root: sessions become config `user` if it is set (-u USER drops root here)")
    preload(opts["preload"] if opts["preload"] is not None else default_preload(opts["config"]), log)
    import gc

    gc.freeze()  # what the parent holds is never collected in a child: no copy-on-write of it there
    return listeners, log


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.get("help"):
        sys.stdout.write(USAGE)
        return 0
    started = start(opts, "qpsmtpd-forkserver")
    if isinstance(started, int):
        return started
    return Server(opts, *started).run()
