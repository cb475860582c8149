"""Load through xinetd with the shipped limits: 2,000 messages from 20 concurrent clients, each stored exactly
once; and past `instances` (or `per_source`), clients are refused at once with a 421, not left hanging.

The client is a small bounded parallel one in Python (Postfix's smtp-source would
bring a whole MTA onto the test machine): 20 threads, each its own loopback source
address (as 20 hosts would be, within the shipped per_source), one message per
connection, so xinetd starts 2,000 sessions. Like a real MTA, a client that is
refused before its message was accepted (a 421 banner, a refused connection while
xinetd's cps limit pauses the service) tries again later; a message whose final
reply was lost would count as a failure, never be sent twice. On a loaded machine
xinetd's limits are reached (it counts a session until it has reaped the process,
and retries add to the connection rate): that is the shipped limits doing their job.
"""

from __future__ import annotations

import collections
import random
import threading
import time

from superserver import Client, message_ids, send_message, start_xinetd, xinetd_value

MESSAGES = 2000
CONCURRENCY = 20
MAX_ATTEMPTS = 60  # per message, about a minute in all


def test_2000_messages_at_concurrency_20_each_stored_once(smtp):
    smtp.write("loglevel", "4")
    server = start_xinetd(smtp)
    accepted: list[str] = []
    failures: list[str] = []
    retries = collections.Counter()

    def worker(n: int) -> None:
        source = f"127.0.0.{20 + n}"
        for i in range(n, MESSAGES, CONCURRENCY):
            if failures:
                return  # one is enough to fail the test: do not wait for the rest
            msg_id = f"load-{i}@test"
            for attempt in range(MAX_ATTEMPTS):
                try:
                    codes = send_message(server.host, server.port, msg_id, source=source)
                except OSError as exc:  # after the final dot: the message may be stored, never resend it
                    failures.append(f"{msg_id}: {exc!r}")
                    break
                if codes == [220, 250, 250, 250, 354, 250, 221]:
                    accepted.append(msg_id)
                    break
                # Refused before the message was accepted: a 421 banner (xinetd counts a session
                # until it has reaped it), or a connection reset or closed unanswered while
                # xinetd's cps limit pauses the service. Try again later, as an MTA would.
                if codes[-1] != "error" and codes != [0] and not 400 <= codes[-1] < 500:
                    failures.append(f"{msg_id}: {codes}")
                    break
                retries[str(codes[-1])] += 1
                time.sleep(min(1.0, random.uniform(0.05, 0.1) * (attempt + 1)))
            else:
                failures.append(f"{msg_id}: still refused after {MAX_ATTEMPTS} attempts")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONCURRENCY)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    print(f"retries by cause: {dict(retries)}")
    xinetd_failures = [line for line in (smtp.root / "xinetd.log").read_text().splitlines() if "FAIL:" in line]
    assert failures == [], xinetd_failures[:20]
    assert len(accepted) == MESSAGES
    stored = collections.Counter(message_ids(smtp.messages()))
    assert len(stored) == MESSAGES
    assert set(stored) == {f"load-{i}@test" for i in range(MESSAGES)}
    assert [msg_id for msg_id, count in stored.items() if count != 1] == []
    assert smtp.leftovers() == []


def test_instances_and_per_source_limits_refuse_cleanly(smtp):
    """Past per_source or instances, xinetd sends the shipped 421 banner and closes at once (a 20 s read would
    time out and fail the test if the client were left waiting); once sessions end, clients are served again."""
    server = start_xinetd(smtp)
    instances = int(xinetd_value(server.service, "instances"))
    per_source = int(xinetd_value(server.service, "per_source"))
    assert per_source < instances
    held: list[Client] = []

    def hold(source: str) -> None:
        client = Client(server.host, server.port, source=source, timeout=20)
        held.append(client)
        assert client.reply()[0] == 220

    def refused(source: str) -> bytes:
        client = Client(server.host, server.port, source=source, timeout=20)
        try:
            return client.rest()
        finally:
            client.close()

    try:
        for _ in range(per_source):
            hold("127.0.1.1")
        assert refused("127.0.1.1") == b"421 mx.example.test busy, try again later\r\n"
        for n in range(per_source, instances):
            hold(f"127.0.1.{1 + n // per_source}")
        assert refused("127.0.2.1") == b"421 mx.example.test busy, try again later\r\n"
        for client in held:
            client.close()
        held.clear()
        deadline = time.monotonic() + 20
        while True:  # xinetd counts a session until it has reaped the process
            codes = send_message(server.host, server.port, "after-limits@test", source="127.0.2.1")
            if codes[-2:] == [250, 221] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert codes[-2:] == [250, 221]
    finally:
        for client in held:
            client.close()
        server.stop()
    log = (smtp.root / "xinetd.log").read_text()
    assert "FAIL: smtp per_source_limit from=127.0.1.1" in log, log
    assert "FAIL: smtp service_limit from=127.0.2.1" in log, log
