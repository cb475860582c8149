from conftest import simple_session


def test_pipe_session_delivers(smtp):
    r = smtp.run(simple_session())
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221], r.stdout
    [msg] = smtp.messages()
    assert b"\r\n" not in msg
    assert msg.startswith(b"Return-Path: <a@example.org>\nDelivered-To: bob@example.test\nReceived: from client.example")
    assert msg.endswith(b"\n\nHello.\n")


def test_socketpair_session_delivers(smtp):
    r = smtp.run(simple_session(), via="socketpair")
    r.assert_wellformed()
    assert r.codes == [220, 250, 250, 250, 354, 250, 221]
    assert len(smtp.messages()) == 1
