"""publicsuffix: the organizational domain through the compact index agrees with publicsuffixlist itself."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qpsmtpd_stdio import publicsuffix

psl = pytest.importorskip("publicsuffixlist", reason="publicsuffixlist not installed (pip install 'qpsmtpd-stdio[dmarc]')")
REFERENCE = psl.PublicSuffixList()
SOURCE = publicsuffix.list_path()
with open(SOURCE, encoding="utf-8") as fh:
    RULES = [line.split(" ")[0].strip().lower() for line in fh if line.strip() and not line.startswith("//")]


@pytest.fixture
def index_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(publicsuffix, "INDEX_DIR", str(tmp_path))
    publicsuffix._loaded.clear()
    yield tmp_path
    publicsuffix._loaded.clear()


@pytest.mark.parametrize("domain, want", [
    ("mail.example.co.uk", "example.co.uk"), ("EXAMPLE.COM.", "example.com"), ("com", None),
    ("x.city.kobe.jp", "city.kobe.jp"), ("a.b.kobe.jp", "a.b.kobe.jp"),  # an exception, and a wildcard
    ("a.www.ck", "www.ck"), ("x.y.ck", "x.y.ck"), ("s3.amazonaws.com", None),  # the private section counts
    ("foo.xn--55qx5d.cn", "foo.xn--55qx5d.cn"), ("foo.公司.cn", "foo.公司.cn"),  # IDN rules in both forms
    ("a.unknowntld", "a.unknowntld"), ("unknowntld", None), ("a..b", None), ("", None),
])
def test_known_answers(index_dir, domain, want):
    assert publicsuffix.private_suffix(domain) == want == REFERENCE.privatesuffix(domain)


LABEL = st.sampled_from(["a", "www", "city", "xn--55qx5d", "公司", "mail", "x-y"]) | st.from_regex(r"\A[a-z0-9]{1,6}\Z")


@st.composite
def domains(draw):
    """A name under a real rule: its wildcard filled in or its exception mark dropped, 0-3 labels in front."""
    rule = draw(st.sampled_from(RULES)).lstrip("!")
    labels = [draw(LABEL) if label == "*" else label for label in rule.split(".")]
    labels = draw(st.lists(LABEL, max_size=3)) + labels[draw(st.integers(0, len(labels) - 1)):]
    name = ".".join(labels)
    return name.upper() if draw(st.booleans()) else name


@settings(max_examples=3000, deadline=None)
@given(domains())
def test_agrees_with_publicsuffixlist(domain):
    assert publicsuffix.private_suffix(domain) == REFERENCE.privatesuffix(domain)


def test_the_index_is_written_once_per_list_version(index_dir):
    path, state = publicsuffix.prepare()
    assert state == "written" and os.path.dirname(path) == str(index_dir)
    assert publicsuffix.prepare() == (path, "current")
    stale = index_dir / "psl-1-1.idx"  # the index of a list version no longer installed
    stale.write_bytes(b"old")
    os.unlink(path)
    publicsuffix._loaded.clear()
    assert publicsuffix.org_domain("a.b.example.co.uk") == "example.co.uk"  # the first lookup writes it again
    assert os.path.isfile(path) and not stale.exists()


def test_a_damaged_index_is_rebuilt(index_dir):
    path, _ = publicsuffix.prepare()
    with open(path, "r+b") as fh:
        fh.write(b"garbage")
    publicsuffix._loaded.clear()
    assert publicsuffix.org_domain("mail.example.co.uk") == "example.co.uk"
    with open(path, "rb") as fh:
        assert fh.read(len(publicsuffix.MAGIC)) == publicsuffix.MAGIC


def test_an_unwritable_index_dir_still_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(publicsuffix, "INDEX_DIR", str(tmp_path / "file" / "sub"))
    (tmp_path / "file").write_text("not a directory")
    publicsuffix._loaded.clear()
    try:
        assert publicsuffix.prepare()[1].startswith("cannot be written")
        assert publicsuffix.org_domain("mail.example.co.uk") == "example.co.uk"
    finally:
        publicsuffix._loaded.clear()


def test_a_lookup_does_not_import_publicsuffixlist(index_dir):
    publicsuffix.prepare()
    code = ("import sys; from qpsmtpd_stdio import publicsuffix as p; p.INDEX_DIR = sys.argv[1];"
            "print(p.org_domain('mail.example.co.uk'), 'publicsuffixlist' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(index_dir)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["example.co.uk", "False"]
