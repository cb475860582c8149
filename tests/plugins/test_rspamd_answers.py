"""plugins/rspamd.py's reading of rspamd's answer, from plain bytes: hostile or broken answers are refused or
bounded, never trusted, and nothing from them reaches a header unclean."""

import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from qpsmtpd_stdio.headers import Headers

spec = importlib.util.spec_from_file_location("rspamd_plugin", Path(__file__).resolve().parents[2] / "plugins" / "rspamd.py")
rspamd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rspamd)


def http(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", *headers] + ([] if any(h.lower().startswith(("content-length", "transfer-encoding"))
                                                         for h in headers) else [f"Content-Length: {len(body)}"])
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def answer(**data) -> bytes:
    return http(json.dumps({"action": "no action", "score": 1.5, "required_score": 15, **data}).encode())


def test_plain_answer():
    a = rspamd.parse(answer(symbols={"A": {}, "B": {}}, messages={"smtp_message": "hello"}))
    assert (a["action"], a["score"], a["required_score"], a["symbols"], a["message"]) == ("no action", 1.5, 15.0,
                                                                                         ["A", "B"], "hello")


@pytest.mark.parametrize("reply", [
    b"", b"garbage", http(b"{}", status="500 Internal Server Error"), http(b"not json"),
    http(b'{"action": "explode"}'), http(b'["no action"]'), http(b'{"action": null}'),
    http(b"[" * 100000 + b"]" * 100000),  # deep nesting: refused, not a crash
    http(b'{"action": "reject"}', "Content-Encoding: zstd"),
])
def test_nonsense_is_refused(reply):
    with pytest.raises(ValueError):
        rspamd.parse(reply)


def test_content_length_and_chunked():
    body = json.dumps({"action": "reject", "score": 20, "required_score": 15}).encode()
    assert rspamd.parse(http(body + b"trailing junk", f"Content-Length: {len(body)}"))["action"] == "reject"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    assert rspamd.parse(http(chunked, "Transfer-Encoding: chunked"))["action"] == "reject"
    with pytest.raises(ValueError):
        rspamd.parse(http(b"zz\r\nxx\r\n0\r\n\r\n", "Transfer-Encoding: chunked"))


def test_wrong_types_are_ignored():
    a = rspamd.parse(answer(score="lots", required_score=True, symbols=["x"], messages="no", subject=7, milter=[1],
                            **{"dkim-signature": 5}))
    assert (a["score"], a["required_score"], a["symbols"], a["message"], a["subject"], a["milter"], a["dkim"]) == (
        0.0, 0.0, [], "", "", {}, [])


def test_values_are_cleaned_before_any_header():
    a = rspamd.parse(answer(messages={"smtp_message": "go\r\naway\x00now"}, subject="Re: \r\nBcc: x@evil",
                            **{"dkim-signature": "v=1;\r\n\tb=abc\x00"}))
    assert a["message"] == "go  away now" and "\r" not in a["subject"] and "\n" not in a["subject"]
    assert a["dkim"] == [["v=1;", "b=abc"]]


class Txn:
    def __init__(self) -> None:
        self.header = Headers.parse(b"Subject: hi\r\nX-Spam: Yes\r\nX-Spam: Maybe")


class Plugin:
    def __init__(self) -> None:
        self.logged = []

    def log(self, level, message):
        self.logged.append(message)


def test_milter_changes_are_bounded_and_names_checked():
    txn, plugin = Txn(), Plugin()
    adds = {f"X-H{i}": "v" for i in range(500)}
    adds.update({"Bad Name": "x", "X-Colon:": "x", "X-Multi": [{"value": "a", "order": 0}, "b\r\nInjected: yes"]})
    rspamd.apply_milter(plugin, txn, {"add_headers": adds, "remove_headers": {"X-Spam": -1, "Subject": "all"}})
    names = txn.header.names()
    assert txn.header.get_all("X-Spam") == ["Yes"]  # -1: the last one only; "all" is not a number: ignored
    assert len(names) <= 3 + rspamd.MAX_FIELDS
    assert not any(" " in n or ":" in n for n in names)
    assert all(b"\r\nInjected" not in raw for _, raw in txn.header._fields)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_an_answer_or_valueerror(data):
    try:
        a = rspamd.parse(data)
    except ValueError:
        return
    assert a["action"] in rspamd.ACTIONS


def test_json_is_read_as_json_loads_reads_it():
    for text in ['{"a": [1, 2.5, "x\\u00e9", null, true, false, {}]}', ' \r\n{"b": -1e3} \n', '{"c": "\\"q\\""}']:
        assert rspamd._loads(text.encode()) == json.loads(text)
    for bad in [b'{"a": NaN}', b'{"a" 1}', b'{"a": 1} x', b"", b"\xff", b'{"a": Infinity}']:
        with pytest.raises(ValueError):
            rspamd._loads(bad)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_loads_agrees_with_json(value):
    text = json.dumps(value)
    assert rspamd._loads(text.encode()) == json.loads(text)
