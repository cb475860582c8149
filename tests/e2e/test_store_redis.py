"""The shared Redis store (config file `store`): greylisting and karma against a real redis-server."""

import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SMTPConfig, dialogue

from qpsmtpd_stdio import store
from qpsmtpd_stdio.testing import Harness

redis = pytest.importorskip("redis", reason="the redis package (pip install redis) is not installed")
SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(not SERVER, reason="redis-server (Debian package redis-server) is not installed")

MSG = "From: a@example.org\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: hi\n\nHello."


class Server:
    """A private redis-server on 127.0.0.1 and a free high port, no persistence; stopped by its PID."""

    def __init__(self, tmp) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)

    def hash(self, table, key):
        return self.client.hgetall(f"qpsmtpd:{table}:{key}")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("redis"))
    yield srv
    srv.stop()


@pytest.fixture
def smtp(tmp_path, server):
    server.client.flushdb()
    h = Harness(tmp_path)
    h.server = server
    h.config("rcpthosts", "example.test")
    h.config("badmailfrom", "spammer@example.org")
    h.config("store", server.url)
    h.db = tmp_path / "db"  # db_dir given but unused: the config file `store` wins
    h.db.mkdir()
    return h


def mail(h, sender="a@example.org", **kw):
    return h.run("EHLO client.example", f"MAIL FROM:<{sender}>", "RCPT TO:<bob@example.test>", "DATA", "QUIT",
                 body=MSG, **kw)


def grey(h, args=""):
    return ["relay", f"greylisting db_dir {h.db} {args}".strip(), "rcpt_ok"]


def test_greylisting_in_redis_with_expiry(smtp):
    smtp.plugins = grey(smtp, "black_timeout 0 grey_timeout 600 white_timeout 7200")
    assert mail(smtp).codes[2] == 450
    ttl = smtp.server.client.ttl("qpsmtpd:greylist:192.0.2.10")
    assert 590 <= ttl <= 600  # unconfirmed: gone after the grey window
    assert mail(smtp).codes[2] == 250
    assert mail(smtp).codes[2] == 250
    record = smtp.server.hash("greylist", "192.0.2.10")
    assert (record["black"], record["white"]) == ("0", "2")
    assert 7190 <= smtp.server.client.ttl("qpsmtpd:greylist:192.0.2.10") <= 7200  # whitelisted: white_timeout
    assert not (smtp.db / "qpsmtpd.sqlite").exists()
    smtp.plugins = grey(smtp)  # default black_timeout: deferred again within it
    assert mail(smtp, remote_ip="192.0.2.11").codes[2] == 450
    assert mail(smtp, remote_ip="192.0.2.11").codes[2] == 450
    assert smtp.server.hash("greylist", "192.0.2.11")["black"] == "1"


def test_plugin_argument_names_the_store(smtp):
    smtp.config("store")  # empty file: the argument alone
    smtp.plugins = grey(smtp, f"black_timeout 0 sender 1 store {smtp.server.url}")
    assert mail(smtp).codes[2] == 450
    assert mail(smtp).codes[2] == 250
    assert smtp.server.hash("greylist", "192.0.2.10|a@example.org")["white"] == "1"


def test_karma_penalty_box_in_redis(smtp):
    smtp.plugins = ["karma reject connect", "relay", "badmailfrom reject naughty", "naughty reject data", "rcpt_ok"]
    r = mail(smtp, sender="spammer@example.org")
    assert r.codes[:5] == [220, 250, 250, 250, 554]
    record = smtp.server.hash("karma", "192.0.2.10")
    assert (record["naughty"], record["nice"], record["connects"]) == ("1", "0", "1")
    assert float(record["penalty_start"]) > 0
    assert smtp.server.client.ttl("qpsmtpd:karma:192.0.2.10") > 364 * 86400
    r = mail(smtp)
    assert r.codes == [554]
    assert "You were naughty. You cannot connect for" in r.replies[0].text
    assert smtp.server.hash("karma", "192.0.2.10")["connects"] == "2"
    assert mail(smtp, remote_ip="192.0.2.99").codes[5] == 250


def test_unreachable_redis_fails_open_and_is_logged(tmp_path):
    srv = Server(tmp_path)
    h = Harness(tmp_path / "h")
    h.config("rcpthosts", "example.test")
    h.config("badmailfrom", "spammer@example.org")
    h.config("store", srv.url)
    h.plugins = ["karma reject connect", "relay", "badmailfrom reject naughty", "greylisting",
                 "naughty reject data", "rcpt_ok"]
    try:
        assert mail(h).codes[2] == 450  # up: greylisted
        mail(h, sender="spammer@example.org", remote_ip="192.0.2.50")  # karma: penalty box
        assert mail(h, remote_ip="192.0.2.50").codes == [554]
    finally:
        srv.stop()
    started = time.monotonic()
    r = mail(h)
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]  # greylisting and karma both let it through
    assert "store error, accepting" in r.log_text and "Connection refused" in r.log_text
    r = mail(h, remote_ip="192.0.2.50")
    assert r.codes[0] == 220 and "store error, not judged" in r.log_text
    assert time.monotonic() - started < 10


def test_bad_url_and_missing_package_fail_open(smtp, monkeypatch):
    with pytest.raises(store.StoreError):
        store.RedisStore("http://127.0.0.1:1/")
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the package were not installed
    with pytest.raises(store.StoreError, match="redis package"):
        store.RedisStore(smtp.server.url)


def test_twenty_parallel_connections_share_one_redis(tmp_path, server):
    """Each session is its own process (bin/in.qpsmtpd), as on several MX hosts; no update may be lost."""
    server.client.flushdb()
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    cfg, slow = SMTPConfig(tmp_path / "a"), SMTPConfig(tmp_path / "b")
    for c in (cfg, slow):
        c.write("store", server.url)
    cfg.plugins("relay", "greylisting black_timeout 0", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    slow.plugins("relay", "greylisting", "rcpt_ok", f"queue/maildir {cfg.maildir}")
    session = dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "MAIL FROM:<a@example.org>",
                       "RCPT TO:<bob@example.test>", "QUIT")
    same = dialogue("EHLO c.example", "MAIL FROM:<a@example.org>", "QUIT")

    def run(i):
        return cfg.run(session, TCPREMOTEIP=f"198.51.100.{i + 1}"), slow.run(same, TCPREMOTEIP="203.0.113.9")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(run, range(20)))
    for own, shared in results:
        assert own.codes == [220, 250, 450, 250, 250, 221], own.log
        assert "store error" not in own.log + shared.log
    assert [s.codes for _, s in results] == [[220, 250, 450, 221]] * 20
    for i in range(20):
        assert server.hash("greylist", f"198.51.100.{i + 1}")["white"] == "1"
    # 20 attempts from one host at once: one created the triplet, each other one counted exactly once.
    shared_row = server.hash("greylist", "203.0.113.9")
    assert (shared_row["black"], shared_row["white"]) == ("19", "0")
