"""auth/auth_ldap_bind against a real slapd (Debian's package), started by the test on a loopback high port."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dnsserver import free_port

from qpsmtpd_stdio.testing import Harness

SLAPD = shutil.which("slapd") or ("/usr/sbin/slapd" if os.access("/usr/sbin/slapd", os.X_OK) else None)
pytestmark = pytest.mark.skipif(SLAPD is None or not Path("/etc/ldap/schema/inetorgperson.schema").exists(),
                                reason="slapd is not installed (Debian package slapd)")
pytest.importorskip("ldap3", reason="ldap3 is not installed (pip install 'qpsmtpd-stdio[ldap]')")

BASE = "ou=people,dc=example,dc=test"
LDIF = """dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: s3cret pass

dn: uid=star,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: star*
cn: Star
sn: S
userPassword: other
"""


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    root = tmp_path_factory.mktemp("slapd")
    (root / "db").mkdir()
    conf = root / "slapd.conf"
    conf.write_text("\n".join([
        *(f"include /etc/ldap/schema/{name}.schema" for name in ("core", "cosine", "inetorgperson")),
        f"pidfile {root / 'slapd.pid'}", "modulepath /usr/lib/ldap", "moduleload back_mdb",
        "database mdb", 'suffix "dc=example,dc=test"', 'rootdn "cn=admin,dc=example,dc=test"', "rootpw unused",
        f"directory {root / 'db'}", ""]))
    (root / "users.ldif").write_text(LDIF)
    subprocess.run([str(Path(SLAPD).parent / "slapadd"), "-f", str(conf), "-l", str(root / "users.ldif")],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    proc = subprocess.Popen([SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.fixture
def harness(tmp_path, slapd):
    h = Harness(tmp_path, plugins=[f"auth/auth_ldap_bind ldap_base {BASE} ldap_port {slapd}", "rcpt_ok"])
    h.config("rcpthosts", "example.test")
    for name in ("tls_before_auth", "disable_plaintext_auth", "auth_failure_delay"):
        h.config(name, "0")
    return h


@pytest.mark.parametrize("user, password, code", [
    ("alice", "s3cret pass", 235),
    ("Alice@example.test", "s3cret pass", 235),   # the part before @, any case
    ("alice", "wrong", 535),
    ("alice", "", 535),                           # an empty password is not an anonymous bind here
    ("nobody", "s3cret pass", 535),
    ("*", "s3cret pass", 535),                    # escaped: not a wildcard that finds alice
    ("star*", "other", 235),                      # and found as the literal name it is
    ("alice)(uid=*", "s3cret pass", 535),         # no filter injection
])
def test_bind_as_the_user(harness, user, password, code):
    r = harness.run("EHLO c.example", plain(user, password), "QUIT")
    assert r.codes == [220, 250, code, 221], r.log_text
    if "*" in user and code == 535:
        assert "fail: 0 entries for" in r.log_text  # searched for literally, found nothing (not two)


def test_auth_login_relays_and_the_config_file(harness, slapd):
    harness.config("ldap", f"ldap_base {BASE}", f"ldap_port {slapd}")
    harness.plugins = ["auth/auth_ldap_bind", "rcpt_ok"]
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    r = harness.run("EHLO c.example", "AUTH LOGIN", b64("alice"), b64("s3cret pass"), "MAIL FROM:<alice@example.test>",
                    "RCPT TO:<x@elsewhere.example>", "QUIT")
    assert r.codes == [220, 250, 334, 334, 235, 250, 250, 221]  # authenticated: may relay


def test_directory_down_is_temporary(tmp_path):
    port = free_port()  # nobody listens there
    h = Harness(tmp_path, plugins=[f"auth/auth_ldap_bind ldap_base {BASE} ldap_port {port} ldap_timeout 2", "rcpt_ok"])
    for name in ("tls_before_auth", "disable_plaintext_auth", "auth_failure_delay"):
        h.config(name, "0")
    r = h.run("EHLO c.example", plain("alice", "s3cret pass"), "QUIT")
    assert r.codes == [220, 250, 454, 221]
