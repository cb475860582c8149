"""in.qpsmtpd --check: every problem reported as FILE:LINE, exit status 1 on any, 0 when all loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import BIN


def check(smtp, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(BIN), "--check", *args]
    if not args:
        argv += ["--config", str(smtp.dir)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_good_config_passes(smtp):
    smtp.write("logging", f"logging/file loglevel LOGINFO {smtp.root / 'log'}")
    smtp.plugin("fine", "def register(plugin, word):\n    plugin.word = word\n")
    smtp.plugins("fine hello", "relay", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    done = check(smtp)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [f"{smtp.dir / 'logging'}:1: logging/file: works",
                                        *(f"{smtp.dir / 'plugins'}:{n}: {name}: works"
                                          for n, name in enumerate(("fine", "relay", "rcpt_ok", "queue/maildir"), 1)),
                                        f"logs: to the plugins in {smtp.dir / 'logging'}",
                                        f"ok: {smtp.dir}"]


def test_each_problem_reported_at_its_file_and_line(smtp):
    plugins = smtp.dir / "plugins"
    syntax = smtp.plugin("half_saved", "def hook_rcpt(plugin, txn, rcpt, params):\n    return (DENY,\n")
    raises = smtp.plugin("raises", "import os\n\ndef register(plugin):\n    os.stat('/nonexistent/qpsmtpd-check')\n")
    smtp.write("more_plugins", "no/such_plugin")
    smtp.plugins("relay", "half_saved", "raises", "nosuch", "queue/maildir", "$include more_plugins", "rcpt_ok")
    smtp.write("logging", "# where the log goes\nlogging/nosuch")
    smtp.write("timeout", "# seconds\nsoon")
    smtp.write("loglevel", "LOGCHATTY")
    smtp.write("rcpthosts", "example.test\n$include rcpthosts")
    smtp.write("badrcptto", "$include /nonexistent/qpsmtpd-check-list")
    done = check(smtp)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if not line.endswith(": works") and not line.startswith("logs: ")]
    expected = [
        f"{syntax}:2:12: SyntaxError: '(' was never closed",
        f"{raises}:4: FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/qpsmtpd-check' "
        f"(loaded from {plugins}:3)",
        f"{plugins}:4: plugin nosuch: not found in",
        f"plugins/queue/maildir.py:",  # its register() refuses to run without a Maildir path
        f"{smtp.dir / 'more_plugins'}:1: plugin no/such_plugin: not found in",
        f"{smtp.dir / 'logging'}:2: plugin logging/nosuch: not found in",
        f"{smtp.dir / 'timeout'}:2: timeout: not a number: 'soon'",
        f"{smtp.dir / 'loglevel'}:1: loglevel: 'LOGCHATTY' is not 0-7 or a name like LOGINFO",
        f"{smtp.dir / 'rcpthosts'}:2: $include loop at {smtp.dir / 'rcpthosts'}",
        f"{smtp.dir / 'badrcptto'}:1: cannot read /nonexistent/qpsmtpd-check-list: No such file or directory",
    ]
    for want in expected:
        assert any(want in line for line in lines), f"{want!r} not in:\n{done.stdout}"
    assert "(loaded from " + str(plugins) + ":5)" in done.stdout  # the queue/maildir line
    assert lines[-1] == f"{len(lines) - 1} problem(s) in {smtp.dir}"
    assert len(lines) - 1 == len(expected)


def test_no_hook_runs_but_register_and_env_names_the_dir(smtp):
    marker = smtp.root / "connect-ran"
    smtp.plugin("marker", f"def hook_connect(plugin, txn):\n    open({str(marker)!r}, 'w').close()\n")
    smtp.plugins("marker", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    env = smtp.env()
    done = subprocess.run([sys.executable, str(BIN), "--check"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == f"ok: {smtp.dir}"
    assert not marker.exists()


def test_missing_queue_plugin_is_a_problem(smtp):
    smtp.plugins("relay", "rcpt_ok")
    done = check(smtp)
    assert done.returncode == 1  # every message would get 451
    assert f"{smtp.dir / 'plugins'}: no plugin has a queue hook; every message will be answered 451" in done.stdout


def test_missing_config_dir_fails(smtp):
    done = check(smtp, "--config", str(smtp.root / "nowhere"))
    assert done.returncode == 1
    assert f"{smtp.root / 'nowhere'}: no such config directory" in done.stdout


def test_enumerated_settings_are_checked(smtp):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.write("bare_newline", "# reject or keep\nkepp")
    smtp.write("tls_before_auth", "nope")
    smtp.write("smtps", "Yes")  # the case does not matter
    done = check(smtp)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"{smtp.dir / 'bare_newline'}:2: bare_newline: 'kepp' is not one of normalize, reject, keep",
                         f"{smtp.dir / 'tls_before_auth'}:1: tls_before_auth: 'nope' is not one of "
                         "1, yes, true, on, 0, no, false, off"], done.stdout
    assert lines[-1] == f"2 problem(s) in {smtp.dir}"


def test_a_typo_in_bare_newline_keeps_the_safe_default(smtp):
    # The session itself warns and mends the bare LF, as with no setting at all.
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.write("bare_newline", "kepp")
    smtp.write("loglevel", "LOGWARN")
    wire = b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbare\nlf\r\n.\r\nQUIT\r\n"
    r = smtp.run(wire)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    assert "config bare_newline: 'kepp' is not one of normalize, reject, keep; using normalize" in r.log
    assert smtp.messages()[0].endswith(b"\n\nbare\nlf\n")


def test_zero_where_it_cannot_mean_no_limit(smtp):
    from qpsmtpd_stdio.constants import DEFAULTS, NOT_ZERO

    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    for name in sorted(NOT_ZERO):
        smtp.write(name, "0")
    for name in sorted(set(DEFAULTS) - NOT_ZERO - {"loglevel"}):
        smtp.write(name, "0")  # each of these takes 0 as "no limit" or "off"
    done = check(smtp)
    problems = [line for line in done.stdout.splitlines()[:-1] if not line.endswith(": works")
                and not line.startswith("logs: ")]
    assert sorted(line.split(":")[0].rsplit("/", 1)[1] for line in problems) == sorted(NOT_ZERO), done.stdout
    assert all("0 would fail every session" in line for line in problems)


def test_a_session_survives_zero_where_it_cannot_mean_no_limit(smtp):
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    for name in ("timeout", "session_timeout", "max_command_length", "max_header_size", "max_header_lines"):
        smtp.write(name, "0")
    smtp.write("loglevel", "LOGWARN")
    r = smtp.run(b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: z\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    assert "config timeout: 0 is not allowed" in r.log


def test_logs_never_vanish_without_syslog(smtp, tmp_path):
    """Under inetd fd 2 is the client's socket; with no syslog daemon the lines go to the fallback file."""
    from qpsmtpd_stdio.log import syslog_listening

    if syslog_listening():
        pytest.skip("a syslog daemon listens on /dev/log here: the lines go there")
    fallback = tmp_path / "fallback.log"
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    smtp.write("loglevel", "LOGDEBUG")
    r = smtp.run(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\nQUIT\r\n", via="socketpair",
                 QPSMTPD_LOG_FALLBACK=str(fallback))
    assert r.codes == [220, 250, 250, 550, 221]
    text = fallback.read_text()
    assert "connection from" in text and "session from" in text  # the first and the last line of the session
    assert oct(fallback.stat().st_mode & 0o777) == "0o640"
    done = check(smtp)
    assert "logs: under inetd, xinetd or systemd (fd 2 is the client's socket) to the file " in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="starts as root to drop to the service user")
def test_started_as_root_it_becomes_the_service_user(smtp):
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    from conftest import simple_session

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="qpsmtpd-user-"))  # outside pytest's 0700 tree: `nobody` must get in
    try:
        root.chmod(0o777)
        config = root / "config"
        shutil.copytree(smtp.dir, config)
        for path in [config, *config.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (config / "plugins").write_text(f"rcpt_ok\nqueue/maildir {root / 'Maildir'}\n")
        (config / "store_dir").write_text(f"{root}\n")
        (config / "user").write_text("nobody\n")
        r = smtp.run(simple_session(), QPSMTPD_CONFIG=str(config))
        assert r.codes[-2:] == [250, 221], r.log
        delivered = next((root / "Maildir" / "new").iterdir())
        assert delivered.stat().st_uid == nobody.pw_uid and (root / "Maildir" / "tmp").stat().st_uid == nobody.pw_uid
        (config / "user").write_text("no-such-user-here\n")
        r = smtp.run(simple_session(), QPSMTPD_CONFIG=str(config))
        assert r.codes == [421]
        assert "config user: no such user 'no-such-user-here'; refusing to run the session as root" in r.log
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks as another user, which only root can become")
def test_check_as_the_service_user_sees_its_permissions(tmp_path):
    """Root could open everything; the service user cannot: --check --user finds what would fail at run time."""
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="qpsmtpd-check-"))
    try:
        root.chmod(0o755)
        config = root / "config"
        config.mkdir(mode=0o755)
        secret = root / "private"
        secret.mkdir(mode=0o700)  # /etc/ssl/private's lesson: the key is there, but not for this user
        (secret / "key.pem").write_text("not for this user\n")
        maildir = root / "Maildir"
        maildir.mkdir(mode=0o700)  # made by root, as the first "try it" session did
        logdir = root / "log"
        logdir.mkdir(mode=0o755)
        (config / "me").write_text("mx.example.test\n")
        (config / "logging").write_text(f"logging/file {logdir / 'qpsmtpd.log'}\n")
        (config / "plugins").write_text(f"tls {secret / 'cert.pem'} {secret / 'key.pem'}\nrcpt_ok\n"
                                        f"queue/maildir {maildir}\n")
        for path in config.iterdir():
            path.chmod(0o644)
        done = subprocess.run([sys.executable, str(BIN), "--check", "--config", str(config), "--user", "nobody"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        out = done.stdout
        assert "checked as user nobody" in out
        assert f"{config / 'plugins'}:1: tls: cannot start TLS:" in out and "STARTTLS would get 454" in out
        assert f"{config / 'plugins'}:3: queue/maildir: cannot deliver into {maildir}" in out
        assert f"{config / 'logging'}:1: logging/file: cannot write the log file {logdir / 'qpsmtpd.log'}" in out
        as_root = subprocess.run([sys.executable, str(BIN), "--check", "--config", str(config)], capture_output=True,
                                 text=True, timeout=60)
        assert "queue/maildir: cannot deliver" not in as_root.stdout  # root can; the service user cannot
    finally:
        shutil.rmtree(root)


def test_bad_patterns_in_list_files(smtp):
    smtp.write("badmailfrom", "ok@example.org\n^spam[0-9+@example\\.org$\n")
    smtp.write("badhelo", "!^(good|fine\\.example$\n")
    smtp.write("rcpt_regexp", "/^(unclosed@/ DENY no\n/^fine@/ OK\n")
    smtp.plugins("rcpt_ok", f"queue/maildir {smtp.maildir}")
    done = check(smtp)
    assert done.returncode == 1
    assert f"{smtp.dir / 'badmailfrom'}:2: badmailfrom: bad pattern '^spam[0-9+@example\\\\.org$'" in done.stdout
    assert f"{smtp.dir / 'badhelo'}:1: badhelo: bad pattern" in done.stdout
    assert f"{smtp.dir / 'rcpt_regexp'}:1: rcpt_regexp: bad pattern '/^(unclosed@/'" in done.stdout
    assert ":2: rcpt_regexp" not in done.stdout and "badmailfrom:1" not in done.stdout


def test_dmarc_gets_the_public_suffix_index_written(smtp):
    pytest.importorskip("publicsuffixlist")
    from qpsmtpd_stdio import publicsuffix

    path = publicsuffix.index_path(publicsuffix.list_path())
    if os.path.exists(path):
        os.unlink(path)
    smtp.plugins("dmarc", "rcpt_ok", f"queue/maildir {smtp.maildir}")
    done = check(smtp)
    assert done.returncode == 0, done.stdout
    assert f"public suffix index: {path}: written" in done.stdout.splitlines()
    assert f"public suffix index: {path}: current" in check(smtp).stdout.splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="checks as another user, which only root can become")
def test_check_writes_the_plugin_caches_the_service_user_cannot(tmp_path):
    import shutil
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp(prefix="qpsmtpd-check-"))
    try:
        root.chmod(0o755)
        config, site = root / "config", root / "site-plugins"
        config.mkdir(mode=0o755)
        site.mkdir(mode=0o755)  # root's: the service user cannot write a cache here
        (site / "site_check.py").write_text("def hook_rcpt(plugin, txn, rcpt, params):\n    return 909\n")
        (config / "plugin_dirs").write_text(f"{site}\n")
        (config / "plugins").write_text(f"site_check\nrcpt_ok\nqueue/maildir {root / 'Maildir'}\n")
        argv = [sys.executable, str(BIN), "--check", "--config", str(config), "--user", "nobody"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert "site_check: works" in done.stdout and "bytecode cache" not in done.stdout, done.stdout
        assert (site / "__pycache__" / "site_check.qpsmtpd.pyc").stat().st_uid == 0
        shutil.rmtree(site / "__pycache__")
        (site / "__pycache__").write_text("not a directory: no cache can be written here, even by root\n")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert (f"{config / 'plugins'}:1: site_check: {site / 'site_check.py'} has no current bytecode cache, so "
                "every session compiles it") in done.stdout, done.stdout
    finally:
        shutil.rmtree(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks as another user, which only root can become")
def test_check_writes_the_package_caches_and_says_when_it_cannot(tmp_path):
    # A copy of the checkout (package and plugins) with no bytecode cache, in root's dirs; nothing writes one
    # on import (PYTHONDONTWRITEBYTECODE), so only the check's own writing can.
    import shutil
    import tempfile
    from pathlib import Path

    from qpsmtpd_stdio import bytecode

    root = Path(tempfile.mkdtemp(prefix="qpsmtpd-check-"))
    try:
        root.chmod(0o755)
        checkout = Path(bytecode.__file__).parents[1]
        for part in ("qpsmtpd_stdio", "plugins"):
            shutil.copytree(checkout / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
        config = root / "config"
        config.mkdir(mode=0o755)
        (config / "plugins").write_text(f"rcpt_ok\nqueue/maildir {root / 'Maildir'}\n")
        argv = [sys.executable, "-S", "-c", "import sys; from qpsmtpd_stdio.main import main; sys.exit(main())",
                "--check", "--config", str(config), "--user", "nobody"]
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=root, env=env)
        assert "rcpt_ok: works" in done.stdout and "of qpsmtpd-stdio have no current" not in done.stdout, done.stdout
        package = root / "qpsmtpd_stdio"
        assert bytecode.cached_code(str(package / "starttls.py")) is not None  # a module the check never imports
        assert (package / "__pycache__").stat().st_uid == 0
        shutil.rmtree(package / "__pycache__")
        (package / "__pycache__").write_text("not a directory: no cache can be written here, even by root\n")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=root, env=env)
        modules = len(list(package.glob("*.py")))
        assert (f"{package}: {modules} module(s) of qpsmtpd-stdio have no current bytecode cache (__init__.py, "
                "address.py, auth.py, ...), so every session compiles those it imports") in done.stdout, done.stdout
    finally:
        shutil.rmtree(root)
