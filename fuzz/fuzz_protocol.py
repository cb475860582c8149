"""atheris target: whole SMTP dialogues through the sans-I/O core, coverage-guided.

Each input is one dialogue. Its first octets choose the limits and the read
boundaries; the rest is what the client sends. The dialogue is run twice, in
one read and split at the chosen offsets, and both runs must keep every
invariant of smtpdriver.check() and give the same events, replies and messages.

    python3 fuzz/fuzz_protocol.py -dict=fuzz/smtp.dict fuzz/corpus/protocol -runs=1000000

See fuzz/README.md.
"""

from harness import fuzz, instrumented

with instrumented("smtpdriver"):
    from qpsmtpd_stdio.protocol import ProtocolError
    from smtpdriver import check, drive

LIMITS = [(512, 1000), (512, 0), (64, 80), (16, 20), (2048, 4096)]


def test_one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    max_command, max_line = LIMITS[data[0] % len(LIMITS)]
    step = data[1] % 64 + 1  # read size of the second run
    max_errors = data[2] % 8
    starttls = bool(data[3] & 1)
    raw = data[4:]
    try:
        whole = drive([raw], max_command_length=max_command, max_line_length=max_line,
                      max_errors=max_errors, starttls=starttls)
    except ProtocolError:
        raise AssertionError("ProtocolError from a correct driver") from None
    check(whole, raw)
    if starttls:
        return  # what STARTTLS discards depends on where reads end, by design
    split = drive([raw[i:i + step] for i in range(0, len(raw), step)], max_command_length=max_command,
                  max_line_length=max_line, max_errors=max_errors)
    assert whole.events == split.events, (whole.events, split.events)
    assert whole.messages == split.messages
    assert bytes(whole.wire) == bytes(split.wire)


def main() -> None:
    fuzz(test_one_input)


if __name__ == "__main__":
    main()
