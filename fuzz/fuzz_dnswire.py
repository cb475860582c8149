"""atheris target: reading a DNS reply (qpsmtpd_stdio.dnswire), which whoever answers for the resolver writes.

The first octet picks the type asked (A, AAAA, MX, TXT, PTR, CNAME); the rest
follows a header and question that match, so the fuzzer spends its time in
the answers. Invariants for any input: no exception; None or (status,
records, truncated); every name read is at most 253 characters; an A/AAAA
record is an address; time per input is bounded by libFuzzer's -timeout
(an unbounded pointer chain or CNAME loop would show up there). Where
dnspython is installed, it reads the same packet and must agree
(fuzz/dnsdiff.py says on what).

    python3 fuzz/fuzz_dnswire.py fuzz/corpus/dnswire -runs=1000000

See fuzz/README.md.
"""

from harness import fuzz, instrumented

with instrumented():
    from qpsmtpd_stdio import dnswire
    from qpsmtpd_stdio.netlist import parse_ip

try:
    import dnsdiff
except ImportError:  # no dnspython: the invariants alone
    dnsdiff = None

TYPES = (1, 28, 15, 16, 12, 5)
NAME = dnswire.encode_name("a.test")


def packet(data: bytes) -> tuple[bytes, int]:
    rdtype = TYPES[data[0] % len(TYPES)] if data else 1
    header = b"\x00\x07\x81\x80\x00\x01" + (data[1:3] if len(data) >= 3 else b"\x00\x01") + b"\x00\x00\x00\x00"
    return header + NAME + rdtype.to_bytes(2, "big") + b"\x00\x01" + data[3:], rdtype


def test_one_input(data: bytes) -> None:
    wire, rdtype = packet(data)
    if dnsdiff:
        dnsdiff.compare_reply(wire, rdtype)
        dnsdiff.compare_name(wire, 12 + len(NAME) + 4)
    parsed = dnswire.parse_response(wire, 7, NAME, rdtype)
    if parsed is None:
        return
    status, records, truncated = parsed
    assert isinstance(status, str) and isinstance(truncated, bool)
    assert len(records) <= dnswire.MAX_RECORDS
    for record in records:
        if rdtype in (1, 28):
            assert parse_ip(record) is not None, record
        elif rdtype in (5, 12):
            assert isinstance(record, str) and len(record) <= 253, record
        elif rdtype == 15:
            assert len(record[1]) <= 253, record
        else:
            assert isinstance(record, str)


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
